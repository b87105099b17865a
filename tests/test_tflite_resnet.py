"""Larq Compute Engine ResNet-style fixture (issue #11's real-valued layers from a .tflite file).

References, none of them produced by the code under test:
- the committed outputs of LCE's own interpreter (`examples/larq/resnet_lce_ref.npy`, made by
  `examples/larq/make_resnet_fixture.py` with TensorFlow 2.21 + LCE 0.16 in a throw-away venv);
- the golden model (sdk/golden.py) for the backends, in fixed-point mode;
- the NumPy reading of the TFLite ops (`converters/tflite/reference.py`) for small models
  written here with the `flatbuffers` Builder (test_tflite.Writer, independent of the reader).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import EXAMPLES, assert_close_to_reference, run_cli
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_tflite import CONV, FC, RESHAPE, SIGN, Writer, conv_opts, pool_opts

import edge_sdk
from edge_sdk import golden, targets
from edge_sdk.converters.cortexm import backend
from edge_sdk.converters.tflite import schema
from edge_sdk.converters.tflite.reference import run_reference
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L

LARQ = EXAMPLES / "larq"
NAME = "resnet_lce"
RANDOM = "resnet_random_lce"
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")

ADD, AVG_POOL, CONCAT, DEPTHWISE, MEAN, PRELU, RELU = 0, 1, 2, 4, 40, 54, 19


@pytest.fixture(scope="module")
def model():
    return edge_sdk.load(LARQ / f"{NAME}.tflite")


@pytest.fixture(scope="module")
def data():
    return np.load(LARQ / f"{NAME}_x.npy"), np.load(LARQ / f"{NAME}_ref.npy")


# ---------------------------------------------------------------------------- fixture vs LCE
def test_fixture_has_the_issue_11_constructs():
    """What LCE wrote (the op list is also in resnet_accuracy.json, dumped with TF's schema)."""
    m = schema.load(LARQ / f"{NAME}.tflite")
    ops = [op.name for op in m.operators]
    assert {"LceBconv2d", "PRELU", "MEAN", "CONCATENATION", "DEPTHWISE_CONV_2D",
            "MAX_POOL_2D", "FULLY_CONNECTED"} <= set(ops)
    adds = [op for op in m.operators if op.name == "ADD"]
    two = [op for op in adds if all(m.tensors[t].data is None for t in op.inputs)]
    assert len(two) == 3  # the residual shortcuts
    assert [schema.elementwise_activation(op) for op in two].count("RELU") == 1  # fused ReLU


def test_ir_maps_to_the_real_valued_layers(model):
    kinds = [type(layer).__name__ for layer in model.source.layers]
    assert kinds.count("AddTensors") == 3
    assert kinds.count("PRelu") == 2  # PReLU and the ReLU fused into an ADD (slope 0)
    assert {"GlobalAvgPool", "Concat", "GroupConv2d", "MaxPool"} <= set(kinds)
    prelus = [layer for layer in model.source.layers if isinstance(layer, L.PRelu)]
    assert np.all(prelus[1].slope == 0) and np.any(prelus[0].slope != 0)
    gconv = next(layer for layer in model.source.layers if isinstance(layer, L.GroupConv2d))
    assert gconv.groups == gconv.in_channels == 32


def test_golden_equals_lce_interpreter(model, data):
    x, ref = data
    y = model.run(x)
    assert_close_to_reference(y, ref, exact=False)
    assert np.abs(y - ref).max() < 1e-5
    assert np.array_equal(y.argmax(1), ref.argmax(1))


def test_numpy_reference_equals_lce_interpreter(data):
    x, ref = data
    assert_close_to_reference(run_reference(LARQ / f"{NAME}.tflite", x), ref, exact=False)


def test_fixed_point_argmax_agrees(model, data):
    x, ref = data
    y = model.run(x, fixed_point=True)
    assert np.mean(y.argmax(1) == ref.argmax(1)) >= 0.99


def test_cli_run_check_and_fixed_point(tmp_path, data):
    ref = data[1]
    proc = run_cli("run", LARQ / f"{NAME}.tflite", "--input", LARQ / f"{NAME}_x.npy",
                   "--output", tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "NumPy TFLite/LCE reference" in proc.stdout
    proc = run_cli("run", LARQ / f"{NAME}.tflite", "--input", LARQ / f"{NAME}_x.npy",
                   "--output", tmp_path / "yf.npy", "--fixed-point")
    assert proc.returncode == 0, proc.stderr
    assert np.mean(np.load(tmp_path / "yf.npy").argmax(1) == ref.argmax(1)) >= 0.99


def test_random_quicknet_block_exact():
    """Untrained BN(ReLU(bconv)) + x block (a standalone RELU operator, random BN statistics
    with negative scales), binary dense output: exact integers, so bit-exact with LCE."""
    ops = [op.name for op in schema.load(LARQ / f"{RANDOM}.tflite").operators]
    assert ops[2:6] == ["LceBconv2d", "RELU", "MUL", "ADD"]
    x, ref = np.load(LARQ / f"{RANDOM}_x.npy"), np.load(LARQ / f"{RANDOM}_ref.npy")
    m = edge_sdk.load(LARQ / f"{RANDOM}.tflite")
    assert_close_to_reference(m.run(x), ref, exact=True)
    assert_close_to_reference(run_reference(LARQ / f"{RANDOM}.tflite", x), ref, exact=True)
    assert np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1)) >= 0.99


# ---------------------------------------------------------------------------- backends
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", [NAME, RANDOM])
def test_cortex_m_qemu_bit_exact_with_fixed_point(tmp_path, name):
    x = np.load(LARQ / f"{name}_x.npy")[:4]
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("convert", LARQ / f"{name}.tflite", "--target", "cortex-m", "-o",
                   tmp_path / "cm")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", tmp_path / "cm", "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    want = edge_sdk.load(LARQ / f"{name}.tflite").run(x, fixed_point=True)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_cortex_m_qemu_all_samples(tmp_path, model, data):
    """The 64 sample digits under QEMU: the fixed-point tensor feeding the scores, exactly."""
    x = data[0]
    folder = targets.convert(model, "cortex-m", tmp_path / "out", {})
    meta, ir = targets.open_build(folder)
    env = golden.run_all(ir, x, fixed_point=True)
    want = env[ir.producer(ir.outputs[0]).inputs[0]].reshape(len(x), -1)
    y, _ = backend.simulate(folder, meta, ir, golden.quantise_input(ir.layers[0], x), x,
                            count=False)
    np.testing.assert_array_equal(np.asarray(y).reshape(want.shape), want)


@needs_icarus
def test_fpga_sim_bit_exact_with_fixed_point(tmp_path, model, data):
    """FPGA (cocotb + Icarus, --board sim) straight from the .tflite file on 3 digits: every
    layer this file maps, bit-exact; the NHWC [8, 8, 1] input's reshape to [1, 8, 8] streams
    as the conv's map (same element order)."""
    x = data[0][:3]
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("convert", LARQ / f"{NAME}.tflite", "--target", "fpga", "--board", "sim",
                   "-o", tmp_path / "fp")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", tmp_path / "fp", "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.run(x, fixed_point=True))


# ---------------------------------------------------------------------------- small models
def _float_map(w: Writer, channels: int = 2):
    """input [1, 4, 4, 1] -> CONV_2D 3x3 (±1 weights) + bias: a real-valued [1, 4, 4, C]."""
    x = w.tensor([1, 4, 4, 1], name="image")
    y = w.tensor([1, 4, 4, channels], name="conv_out")
    filt = np.where(np.arange(channels * 9).reshape(channels, 3, 3, 1) % 3 == 0, -1, 1)
    bias = np.linspace(-0.75, 0.5, channels).astype(np.float32)
    w.op(CONV, [x, w.const(filt.astype(np.float32)), w.const(bias)], [y],
         conv_opts(0, (1, 1), (1, 1)))
    return x, y


def depthwise_opts(padding=0, stride=(1, 1), multiplier=1, act=0):
    def make(b):
        b.StartObject(7)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride[1], 0)
        b.PrependInt32Slot(2, stride[0], 0)
        b.PrependInt32Slot(3, multiplier, 0)
        b.PrependInt8Slot(4, act, 0)
        return 2, b.EndObject()
    return make


def concat_opts(axis, act=0):
    def make(b):
        b.StartObject(2)
        b.PrependInt32Slot(0, axis, 0)
        b.PrependInt8Slot(1, act, 0)
        return 10, b.EndObject()
    return make


def add_opts(act):
    def make(b):
        b.StartObject(1)
        b.PrependInt8Slot(0, act, 0)
        return 11, b.EndObject()
    return make


def reducer_opts(keep):
    def make(b):
        b.StartObject(1)
        b.PrependBoolSlot(0, keep, False)
        return 27, b.EndObject()
    return make


def _head(w: Writer, t: int, channels: int):
    """[1, C] real-valued -> SIGN -> FULLY_CONNECTED 3 (±1): a flat output."""
    s = w.tensor([1, channels])
    w.op(SIGN, [t], [s])
    out = w.tensor([1, 3], name="logits")
    fc_w = np.where(np.arange(3 * channels).reshape(3, channels) % 2, 1.0, -1.0)
    w.op(FC, [s, w.const(fc_w.astype(np.float32)), -1], [out])
    return out


@pytest.mark.parametrize("how", ["mean", "mean_keepdims", "avgpool"])
def test_global_average_variants_golden_equals_reference(tmp_path, how):
    w = Writer()
    x, y = _float_map(w, 4)
    if how == "avgpool":
        g = w.tensor([1, 1, 1, 4])
        w.op(AVG_POOL, [y], [g], pool_opts(1, (1, 1), (4, 4)))
    else:
        keep = how == "mean_keepdims"
        g = w.tensor([1, 1, 1, 4] if keep else [1, 4])
        w.op(MEAN, [y, w.const(np.int32([1, 2]))], [g], reducer_opts(keep))
    if how != "mean":
        flat = w.tensor([1, 4])
        w.op(RESHAPE, [g, w.const(np.int32([1, 4]))], [flat])
        g = flat
    out = _head(w, g, 4)
    path = tmp_path / f"{how}.tflite"
    path.write_bytes(w.build([x], [out]))
    m = edge_sdk.load(path)
    assert any(isinstance(layer, L.GlobalAvgPool) for layer in m.source.layers)
    xs = np.random.default_rng(0).integers(0, 17, (32, 4, 4, 1)).astype(np.float32)
    assert_close_to_reference(m.run(xs), run_reference(path, xs), exact=True)


MAXPOOL = 17


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depthwise_multiplier_residual_concat_golden_equals_reference(tmp_path, seed):
    """Random weights: depthwise conv with depth multiplier 2 and stride 2 (output channel
    c * 2 + j reads input channel c), a residual ADD onto a concat of a maxpool shortcut and
    its PReLU, a flattened HWC map into a binary dense layer; integer outputs, so exact."""
    rng = np.random.default_rng(seed)
    w = Writer()
    x, y = _float_map_6(w, rng)
    s = w.tensor([1, 3, 3, 2])
    w.op(MAXPOOL, [y], [s], pool_opts(1, (2, 2), (2, 2)))
    p = w.tensor([1, 3, 3, 2])
    w.op(PRELU, [s, w.const(rng.uniform(-0.5, 0.5, (1, 1, 2)).astype(np.float32))], [p])
    c = w.tensor([1, 3, 3, 4])
    w.op(CONCAT, [s, p], [c], concat_opts(-1))
    b = w.tensor([1, 6, 6, 2])
    w.op(SIGN, [y], [b])
    scale = rng.uniform(0.1, 2.0, 4).astype(np.float32)
    dw = (rng.choice([-1.0, 1.0], (1, 3, 3, 4)) * scale).astype(np.float32)
    d = w.tensor([1, 3, 3, 4])
    w.op(DEPTHWISE, [b, w.const(dw), w.const(rng.normal(0, 1, 4).astype(np.float32))], [d],
         depthwise_opts(0, (2, 2), 2))
    r = w.tensor([1, 3, 3, 4])
    w.op(ADD, [d, c], [r], add_opts(0))
    f = w.tensor([1, 36])
    w.op(RESHAPE, [r, w.const(np.int32([1, 36]))], [f])
    out = _head(w, f, 36)
    path = tmp_path / "dw.tflite"
    path.write_bytes(w.build([x], [out]))
    m = edge_sdk.load(path)
    g = next(layer for layer in m.source.layers if isinstance(layer, L.GroupConv2d))
    assert (g.groups, g.in_channels, g.weights.rows) == (2, 2, 4)
    xs = rng.integers(0, 17, (48, 6, 6, 1)).astype(np.float32)
    assert_close_to_reference(m.run(xs), run_reference(path, xs), exact=True)


def _float_map_6(w: Writer, rng):
    """input [1, 6, 6, 1] -> CONV_2D 3x3 (random ±1) + bias: real-valued [1, 6, 6, 2]."""
    x = w.tensor([1, 6, 6, 1], name="image")
    y = w.tensor([1, 6, 6, 2])
    filt = rng.choice([-1.0, 1.0], (2, 3, 3, 1)).astype(np.float32)
    w.op(CONV, [x, w.const(filt), w.const(rng.normal(0, 3, 2).astype(np.float32))], [y],
         conv_opts(0, (1, 1), (1, 1)))
    return x, y


def _bad_models():
    cases = {}
    w = Writer()
    x, y = _float_map(w)
    out = w.tensor([1, 4, 4, 2], name="dw_out")
    w.op(DEPTHWISE, [y, w.const(np.ones((1, 3, 3, 2), np.float32)), -1], [out],
         depthwise_opts())
    cases["float depthwise"] = (w, x, out, ["DEPTHWISE_CONV_2D", "real-valued", "dw_out"])
    w = Writer()
    x = w.tensor([1, 4, 4, 1], name="image")
    out = w.tensor([1, 4, 4, 1], name="dw_out")
    w.op(DEPTHWISE, [x, w.const(np.float32([[[[1], [2], [1]]] * 3]).reshape(1, 3, 3, 1)), -1],
         [out], depthwise_opts())
    cases["non-binary depthwise"] = (w, x, out, ["DEPTHWISE_CONV_2D", "not binary"])
    w = Writer()
    x, y = _float_map(w)
    out = w.tensor([1, 4, 4], name="mean_out")
    w.op(MEAN, [y, w.const(np.int32([3]))], [out], reducer_opts(False))
    cases["mean over channels"] = (w, x, out, ["MEAN", "axes [3]"])
    w = Writer()
    x, y = _float_map(w)
    out = w.tensor([1, 8, 4, 2], name="cat_out")
    w.op(CONCAT, [y, y], [out], concat_opts(1))
    cases["concat on height"] = (w, x, out, ["CONCATENATION", "axis 1"])
    w = Writer()
    x, y = _float_map(w)
    out = w.tensor([1, 4, 4, 2], name="sum")
    w.op(ADD, [y, y], [out], add_opts(3))
    cases["fused relu6"] = (w, x, out, ["ADD", "RELU6"])
    w = Writer()
    x = w.tensor([1, 4, 4, 1], name="image")
    out = w.tensor([1, 4, 4, 1], name="prelu_out")
    w.op(PRELU, [x, w.const(np.float32([[[0.25]]]))], [out])
    cases["prelu on integers"] = (w, x, out, ["PRELU", "int data"])
    w = Writer()
    x = w.tensor([1, 4, 4, 1], name="image")
    out = w.tensor([1, 4, 4, 1], name="relu_out")
    w.op(RELU, [x], [out])
    cases["relu on integers"] = (w, x, out, ["RELU", "int data"])
    w = Writer()
    x, y = _float_map(w)
    out = w.tensor([1, 2, 2, 2], name="pool_out")
    w.op(AVG_POOL, [y], [out], pool_opts(1, (2, 2), (2, 2), act=1))  # fused RELU
    cases["fused relu on an average pool"] = (w, x, out, ["AVERAGE_POOL_2D", "RELU"])
    w = Writer()
    x, y = _float_map(w)
    b = w.tensor([1, 4, 4, 2])
    w.op(SIGN, [y], [b])
    out = w.tensor([1, 4, 4, 2], name="sum")
    w.op(ADD, [b, b], [out], add_opts(0))
    cases["add of two signs"] = (w, x, out, ["ADD", "residual ADD needs real-valued"])
    w = Writer()
    x, y = _float_map(w)
    s = w.tensor([1, 2, 2, 2])
    w.op(MAXPOOL, [y], [s], pool_opts(1, (2, 2), (2, 2)))
    out = w.tensor([1, 4, 4, 2], name="sum")
    w.op(ADD, [y, s], [out], add_opts(0))
    cases["add broadcast"] = (w, x, out, ["ADD", "only equal shapes"])
    return cases


@pytest.mark.parametrize("case", list(_bad_models()))
def test_bad_inputs_one_line_naming_the_operator(tmp_path, case):
    w, x, out, words = _bad_models()[case]
    path = tmp_path / "bad.tflite"
    path.write_bytes(w.build([x], [out]))
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for word in [str(path), *words]:
        assert word in msg, msg


def test_int8_variant_is_imported():
    """LCE's int8 conversion (int8 ADD, PRELU, MEAN, MUL with TFLite's requantisation) is
    imported as TFLite's integer kernels; bit-exactness is tests/test_tflite_int8.py's."""
    path = LARQ / "resnet_int8.tflite"
    m = schema.load(path)
    assert m.tensors[m.inputs[0]].quantized and "QUANTIZE" in [op.name for op in m.operators]
    assert edge_sdk.load(path) is not None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.booleans())
@example(41, 3, False)  # a MUL whose options table is broken
def test_corrupted_resnet_gives_edge_errors_only(seed, flips, truncate):
    """Random byte flips (and truncations) of the ResNet fixture: the reader and the operator
    handlers, which read builtin options lazily, load a model or raise EdgeError, nothing
    else (a bad options table used to escape as flatbuf.FormatError)."""
    from edge_sdk.converters.tflite.frontend import Frontend
    from edge_sdk.passes.pipeline import lower

    rng = np.random.default_rng(seed)
    blob = bytearray((LARQ / f"{NAME}.tflite").read_bytes())
    for _ in range(flips):
        blob[rng.integers(0, len(blob))] = rng.integers(0, 256)
    if truncate:
        blob = blob[: rng.integers(len(blob) // 2, len(blob) + 1)]
    try:
        lower(Frontend(schema.parse(bytes(blob), "fuzz.tflite")).run())
    except EdgeError:
        pass
