"""8-bit first and last layers (issue #11): QONNX/Brevitas 8-bit Quant and plain ONNX float
layers quantised with a calibration set.

References: qonnx's own executor (Brevitas models built here: QuantConv2d / QuantLinear at 8
bits around binary layers) and onnxruntime (float torch models). `run` (faithful mode) must
equal them to float32 rounding; `run --fixed-point` (what the targets compute) must agree on
the argmax. The Quantize rule of sdk/fixedpoint.py is checked against exact rational
arithmetic, the faithful Quantize against qonnx's `quant`, and the integer thresholds after an
8-bit conv against the exact sign of the source's BatchNorm. Bad inputs give one-line errors.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import onnx
import pytest
from conftest import assert_close_to_reference, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import edge_sdk
from edge_sdk import fixedpoint as fx
from edge_sdk import golden
from edge_sdk.converters.onnx.frontend import import_model
from edge_sdk.converters.onnx.loader import load as load_onnx
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir import serialize
from edge_sdk.ir.graph import Graph
from edge_sdk.model import Model
from edge_sdk.passes import fixed_point as fp
from edge_sdk.passes.pipeline import lower
from edge_sdk.thresholds import apply_threshold

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")
pytest.importorskip("brevitas", reason="the [train] extra (brevitas) is not installed")
qonnx = pytest.importorskip("qonnx", reason="the [qonnx] extra is not installed")

import torch_nets as tn
from qonnx.custom_op.general.quant import quant as qonnx_quant
from test_qonnx import QB, latent
from torch import nn

from edge_sdk.converters.onnx.qonnx_reference import run_qonnx

LO, HI = 0, 15
IMG = (1, 6, 6)
FLAT = 36


# ---------------------------------------------------------------------------- models
def _settle(model: nn.Module, shape, gen: torch.Generator, steps: int = 40) -> nn.Module:
    """Train-mode passes on random integer inputs: BatchNorm statistics (cumulative) and
    Brevitas' runtime activation scales come from the data, so thresholds sit inside the
    accumulators' range; then BN's affine part is randomised (half the gammas negative)."""
    x = torch.randint(LO, HI + 1, (64, *shape), generator=gen).float()
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
        for mod in model.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.weight.copy_(torch.randn(mod.num_features, generator=gen))
                mod.bias.copy_(torch.randn(mod.num_features, generator=gen) * 0.3)
    return model.eval()


def brevitas_model(name: str, seed: int = 0) -> nn.Module:
    """Brevitas networks: an 8-bit first layer, binary layers, an 8-bit last layer.

    conv_gap: QuantConv2d 8-bit (per tensor, narrow) -> BN -> sign -> binary conv -> BN ->
      average -> 8-bit signed activation Quant -> QuantLinear 8-bit with bias.
    conv_gap_channel: per-channel 8-bit weights, not narrow, a float bias on the first conv,
      an unsigned 8-bit activation (negative averages clip to 0).
    mlp_signs: QuantLinear 8-bit on the integer input -> BN -> sign -> binary dense -> BN ->
      sign -> QuantLinear 8-bit reading the ±1 data directly.
    conv_gap_inq: conv_gap behind an unsigned 8-bit input quantiser: real-valued inputs.
    """
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear
    from brevitas.quant import (
        Int8ActPerTensorFloat,
        Int8WeightPerChannelFloat,
        Int8WeightPerTensorFloat,
        Uint8ActPerTensorFloat,
    )
    from brevitas.quant.binary import (
        SignedBinaryActPerTensorConst,
        SignedBinaryWeightPerTensorConst,
    )

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    c = 8

    def sign():
        return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)

    if name == "mlp_signs":
        model = nn.Sequential(
            QuantLinear(FLAT, 24, bias=False, weight_quant=Int8WeightPerTensorFloat),
            nn.BatchNorm1d(24), sign(),
            QuantLinear(24, 24, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
            nn.BatchNorm1d(24), sign(),
            QuantLinear(24, 10, bias=True, weight_quant=Int8WeightPerTensorFloat))
        return _settle(model, (FLAT,), gen)
    channel = name == "conv_gap_channel"
    wq = Int8WeightPerChannelFloat if channel else Int8WeightPerTensorFloat
    extra = {"weight_narrow_range": False} if channel else {}
    head = [QuantIdentity(act_quant=Uint8ActPerTensorFloat)] if name == "conv_gap_inq" else []
    model = nn.Sequential(
        *head,
        QuantConv2d(1, c, 3, padding=1, bias=channel, weight_quant=wq, **extra),
        nn.BatchNorm2d(c), sign(),
        QuantConv2d(c, c, 3, padding=1, bias=False,
                    weight_quant=SignedBinaryWeightPerTensorConst),
        nn.BatchNorm2d(c),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        QuantIdentity(act_quant=Uint8ActPerTensorFloat if channel else Int8ActPerTensorFloat),
        QuantLinear(c, 10, bias=True, weight_quant=wq, **extra))
    return _settle(model, IMG, gen)


BREVITAS = {"conv_gap": IMG, "conv_gap_channel": IMG, "mlp_signs": (FLAT,), "conv_gap_inq": IMG}
REAL_INPUT = ("conv_gap_inq",)  # the model quantises its own (real-valued) input


def export_brevitas(name: str, folder, seed: int = 0):
    from brevitas.export import export_qonnx

    shape = BREVITAS[name]
    path = folder / f"{name}.qonnx.onnx"
    export_qonnx(brevitas_model(name, seed), args=torch.zeros(1, *shape),
                 export_path=str(path), dynamo=True, optimize=True, external_data=False,
                 input_names=["input"], output_names=["logits"],
                 dynamic_shapes=({0: torch.export.Dim("batch")},))
    return path


class FloatConvGap(nn.Module):
    """Float conv (with bias) -> BN -> sign -> binary conv -> BN -> mean -> float Linear."""

    def __init__(self, c: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv0 = nn.Conv2d(1, c, 3, padding=1)
        with torch.no_grad():
            self.conv0.weight.copy_(torch.randn(self.conv0.weight.shape, generator=gen) * 0.3)
        self.bn0 = nn.BatchNorm2d(c)
        self.conv1 = tn.BinConv(c, c, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv1.weight.copy_(torch.randn(self.conv1.weight.shape, generator=gen))
        self.bn1 = nn.BatchNorm2d(c)
        tn._randomise_bn(self.bn1, gen, c * 9)
        self.fc = nn.Linear(c, 10)
        _settle_bn0(self, gen)

    def forward(self, x):
        x = torch.sign(self.bn0(self.conv0(x)))
        return self.fc(self.bn1(self.conv1(x)).mean(dim=(2, 3)))


class FloatMlpSigns(nn.Module):
    """Float Linear -> BN -> sign -> binary Linear -> BN -> sign -> float Linear (reads ±1)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.fc0 = nn.Linear(FLAT, 24)
        self.bn0 = nn.BatchNorm1d(24)
        self.fc1 = tn.BinLinear(24, 24, bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(self.fc1.weight.shape, generator=gen))
        self.bn1 = nn.BatchNorm1d(24)
        tn._randomise_bn(self.bn1, gen, 24)
        self.fc2 = nn.Linear(24, 10)
        _settle_bn0(self, gen, flat=True)

    def forward(self, x):
        x = torch.sign(self.bn0(self.fc0(x)))
        return self.fc2(torch.sign(self.bn1(self.fc1(x))))


def _settle_bn0(model: nn.Module, gen: torch.Generator, flat: bool = False) -> None:
    """bn0's statistics from the float first layer's real outputs (so its sign splits)."""
    x = torch.randint(LO, HI + 1, (256, FLAT) if flat else (256, *IMG), generator=gen).float()
    first = model.fc0 if flat else model.conv0
    with torch.no_grad():
        y = first(x)
        dims = (0,) if flat else (0, 2, 3)
        model.bn0.running_mean.copy_(y.mean(dim=dims))
        model.bn0.running_var.copy_(y.var(dim=dims) + 0.1)
        model.bn0.weight.copy_(torch.randn(model.bn0.num_features, generator=gen))
        model.bn0.bias.copy_(torch.randn(model.bn0.num_features, generator=gen) * 0.3)


FLOAT = {"float_conv_gap": (FloatConvGap, IMG), "float_mlp_signs": (FloatMlpSigns, (FLAT,))}


def export_float(name: str, folder, seed: int = 0):
    make, shape = FLOAT[name]
    torch.manual_seed(seed)  # the float layers' default bias init draws from the global RNG
    return tn.export(make(seed=seed), torch.zeros((2, *shape)), folder / f"{name}.onnx", False)


def inputs(shape, n: int, seed: int, real: bool = False) -> np.ndarray:
    """Integers in [LO, HI] (the extremes first); `real`: any float in [LO - 1, HI + 1]."""
    rng = np.random.default_rng(seed)
    if real:
        return rng.uniform(LO - 1, HI + 1, size=(n, *shape)).astype(np.float32)
    x = rng.integers(LO, HI + 1, size=(n, *shape)).astype(np.float32)
    x[0], x[1] = LO, HI
    return x


def model_inputs(name: str, n: int, seed: int) -> np.ndarray:
    shape = BREVITAS.get(name) or FLOAT[name][1]
    return inputs(shape, n, seed, real=name in REAL_INPUT)


def calibrated(path, cal: np.ndarray) -> Model:
    """A Model of a float ONNX file quantised with the calibration set `cal`, built from the
    frontend directly (the CLI's `--calibrate` is checked against it below)."""
    source = import_model(load_onnx(path), str(path), input_range=(LO, HI), calibration=cal)
    return Model(source, lower(source), str(path))


@pytest.fixture(scope="module")
def brevitas_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8_brevitas")
    return {name: export_brevitas(name, folder) for name in BREVITAS}


@pytest.fixture(scope="module")
def float_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8_float")
    return {name: export_float(name, folder) for name in FLOAT}


def load_brevitas(path) -> Model:
    if any(str(path).endswith(f"{name}.qonnx.onnx") for name in REAL_INPUT):
        return edge_sdk.load(path)  # its input quantiser fixes the input's integer range
    return edge_sdk.load(path, input_range=(LO, HI))


# ---------------------------------------------------------------------------- QONNX / Brevitas
@pytest.mark.parametrize("name", list(BREVITAS))
def test_brevitas_faithful_equals_qonnx_executor(brevitas_paths, name):
    m = load_brevitas(brevitas_paths[name])
    int8 = [layer for layer in m.ir.layers if isinstance(layer, (L.Dense, L.Conv2d))
            and L.is_int8(layer.weights)]
    assert [layer.name for layer in int8] == [m.ir.layers[1].name, int8[-1].name]
    assert len(int8) == 2 and m.ir.consumers(int8[-1].output)[0].kind == "scores"
    quantize = [layer for layer in m.ir.layers if isinstance(layer, L.Quantize)]
    assert len(quantize) == (0 if name == "mlp_signs" else 1)
    assert (m.ir.layers[0].rounding == "half_even") == (name in REAL_INPUT)
    x = model_inputs(name, 300, seed=1)
    ref = run_qonnx(brevitas_paths[name], x).astype(np.float32)
    y = m.run(x)
    assert_close_to_reference(y, ref, exact=False)


@pytest.mark.parametrize("name", list(BREVITAS))
def test_brevitas_fixed_point_argmax_agrees(brevitas_paths, name):
    m = load_brevitas(brevitas_paths[name])
    x = model_inputs(name, 400, seed=2)
    ref = run_qonnx(brevitas_paths[name], x)
    got = m.run(x, fixed_point=True)
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    if name == "mlp_signs":  # no real-valued tensor: both modes are the same integers
        np.testing.assert_array_equal(got, m.run(x))
        assert agree == 1.0
    else:
        assert agree >= 0.97, agree


def test_quantize_layer_faithful_equals_qonnx_tensor(brevitas_paths):
    """The Quantize output (q - z) equals the Quant node's output / scale in qonnx's run."""
    from edge_sdk.converters.onnx.intermediates import run_qonnx_all

    path = brevitas_paths["conv_gap_channel"]
    m = load_brevitas(path)
    proto = onnx.load(str(path))
    node = [n for n in proto.graph.node if n.op_type == "Quant"][-2]  # the activation's
    scale = numpy_helper.to_array(next(t for t in proto.graph.initializer
                                       if t.name == node.input[1]))
    x = inputs(IMG, 200, seed=3)
    ref = run_qonnx_all(path, x, [node.output[0]])[node.output[0]]
    q = next(layer for layer in m.ir.layers if isinstance(layer, L.Quantize))
    assert q.lo == 0 and q.hi == 255 and q.zero_point == 0
    got = golden.run_all(m.ir, x)[q.output]
    np.testing.assert_array_equal(got.astype(np.float32) * np.float32(scale),
                                  ref.reshape(got.shape))
    assert (got == 0).any(), "negative averages clip to 0 in the unsigned quantiser"


def _bn_params(proto: onnx.ModelProto, node: onnx.NodeProto):
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    gamma, beta, mean, var = (np.asarray(inits[n], np.float32) for n in node.input[1:5])
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    return gamma, beta, mean, (var + np.float32(eps)).astype(np.float32)


def _exact_sign(acc: int, s: Fraction, g: Fraction, b: Fraction, mu: Fraction,
                v: Fraction) -> int:
    """sign(g * (acc * s - mu) / sqrt(v) + b) exactly: sign of a + b * sqrt(v)."""
    a = g * (acc * s - mu)
    sa, sb = (a > 0) - (a < 0), (b > 0) - (b < 0)
    if sa == 0 or sb == 0 or sa == sb:
        return sa if sa != 0 else sb
    lhs, rhs = a * a, b * b * v
    return 0 if lhs == rhs else (sa if lhs > rhs else sb)


def test_thresholds_after_8bit_conv_are_exact(brevitas_paths):
    """BN + sign after the 8-bit first conv: the Threshold's outputs at tau - 1, tau, tau + 1
    equal the exact sign of the source's BN of acc * s_w (BipolarQuant: +1 iff >= 0)."""
    path = brevitas_paths["conv_gap"]
    m = load_brevitas(path)
    thr = m.ir.consumers(m.ir.layers[1].output)[0]
    assert isinstance(thr, L.Threshold)
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    wq = next(n for n in proto.graph.node if n.op_type == "Quant")
    s = Fraction(float(np.asarray(inits[wq.input[1]], np.float32).reshape(-1)[0]))
    bn = next(n for n in proto.graph.node if n.op_type == "BatchNormalization")
    gamma, beta, mean, v = _bn_params(proto, bn)
    info = m.ir.infos()[thr.inputs[0]]
    checked = 0
    for c in range(len(thr.tau)):
        for acc in (int(thr.tau[c]) - 1, int(thr.tau[c]), int(thr.tau[c]) + 1):
            if not info.lo <= acc <= info.hi:
                continue
            want = 1 if _exact_sign(acc, s, Fraction(float(gamma[c])), Fraction(float(beta[c])),
                                    Fraction(float(mean[c])), Fraction(float(v[c]))) >= 0 else -1
            got = apply_threshold(np.full((1, len(thr.tau)), acc), thr.tau, thr.flip,
                                  thr.zero)[0, c]
            assert got == want, (c, acc)
            checked += 1
    assert checked >= 2 * len(thr.tau)


def test_handwritten_qonnx_matmul_per_channel_and_activation(tmp_path):
    """A hand-written graph: x -> Gemm(8-bit Quant weights, per-channel scale) -> 8-bit Quant
    (zero point 3, not narrow) -> MatMul(8-bit weights [K, O], per-output scale)."""
    rng = np.random.default_rng(5)
    g = QB("int8_mm")
    x = g.add_input("x", ["N", 12])
    w1 = g.quant(g.c("w1", latent(rng, 16, 12)), rng.uniform(0.005, 0.01, (16, 1)), bits=8,
                 narrow=1)
    h = g.gemm(x, w1, bias=rng.normal(0, 0.5, 16))
    a = g.quant(h, 0.03, zp=3.0, bits=8, signed=1)
    w2 = g.quant(g.c("w2", latent(rng, 16, 5)), rng.uniform(0.005, 0.01, (1, 5)), bits=8,
                 narrow=1)
    m_ = g.build(g.op("MatMul", [a, w2]), ["N", 5])
    path = tmp_path / "mm.onnx"
    onnx.save(m_, path)
    m = edge_sdk.load(path, input_range=(LO, HI))
    xs = rng.integers(LO, HI + 1, (300, 12)).astype(np.float32)
    ref = run_qonnx(path, xs).astype(np.float32)
    assert_close_to_reference(m.run(xs), ref, exact=False)
    # the codes of the activation reach both ends of [-128, 127] (saturation) here
    q = next(layer for layer in m.ir.layers if isinstance(layer, L.Quantize))
    codes = golden.run_all(m.ir, xs)[q.output] + q.zero_point
    assert codes.min() == -128 and codes.max() == 127
    fixed = m.run(xs, fixed_point=True)
    assert np.mean(fixed.argmax(1) == ref.argmax(1)) >= 0.97


# ---------------------------------------------------------------------------- calibrated float
@pytest.mark.parametrize("name", list(FLOAT))
def test_calibrated_float_model_faithful_equals_onnxruntime(float_paths, name):
    shape = FLOAT[name][1]
    m = calibrated(float_paths[name], inputs(shape, 64, seed=7))
    int8 = [layer for layer in m.ir.layers if isinstance(layer, (L.Dense, L.Conv2d))
            and L.is_int8(layer.weights)]
    assert len(int8) == 2 and all(layer.weights.float_values is not None for layer in int8)
    x = inputs(shape, 300, seed=8)
    ref = run_onnxruntime(float_paths[name], x)
    assert_close_to_reference(m.run(x), ref, exact=False)


@pytest.mark.parametrize("name", list(FLOAT))
def test_calibrated_fixed_point_argmax_agrees_with_onnxruntime(float_paths, name):
    shape = FLOAT[name][1]
    m = calibrated(float_paths[name], inputs(shape, 64, seed=7))
    x = inputs(shape, 400, seed=9)
    ref = run_onnxruntime(float_paths[name], x)
    got = m.run(x, fixed_point=True)
    assert float(np.mean(got.argmax(1) == ref.argmax(1))) >= 0.9


def test_calibration_quantises_symmetric_per_channel(float_paths):
    """Weights: s_o = max|w_o| / 127, codes round(w / s_o); the activation scale of the last
    layer's input: max |x| over the calibration set (onnxruntime's values) / 127."""
    path = float_paths["float_conv_gap"]
    cal = inputs(IMG, 32, seed=10)
    m = calibrated(path, cal)
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    w = inits[conv.input[1]].reshape(8, -1).astype(np.float64)
    first = m.ir.layers[1]
    s = np.abs(w).max(axis=1) / 127
    np.testing.assert_array_equal(first.weights.values, np.round(w / s[:, None]))
    assert np.abs(first.weights.values).max() == 127
    q = next(layer for layer in m.ir.layers if isinstance(layer, L.Quantize))
    assert not q.in_source
    gap = next(n for n in proto.graph.node if n.op_type == "ReduceMean").output[0]
    from edge_sdk.converters.onnx.intermediates import run_onnxruntime_all

    top = float(np.abs(run_onnxruntime_all(path, cal, [gap])[gap]).max())
    assert q.scale == pytest.approx(top / 127, rel=1e-6)


# ---------------------------------------------------------------------------- IR
def test_ir_folder_round_trip_and_inspect(brevitas_paths, float_paths, tmp_path):
    x = inputs(IMG, 60, seed=11)
    m = load_brevitas(brevitas_paths["conv_gap"])
    folder = m.convert("ir", tmp_path / "ir")
    back = edge_sdk.load(folder)
    for fixed in (False, True):
        np.testing.assert_array_equal(back.run(x, fixed_point=fixed), m.run(x, fixed_point=fixed))
    again = m.convert("ir", tmp_path / "ir2")
    assert (folder / "ir.json").read_bytes() == (again / "ir.json").read_bytes()
    text = m.inspect().text if hasattr(m.inspect(), "text") else str(m.inspect())
    assert "int8" in text and "Quantize" in text
    # the calibrated model: float weights and units survive the folder too
    c = calibrated(float_paths["float_conv_gap"], inputs(IMG, 32, seed=7))
    serialize.save(c.ir, tmp_path / "cal")
    ir = serialize.load(tmp_path / "cal")
    for fixed in (False, True):
        np.testing.assert_array_equal(golden.run(ir, x, fixed_point=fixed),
                                      c.run(x, fixed_point=fixed))


def test_packing_skips_8bit_weights(brevitas_paths):
    m = load_brevitas(brevitas_paths["conv_gap"])
    kinds = [type(layer.weights).__name__ for layer in m.ir.layers
             if isinstance(layer, (L.Dense, L.Conv2d))]
    assert kinds == ["Int8Weights", "PackedWeights", "Int8Weights"]


def _tiny(weights: np.ndarray) -> Graph:
    inp = L.Input("input", [], "input", shape=(weights.shape[1],), lo=0, hi=15)
    dense = L.Dense("d", ["input"], "d", weights=L.Int8Weights(weights))
    return Graph("tiny", [inp, dense], ["input"], ["d"])


def test_accumulator_bound_uses_the_8bit_row_sums():
    w = np.zeros((2, 10), np.int8)
    w[0, :3] = [127, -127, 5]
    w[1, 0] = -1
    info = _tiny(w).infos()["d"]
    assert (info.lo, info.hi) == (-(259 * 15), 259 * 15)


def test_bad_8bit_weights_in_ir_refused():
    with pytest.raises(EdgeError, match=r"layer 'd'.*8-bit weights must be integers in "
                                        r"\[-128, 127\]"):
        _tiny(np.full((2, 4), 128, np.int16)).infos()


def test_fpga_converts_8bit_layers(brevitas_paths):
    """The FPGA backend runs 8-bit layers (bit-exactness: tests/test_fpga_int8.py); a target
    without 8-bit kernels still gets the one-line refusal."""
    from edge_sdk.converters.fpga.plan import plan

    m = load_brevitas(brevitas_paths["conv_gap"])
    fp.refuse_on_target(m.ir, "fpga")
    stages = plan(m.ir).stages
    assert sum(bool(getattr(s, "int8_weights", False)) for s in stages) == 2
    with pytest.raises(EdgeError) as info:
        fp.refuse_on_target(m.ir, "no-int8-target")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    assert "8-bit Conv2d" in msg and "not supported by the no-int8-target backend" in msg


# ---------------------------------------------------------------------------- Quantize rule
@settings(max_examples=400, deadline=None)
@given(scale=st.floats(float(np.float32(1e-6)), 1e3, allow_nan=False, allow_infinity=False,
                       width=32),
       frac=st.integers(-4, 16), zp=st.integers(-5, 5), narrow=st.booleans(),
       xs=st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=20))
def test_quantize_rule_against_exact_rationals(scale, frac, zp, narrow, xs):
    lo, hi = (-127 if narrow else -128) + 5, 127 - 5  # keep zp inside the code range
    mult, shift = fx.quantize_params(scale, frac)
    assert 0 < mult < 2**31 and 1 <= shift <= fx.QUANT_SHIFT_MAX
    got = fx.quantize(np.array(xs, np.int64), mult, shift, zp, lo, hi)
    exact_m = Fraction(2) ** (shift - frac) / Fraction(scale)
    assert abs(mult - exact_m) <= Fraction(1, 2)
    for x, g in zip(xs, got.tolist()):
        # the documented integer rule, in Python integers (no int64 shortcut)
        rule = math.floor(Fraction(x * mult, 2**shift) + Fraction(1, 2))
        assert g == min(max(rule + zp, lo), hi) - zp
        # the real quantiser, half up, wherever M's rounding cannot reach a boundary
        v = Fraction(x) * Fraction(2) ** -frac / Fraction(scale)
        slack = Fraction(abs(x), 2 ** (shift + 1))
        dist = abs((v + Fraction(1, 2)) - math.floor(v + Fraction(1, 2)))
        if slack < dist < 1 - slack:
            real = math.floor(v + Fraction(1, 2))
            assert g == min(max(real + zp, lo), hi) - zp


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(float(np.float32(1e-3)), 10, width=32), zp=st.integers(-3, 3), signed=st.booleans(),
       narrow=st.booleans(),
       xs=st.lists(st.floats(-2000, 2000, width=32), min_size=1, max_size=30))
def test_faithful_quantize_equals_qonnx_quant(scale, zp, signed, narrow, xs):
    """golden.quantize_float (what `run` computes for a QONNX 8-bit Quant on data) equals
    qonnx's own `quant`, ties (x = (k + 1/2) * scale) included."""
    x = np.array(xs, np.float32)
    k = np.arange(len(x), dtype=np.float32) - 10
    x[::3] = ((k[::3] + np.float32(0.5)) * np.float32(scale)).astype(np.float32)
    lo, hi = (-127 if narrow else -128, 127) if signed else (0, 254 if narrow else 255)
    if not lo <= zp <= hi:
        zp = 0
    ref = qonnx_quant(x, np.float32(scale), np.float32(zp), np.float32(8), signed, narrow,
                      "ROUND")
    got = golden.quantize_float(x, float(np.float32(scale)), zp, lo, hi)
    np.testing.assert_array_equal(got.astype(np.float32) * np.float32(scale), ref)


def test_input_quantiser_rounds_real_inputs_like_qonnx(brevitas_paths):
    """The absorbed input quantiser: the Input's integers equal the Quant node's output /
    scale in qonnx's run, for real inputs, ties and out-of-range values included."""
    from edge_sdk.converters.onnx.intermediates import run_qonnx_all

    path = brevitas_paths["conv_gap_inq"]
    m = load_brevitas(path)
    inp = m.ir.layers[0]
    assert (inp.lo, inp.hi, inp.rounding) == (0, 255, "half_even")
    proto = onnx.load(str(path))
    node = next(n for n in proto.graph.node if n.op_type == "Quant")
    x = inputs(IMG, 100, seed=4, real=True)
    x[0] = ((np.arange(36, dtype=np.float32) + np.float32(0.5)) * np.float32(inp.scale)
            ).reshape(IMG)  # exact halves: rounded to even
    x[1] = -3.0
    ref = run_qonnx_all(path, x, [node.output[0]])[node.output[0]]
    q = golden.quantise_input(inp, x)
    np.testing.assert_array_equal(q.astype(np.float32) * np.float32(inp.scale), ref)


def test_quantize_params_refuses_an_unrepresentable_multiplier():
    with pytest.raises(ValueError, match="does not fit int32"):
        fx.quantize_params(1e-12, -4)  # 2**4 / 1e-12 >= 2**31 even at S = 1


# ---------------------------------------------------------------------------- bad input
def refused(model: onnx.ModelProto, tmp_path, *needles: str, calibration=None) -> str:
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(EdgeError) as info:
        if calibration is None:
            edge_sdk.load(path, input_range=(LO, HI))
        else:
            import_model(load_onnx(path), str(path), (LO, HI), calibration)
    text = str(info.value)
    assert len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    return text


def _gemm_with(wq) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    g = QB("bad")
    x = g.add_input("x", ["N", 8])
    return g.build(g.gemm(x, wq(g, g.c("w", latent(rng, 4, 8)))), ["N", 4])


def test_9_bit_quant_refused(tmp_path):
    refused(_gemm_with(lambda g, w: g.quant(w, 0.01, bits=9, narrow=1)), tmp_path,
            "node 'Quant' (Quant): 9-bit quantiser", "quantises to 9 bits")


def test_8bit_weights_with_a_zero_point_refused(tmp_path):
    refused(_gemm_with(lambda g, w: g.quant(w, 0.01, zp=2.0, bits=8, narrow=1)), tmp_path,
            "(Quant)", "zero point 0")


def test_8bit_weight_codes_outside_int8_refused(tmp_path):
    """Unsigned 8-bit weights reach code 255: not an int8 layer."""
    refused(_gemm_with(lambda g, w: g.quant(w, 0.001, bits=8, signed=0)), tmp_path,
            "(Quant)", "8-bit weight codes reach", "[-128, 127]")


def test_8bit_activation_with_per_channel_scale_refused(tmp_path):
    rng = np.random.default_rng(1)
    g = QB("bad")
    x = g.add_input("x", ["N", 8])
    h = g.gemm(x, g.quant(g.c("w", latent(rng, 4, 8)), 0.01, bits=8, narrow=1))
    a = g.quant(h, np.full((1, 4), 0.1), bits=8)
    m = g.build(g.gemm(a, g.quant(g.c("w2", latent(rng, 3, 4)), 0.01, bits=8, narrow=1)),
                ["N", 3])
    refused(m, tmp_path, "(Quant)", "per-tensor activation scale")


def _float_model(tmp_path):
    return export_float("float_conv_gap", tmp_path)


def test_float_layer_without_calibration_refused(tmp_path):
    path = _float_model(tmp_path)
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path, input_range=(LO, HI))
    text = str(info.value)
    assert len(text.splitlines()) == 1 and "(Conv)" in text
    assert "weights are not binary or ternary" in text and "--calibrate" in text


@pytest.mark.parametrize("bad, needle", [
    (np.zeros((4, 1, 6, 5), np.float32),
     "calibration set: shape [4, 1, 6, 5] does not match the model input [N, 1, 6, 6]"),
    (np.zeros((0, 1, 6, 6), np.float32), "calibration set: shape [0, 1, 6, 6]"),
    (np.full((2, 1, 6, 6), np.nan, np.float32), "calibration set: holds NaN"),
    (np.array([["a"]]), "calibration set: dtype"),
])
def test_bad_calibration_sets_refused(tmp_path, bad, needle):
    path = _float_model(tmp_path)
    with pytest.raises(EdgeError) as info:
        import_model(load_onnx(path), str(path), (LO, HI), bad)
    text = str(info.value)
    assert len(text.splitlines()) == 1 and needle in text, text


def test_calibration_of_a_qonnx_model_refused(brevitas_paths):
    path = brevitas_paths["mlp_signs"]
    with pytest.raises(EdgeError, match="calibration set is for plain ONNX models"):
        import_model(load_onnx(path), str(path), (LO, HI), inputs((FLAT,), 4, seed=0))


def test_layer_diff_against_the_sources(brevitas_paths, float_paths):
    """`edge-sdk diff` (golden vs the source executor, tensor by tensor) finds no diverging
    tensor in a Brevitas model or a calibrated float model, the 8-bit layers included."""
    from edge_sdk import diff

    x = inputs(IMG, 20, seed=12)
    for m in (load_brevitas(brevitas_paths["conv_gap"]),
              calibrated(float_paths["float_conv_gap"], inputs(IMG, 32, seed=7))):
        cmp = diff.source_vs_golden(m, x)
        assert not cmp.skipped
        first = m.ir.layers[1].name
        assert any(r.site.layer == first for r in cmp.rows)  # the 8-bit conv is compared
        assert all(r.mismatch is None for r in cmp.rows), [r for r in cmp.rows if r.mismatch]


def test_cli_calibrate_runs_converts_and_simulates(float_paths, tmp_path):
    """`--calibrate X.npy` on run / inspect / convert: the same 8-bit model as `calibrated()`,
    the Cortex-M build equal to `run --fixed-point`; bad calibration files fail in one line."""
    path = float_paths["float_conv_gap"]
    cal, x = tmp_path / "cal.npy", tmp_path / "x.npy"
    np.save(cal, inputs(IMG, 32, seed=7))
    np.save(x, inputs(IMG, 16, seed=8))
    rng = ["--input-range", f"{LO},{HI}"]
    want = calibrated(path, np.load(cal)).run(np.load(x), fixed_point=True)
    y = tmp_path / "y.npy"
    proc = run_cli("run", path, *rng, "--calibrate", cal, "--input", x, "--output", y,
                   "--fixed-point")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(y), want)
    proc = run_cli("inspect", path, *rng, "--calibrate", cal)
    assert proc.returncode == 0 and "int8 (calibrated)" in proc.stdout, proc.stderr
    out = tmp_path / "cm"
    proc = run_cli("convert", path, *rng, "--calibrate", cal, "--target", "cortex-m", "-o", out)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", out, "--input", x, "--output", tmp_path / "s.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(tmp_path / "s.npy"), want)

    np.save(tmp_path / "bad.npy", np.zeros((3, 2), np.float32))
    for bad in (tmp_path / "bad.npy", tmp_path / "missing.npy"):
        out2 = tmp_path / "no"
        proc = run_cli("convert", path, *rng, "--calibrate", bad, "--target", "cortex-m",
                       "-o", out2)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not out2.exists()
