"""TFLite / LCE float first and last layers with real weights, quantised to 8 bits with a
calibration set (issue #11; converters/tflite/calibrate.py).

Models are written here with the test-side `flatbuffers` writer (test_tflite.Writer): a float
CONV_2D stem with real weights reading the (integer) model input, LceQuantize, an LCE binary
conv with a float output, a max pool, then a real-valued head (a global MEAN or a flattened
HWC map) into a FULLY_CONNECTED layer with real weights and a bias.

References, none of them produced by the code under test:
- the NumPy reading of the TFLite/LCE ops (converters/tflite/reference.py) for the faithful
  golden mode (the float32 product with the float weights, to float32 rounding) and, on
  argmax, for `--fixed-point` (the 8-bit version);
- the golden model's fixed-point mode for the Cortex-M C (host build and QEMU) and the FPGA
  Verilog (Icarus), bit for bit.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from conftest import assert_close_to_reference, run_cli
from host_check import assert_host_bit_exact, assert_qemu_bit_exact
from test_tflite import CONV, CUSTOM, FC, MAXPOOL, RESHAPE, Writer, conv_opts, lce, pool_opts
from test_tflite_resnet import MEAN, reducer_opts

import edge_sdk
from edge_sdk.converters.tflite.reference import pack, run_reference
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
LO, HI = -128, 127
H = W = 6
C0, C1, CLASSES = 4, 8, 5
HEADS = ["mean", "flat"]


def write_model(path, head: str, seed: int = 0, pad_values: int = 1):
    """input [1, 6, 6, 1] -> CONV_2D 3x3 (real weights, bias) -> LceQuantize -> LceBconv2d
    (±1, SAME, +1 padding, float output) -> MAX_POOL 2x2/2 -> MEAN over H, W (`mean`) or a
    RESHAPE to [1, 72] (`flat`) -> FULLY_CONNECTED (real weights, bias) -> [1, 5]."""
    rng = np.random.default_rng(seed)
    w = Writer()
    x = w.tensor([1, H, W, 1], name="image", signature=[-1, H, W, 1])
    a0 = w.tensor([1, H, W, C0])
    stem = rng.normal(0, 0.05, (C0, 3, 3, 1)).astype(np.float32)
    w.op(CONV, [x, w.const(stem), w.const(rng.normal(0, 1, C0).astype(np.float32))], [a0],
         conv_opts(0, (1, 1), (1, 1)))
    q0 = w.tensor([1, H, W, 1], type_code=2)
    w.op(CUSTOM, [a0], [q0], custom=lce("LceQuantize"))
    attrs = {"channels_in": C0, "dilation_height_factor": 1, "dilation_width_factor": 1,
             "fused_activation_function": 0, "pad_values": pad_values, "padding": 0,
             "stride_height": 1, "stride_width": 1}
    filt = w.const(pack(rng.choice([-1.0, 1.0], (C1, 3, 3, C0)).astype(np.float32)), 2)
    mult = rng.uniform(0.05, 0.2, C1).astype(np.float32)
    a1 = w.tensor([1, H, W, C1])
    w.op(CUSTOM, [q0, filt, w.const(mult), w.const(rng.normal(0, 0.5, C1).astype(np.float32)),
                  -1], [a1], custom=lce("LceBconv2d", attrs))
    p = w.tensor([1, H // 2, W // 2, C1])
    w.op(MAXPOOL, [a1], [p], pool_opts(1, (2, 2), (2, 2)))
    if head == "mean":
        k = C1
        f = w.tensor([1, k])
        w.op(MEAN, [p, w.const(np.int32([1, 2]))], [f], reducer_opts(False))
    else:
        k = (H // 2) * (W // 2) * C1
        f = w.tensor([1, k])
        w.op(RESHAPE, [p, w.const(np.int32([1, k]))], [f])
    out = w.tensor([1, CLASSES], name="logits")
    dense = rng.normal(0, 1 / math.sqrt(k), (CLASSES, k)).astype(np.float32)
    w.op(FC, [f, w.const(dense), w.const(rng.normal(0, 0.1, CLASSES).astype(np.float32))],
         [out])
    path.write_bytes(w.build([x], [out]))
    return path


def inputs(n: int, seed: int) -> np.ndarray:
    """Integers in [LO, HI] (the extremes first), NHWC as the file takes them."""
    x = np.random.default_rng(seed).integers(LO, HI + 1, (n, H, W, 1)).astype(np.float32)
    x[0], x[1] = LO, HI
    return x


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite_cal")
    out = {}
    for head in HEADS:
        path = write_model(folder / f"{head}.tflite", head)
        out[head] = (path, edge_sdk.load(path, input_range=(LO, HI),
                                         calibration=inputs(64, seed=7)))
    return out


@pytest.mark.parametrize("head", HEADS)
def test_ir_has_two_8bit_layers_and_one_quantize(models, head):
    _, m = models[head]
    int8 = [layer for layer in m.source.layers
            if isinstance(getattr(layer, "weights", None), L.Int8Weights)]
    assert [type(layer) for layer in int8] == [L.Conv2d, L.Dense]
    assert all(layer.weights.float_values is not None for layer in int8)
    quant = [layer for layer in m.source.layers if isinstance(layer, L.Quantize)]
    assert len(quant) == 1 and not quant[0].in_source  # before the dense head only


@pytest.mark.parametrize("head", HEADS)
def test_faithful_run_equals_reference(models, head):
    path, m = models[head]
    x = inputs(200, seed=1)
    assert_close_to_reference(m.run(x), run_reference(path, x), exact=False)


@pytest.mark.parametrize("head", HEADS)
def test_fixed_point_argmax_agrees_with_reference(models, head):
    path, m = models[head]
    x = inputs(1000, seed=2)
    agree = np.mean(m.run(x, fixed_point=True).argmax(1) == run_reference(path, x).argmax(1))
    assert agree >= 0.97, agree


def test_activation_scale_is_the_reference_maximum(models):
    """The Quantize scale is max |x| / 127 of the dense layer's input over the calibration set,
    x as the reference computes it (the MEAN output of the file)."""
    from edge_sdk.converters.tflite import schema
    from edge_sdk.converters.tflite.reference import Reference

    path, m = models["mean"]
    model = schema.load(path)
    ref = Reference(model)
    ref.run(inputs(64, seed=7))
    fc = next(op for op in model.operators if op.name == "FULLY_CONNECTED")
    top = float(np.abs(ref.env[fc.inputs[0]].astype(np.float64)).max())
    q = next(layer for layer in m.source.layers if isinstance(layer, L.Quantize))
    assert q.scale == float(np.float32(top / 127))


@pytest.mark.parametrize("head", HEADS)
def test_cortex_m_host_bit_exact_with_fixed_point(models, tmp_path, head):
    _, m = models[head]
    assert_host_bit_exact(m.ir, inputs(300, seed=3), tmp_path / "host")


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_cortex_m_qemu_bit_exact_with_fixed_point(models, tmp_path):
    assert_qemu_bit_exact(models["mean"][1], inputs(8, seed=5), tmp_path / "out")


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
@pytest.mark.parametrize("head", HEADS)
def test_fpga_verilog_bit_exact_with_fixed_point(tmp_path, head):
    """`convert --calibrate --target fpga --board sim`, then `simulate --check` under Icarus:
    the Verilog equals `run --fixed-point` (compared here as well, not only by the CLI)."""
    path = write_model(tmp_path / f"{head}.tflite", head)  # +1 padding (Larq pad_values=1)
    m = edge_sdk.load(path, input_range=(LO, HI), calibration=inputs(64, seed=7))
    cal, x = tmp_path / "cal.npy", tmp_path / "x.npy"
    np.save(cal, inputs(64, seed=7))
    np.save(x, inputs(4, seed=6))
    out = tmp_path / "fpga"
    proc = run_cli("convert", path, f"--input-range={LO},{HI}", "--calibrate", cal,
                   "--target", "fpga", "--board", "sim", "-o", out)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", out, "--input", x, "--output", tmp_path / "s.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"),
                                  m.run(np.load(x), fixed_point=True))


def test_refused_without_a_calibration_set_naming_calibrate(models):
    path, _ = models["mean"]
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path)
    msg = str(info.value)
    assert "\n" not in msg and "--calibrate" in msg and "CONV_2D" in msg, msg


@pytest.mark.parametrize("bad", [np.zeros((4, 5, 6, 1), np.float32),
                                 np.zeros((6, 6, 1), np.float32),
                                 np.zeros((0, 6, 6, 1), np.float32),
                                 np.full((2, 6, 6, 1), np.nan, np.float32),
                                 np.array([["a"]])])
def test_bad_calibration_set_is_a_one_line_error(models, bad):
    path, _ = models["mean"]
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path, calibration=bad)
    msg = str(info.value)
    assert "\n" not in msg and "calibration set" in msg and path.name in msg, msg


def test_cli_run_check_with_calibrate(models, tmp_path):
    """`run --calibrate X.npy --check` compares the faithful run with the reference, and
    `--fixed-point` writes what the API's fixed-point run gives."""
    path, m = models["flat"]
    cal, x = tmp_path / "cal.npy", tmp_path / "x.npy"
    np.save(cal, inputs(64, seed=7))
    np.save(x, inputs(20, seed=4))
    rng = [f"--input-range={LO},{HI}", "--calibrate", cal]
    proc = run_cli("run", path, "--input", x, "--output", tmp_path / "y0.npy", *rng, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_cli("run", path, "--input", x, "--output", tmp_path / "y.npy", *rng,
                   "--fixed-point")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"),
                                  m.run(np.load(x), fixed_point=True))


# ------------------------------------------------------------------ QuickNet-style stem
def write_dw_model(path, seed: int = 0):
    """input [1, 6, 6, 3] (RGB) -> CONV_2D 3x3 (real weights, bias, RELU) -> DEPTHWISE_CONV_2D
    3x3 stride 2, depth multiplier 2 (real weights on real-valued data, bias) -> LceQuantize ->
    LceBconv2d (±1, SAME, +1 padding, float output) -> MEAN -> FULLY_CONNECTED -> [1, 5]:
    QuickNet's stem (conv + depthwise conv), both 8-bit layers after calibration."""
    from test_tflite_resnet import DEPTHWISE, depthwise_opts

    rng = np.random.default_rng(seed)
    w = Writer()
    x = w.tensor([1, H, W, 3], name="rgb", signature=[-1, H, W, 3])
    a0 = w.tensor([1, H, W, C0])
    stem = rng.normal(0, 0.02, (C0, 3, 3, 3)).astype(np.float32)
    w.op(CONV, [x, w.const(stem), w.const(rng.normal(0, 0.5, C0).astype(np.float32))], [a0],
         conv_opts(0, (1, 1), (1, 1), act=1))
    a1 = w.tensor([1, H // 2, W // 2, 2 * C0])
    dw = rng.normal(0, 0.3, (1, 3, 3, 2 * C0)).astype(np.float32)
    w.op(DEPTHWISE, [a0, w.const(dw), w.const(rng.normal(0, 0.5, 2 * C0).astype(np.float32))],
         [a1], depthwise_opts(0, (2, 2), 2))
    q1 = w.tensor([1, H // 2, W // 2, 1], type_code=2)
    w.op(CUSTOM, [a1], [q1], custom=lce("LceQuantize"))
    attrs = {"channels_in": 2 * C0, "dilation_height_factor": 1, "dilation_width_factor": 1,
             "fused_activation_function": 0, "pad_values": 1, "padding": 0,
             "stride_height": 1, "stride_width": 1}
    filt = w.const(pack(rng.choice([-1.0, 1.0], (C1, 3, 3, 2 * C0)).astype(np.float32)), 2)
    a2 = w.tensor([1, H // 2, W // 2, C1])
    w.op(CUSTOM, [q1, filt, w.const(rng.uniform(0.05, 0.2, C1).astype(np.float32)),
                  w.const(rng.normal(0, 0.5, C1).astype(np.float32)), -1], [a2],
         custom=lce("LceBconv2d", attrs))
    f = w.tensor([1, C1])
    w.op(MEAN, [a2, w.const(np.int32([1, 2]))], [f], reducer_opts(False))
    out = w.tensor([1, CLASSES], name="logits")
    dense = rng.normal(0, 1 / math.sqrt(C1), (CLASSES, C1)).astype(np.float32)
    w.op(FC, [f, w.const(dense), w.const(rng.normal(0, 0.1, CLASSES).astype(np.float32))],
         [out])
    path.write_bytes(w.build([x], [out]))
    return path


def rgb_inputs(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(LO, HI + 1, (n, H, W, 3)).astype(np.float32)
    x[0], x[1] = LO, HI
    return x


@pytest.fixture(scope="module")
def dw_model(tmp_path_factory):
    path = write_dw_model(tmp_path_factory.mktemp("tflite_dw") / "dw.tflite")
    return path, edge_sdk.load(path, input_range=(LO, HI), calibration=rgb_inputs(64, seed=7))


def test_depthwise_stem_is_an_8bit_grouped_conv(dw_model):
    _, m = dw_model
    (g,) = [layer for layer in m.source.layers if isinstance(layer, L.GroupConv2d)]
    assert isinstance(g.weights, L.Int8Weights) and g.groups == C0
    assert any(isinstance(layer, L.Transpose) for layer in m.source.layers)
    quant = [layer for layer in m.source.layers if isinstance(layer, L.Quantize)]
    assert len(quant) == 2  # before the depthwise conv and before the dense head


def test_depthwise_stem_faithful_and_fixed_point_against_reference(dw_model):
    path, m = dw_model
    x = rgb_inputs(500, seed=1)
    ref = run_reference(path, x)
    assert_close_to_reference(m.run(x), ref, exact=False)
    agree = np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1))
    assert agree >= 0.97, agree


def test_depthwise_stem_cortex_m_host_bit_exact(dw_model, tmp_path):
    _, m = dw_model
    assert_host_bit_exact(m.ir, rgb_inputs(200, seed=3), tmp_path / "host")


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
def test_depthwise_stem_fpga_bit_exact(dw_model, tmp_path):
    _, m = dw_model
    x = rgb_inputs(3, seed=6)
    sim = m.convert("fpga", tmp_path / "fpga", board="sim").simulate(x)
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))


def test_float_depthwise_without_calibration_names_calibrate(dw_model):
    path, _ = dw_model
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path, input_range=(LO, HI))
    msg = str(info.value)
    assert "\n" not in msg and "--calibrate" in msg, msg
