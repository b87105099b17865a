"""Real-valued layers between binary layers (issue #11, first slice): Bi-Real residual blocks,
ReActNet RSign/RPReLU, grouped and depthwise binary convs, Concat, global average pooling.

`run` (float32 real-valued layers) is checked against onnxruntime on both torch exporters;
`run --fixed-point` against onnxruntime's argmax and, tensor by tensor, against the float32
values; the fixed-point rules of sdk/fixedpoint.py against exact rational arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge_sdk
from edge_sdk import fixedpoint as fx
from edge_sdk import golden
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import TensorInfo
from edge_sdk.passes import fixed_point as fp
from edge_sdk.thresholds import apply_threshold

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

import torch_nets as tn
from conftest import assert_close_to_reference, run_cli
from torch import nn

from edge_sdk.converters.onnx.reference import run_onnxruntime

SHAPE = (1, 6, 6)
LO, HI = 0, 15


# ---------------------------------------------------------------------------- torch models
def _bin_conv(cin, cout, gen, k=3, groups=1, kfan=None):
    conv = tn.BinConv(cin, cout, k, padding=k // 2, bias=False, groups=groups)
    bn = nn.BatchNorm2d(cout)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
    tn._randomise_bn(bn, gen, kfan or cin // groups * k * k)
    return conv, bn


def _head(c, n_out, gen):
    fc = tn.BinLinear(c, n_out, bias=False)
    bn = nn.BatchNorm1d(n_out)
    with torch.no_grad():
        fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen))
    tn._randomise_bn(bn, gen, c)
    return fc, bn


class BiRealBlock(nn.Module):
    """x + BN(binary_conv(sign(x))): the real-valued shortcut around every binary conv."""

    def __init__(self, c, gen, groups=1):
        super().__init__()
        self.conv, self.bn = _bin_conv(c, c, gen, groups=groups)

    def forward(self, x):
        return self.bn(self.conv(torch.sign(x))) + x


class BiReal(nn.Module):
    """Stem (multi-bit input, binary weights) -> two Bi-Real blocks (the second grouped) ->
    global average pool -> sign -> binary dense -> BN scores."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        self.blocks = nn.Sequential(BiRealBlock(c, gen), BiRealBlock(c, gen, groups=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc, self.bnf = _head(c, n_out, gen)

    def forward(self, x):
        x = self.blocks(self.bn0(self.stem(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.bnf(self.fc(torch.sign(x)))


class RPReLU(nn.Module):
    """ReActNet's RPReLU: shift, per-channel PReLU, shift."""

    def __init__(self, c, gen):
        super().__init__()
        self.a = nn.Parameter(torch.randn(1, c, 1, 1, generator=gen) * 0.3)
        self.p = nn.PReLU(c)
        self.b = nn.Parameter(torch.randn(1, c, 1, 1, generator=gen) * 0.3)
        with torch.no_grad():
            self.p.weight.copy_(torch.rand(c, generator=gen) * 0.5)

    def forward(self, x):
        return self.p(x - self.a) + self.b


class ReAct(nn.Module):
    """RSign (sign(x - t_c)) -> binary conv -> BN -> + shortcut -> RPReLU -> mean over H, W;
    head "binary": sign -> binary dense -> BN; head "real": per-channel scale and bias of the
    average straight to the output (scores computed from a fixed-point tensor)."""

    def __init__(self, c=8, seed=0, n_out=10, head="binary"):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        self.t = nn.Parameter(torch.randn(1, c, 1, 1, generator=gen))
        self.conv, self.bn = _bin_conv(c, c, gen)
        self.act = RPReLU(c, gen)
        self.head = head
        if head == "binary":
            self.fc, self.bnf = _head(c, n_out, gen)
        else:
            self.scale = nn.Parameter(torch.randn(1, c, generator=gen))
            self.bias = nn.Parameter(torch.randn(1, c, generator=gen))

    def forward(self, x):
        x = self.bn0(self.stem(x))
        x = self.act(self.bn(self.conv(torch.sign(x - self.t))) + x)
        x = x.mean((2, 3))
        if self.head == "binary":
            return self.bnf(self.fc(torch.sign(x)))
        return x * self.scale + self.bias


class DepthwiseConcat(nn.Module):
    """Depthwise binary conv (group = channels) beside its real-valued input, concatenated on
    the channels, then sign -> binary dense."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        self.dw, self.bn1 = _bin_conv(c, c, gen, groups=c)
        self.fc, self.bnf = _head(2 * c * SHAPE[1] * SHAPE[2], n_out, gen)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        y = self.bn1(self.dw(torch.sign(x)))
        z = torch.cat([x, y], 1)
        return self.bnf(self.fc(torch.flatten(torch.sign(z), 1)))


class SignConcat(nn.Module):
    """Concat of two ±1 maps (an RSign and a plain sign of a grouped conv's BN) on the
    channels, read by one binary dense."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        self.t = nn.Parameter(torch.randn(1, c, 1, 1, generator=gen))
        self.gc, self.bn1 = _bin_conv(c, 2 * c, gen, groups=4)
        self.fc, self.bnf = _head(3 * c * SHAPE[1] * SHAPE[2], n_out, gen)

    def forward(self, x):
        x = self.bn0(self.stem(x))
        a = torch.sign(x - self.t)
        b = torch.sign(self.bn1(self.gc(a)))
        return self.bnf(self.fc(torch.flatten(torch.cat([a, b], 1), 1)))


class ReluPool(nn.Module):
    """ReLU and max-pool on real-valued data, then a residual block on the pooled map."""

    def __init__(self, c=8, seed=0, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        with torch.no_grad():
            self.bn0.bias.add_(1.0)  # keep most of the ReLU's inputs positive
        self.block = BiRealBlock(c, gen)
        self.fc, self.bnf = _head(c * 9, n_out, gen)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn0(self.stem(x))), 2)
        x = self.block(x)
        return self.bnf(self.fc(torch.flatten(torch.sign(x), 1)))


MODELS = {
    "bireal": BiReal,
    "reactnet": ReAct,
    "reactnet_real_head": lambda: ReAct(head="real"),
    "depthwise_concat": DepthwiseConcat,
    "relu_maxpool": ReluPool,
    "sign_concat": SignConcat,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export each model once per exporter (the export dominates the test time)."""
    cache: dict = {}

    def get(name: str, dynamo: bool):
        if (name, dynamo) not in cache:
            folder = tmp_path_factory.mktemp(f"{name}_{dynamo}")
            model = MODELS[name]()
            path = tn.export(model, torch.zeros((2, *SHAPE)), folder / "m.onnx", dynamo)
            cache[name, dynamo] = (model, path)
        return cache[name, dynamo]

    return get


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(LO, HI + 1, size=(n, *SHAPE)).astype(np.float32)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
@pytest.mark.parametrize("name", list(MODELS))
def test_run_equals_onnxruntime_and_fixed_point_agrees(exported, name, dynamo):
    model, path = exported(name, dynamo)
    m = edge_sdk.load(path, input_range=(LO, HI))
    assert fp.has_real_valued(m.ir)
    x = _inputs(200)
    ref = run_onnxruntime(path, x)
    y = m.run(x)
    # dynamo=False keeps BatchNormalization as a node: the float32 path is bit-exact; dynamo
    # folds BN into the conv weights, which onnxruntime sums in float32 in its own order
    assert_close_to_reference(y, ref, exact=not dynamo)
    assert m.check(x, y).ok
    with torch.no_grad():
        assert_close_to_reference(y, model(torch.from_numpy(x)).numpy(), exact=False)

    yq = m.run_outputs(x, fixed_point=True)["y"]
    assert yq.shape == ref.shape and yq.dtype == ref.dtype
    agree = float(np.mean(yq.argmax(1) == ref.argmax(1)))
    assert agree >= 0.99, agree
    scale = float(np.abs(ref).max())
    assert float(np.abs(yq - ref).max()) <= 0.02 * scale


def _float_vs_fixed(m, x):
    """Per fixed-point tensor: max |q * 2**-frac - float32 value| and the tensor's real bound."""
    infos = m.ir.infos()
    env_f = golden.run_all(m.ir, x)
    env_q = golden.run_all(m.ir, x, fixed_point=True)
    out = {}
    for t, info in infos.items():
        if info.kind == "fixed":
            deq = env_q[t].astype(np.float64) * 2.0 ** -info.frac
            assert env_q[t].dtype == np.int64 and env_f[t].dtype == np.float32
            assert np.abs(env_q[t]).max() <= info.max_abs  # the static bound holds
            out[t] = (float(np.abs(deq - env_f[t]).max()), fp.real_bound(info), info.frac)
    return out


@pytest.mark.parametrize("name", ["bireal", "reactnet", "depthwise_concat", "relu_maxpool"])
def test_fixed_point_tensors_track_float32(exported, name):
    _, path = exported(name, False)
    m = edge_sdk.load(path, input_range=(LO, HI))
    errs = _float_vs_fixed(m, _inputs(100, seed=1))
    assert errs
    order = [layer.output for layer in m.ir.layers]
    prelus = [order.index(layer.output) for layer in m.ir.layers if isinstance(layer, L.PRelu)]
    for t, (err, bound, frac) in errs.items():
        # a few rounding steps of 2**-frac per layer, never a wrong scale or offset; at a fine
        # binary point the float32 side's own rounding (its ulp near the bound) dominates, and
        # from the first PReLU on, its slopes' rounding to 2**-PRELU_SHIFT (|x| * 2**-16)
        tol = 16 * 2.0 ** -frac + 8 * float(np.spacing(np.float32(bound)))
        if prelus and order.index(t) >= min(prelus):
            tol += bound * 2.0 ** -(fx.PRELU_SHIFT + 1)
        assert err <= tol, (t, err, frac, bound)


def test_lowered_layers_convert_for_both_backends(exported, tmp_path):
    _, path = exported("bireal", False)
    m = edge_sdk.load(path, input_range=(LO, HI))
    kinds = {type(layer) for layer in m.ir.layers}
    assert {L.Requant, L.AddTensors, L.FixedThreshold, L.GlobalAvgPool, L.GroupConv2d} <= kinds
    assert L.Affine not in kinds and L.Binarize not in kinds
    # bit-exactness: tests/test_cortexm_fixed_point.py and tests/test_fpga_fixed_point.py
    build = m.convert("fpga", tmp_path / "fpga")
    assert build.target == "fpga" and (tmp_path / "fpga" / "edge-sdk.json").is_file()


@pytest.mark.parametrize("name", ["reactnet", "depthwise_concat"])
def test_ir_folder_round_trip_keeps_both_modes(exported, tmp_path, name):
    _, path = exported(name, True)
    m = edge_sdk.load(path, input_range=(LO, HI))
    folder = m.convert("ir", tmp_path / "ir")
    back = edge_sdk.load(folder)
    assert {type(layer) for layer in back.ir.layers} == {type(layer) for layer in m.ir.layers}
    x = _inputs(50, seed=2)
    for fixed in (False, True):
        np.testing.assert_array_equal(back.run(x, fixed_point=fixed), m.run(x, fixed_point=fixed))
    # deterministic: the same model writes the same bytes
    again = m.convert("ir", tmp_path / "ir2")
    assert (folder / "ir.json").read_bytes() == (again / "ir.json").read_bytes()


def test_inspect_reports_the_agreement_of_the_two_modes(exported):
    _, path = exported("reactnet_real_head", False)
    m = edge_sdk.load(path, input_range=(LO, HI))
    found = m.inspect()
    agree = found.data["fixed_point_agreement"]
    x = np.random.default_rng(0).integers(LO, HI + 1, size=(agree["samples"], *SHAPE))
    err = np.abs(m.run(x, fixed_point=True).astype(np.float64) - m.run(x)).max()
    assert agree["max_abs_err"] == pytest.approx(float(err))
    assert 0 < agree["max_abs_err"] < 0.05
    assert "fixed point (run --fixed-point) vs float32 (run)" in found.text
    assert any("frac" in row for row in found.data["layers"])


def test_pure_binary_models_inspect_as_before(tmp_path):
    path = tn.export(tn.MLP((20, 16, 4), tn.sign_act, seed=6), torch.zeros((2, 20)),
                     tmp_path / "m.onnx", dynamo=False)
    m = edge_sdk.load(path)
    found = m.inspect()
    assert "fixed_point_agreement" not in found.data
    assert "fixed point" not in found.text
    assert not any("frac" in row for row in found.data["layers"])
    x = np.random.default_rng(0).integers(-5, 6, size=(20, 20)).astype(np.float32)
    np.testing.assert_array_equal(m.run(x, fixed_point=True), m.run(x))


class _TwoTensorMul(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.bn0 = _bin_conv(1, 4, torch.Generator().manual_seed(0), kfan=135)

    def forward(self, x):
        y = self.bn0(self.stem(x))
        return torch.flatten(y * y, 1)


def test_unsupported_construct_is_refused_naming_the_node(tmp_path):
    path = tn.export(_TwoTensorMul(), torch.zeros((2, *SHAPE)), tmp_path / "m.onnx", False)
    with pytest.raises(edge_sdk.EdgeError, match=r"Mul.*two computed tensors"):
        edge_sdk.load(path)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "ReduceMean"])
def test_float_mean_mirrors_onnxruntime_bit_for_bit(op):
    """The faithful mode's mean sums in onnxruntime's float32 order (SIMD lanes, row
    alignment), so a sign right after an average flips exactly where onnxruntime's does."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(11)
    for hw in ((1, 1), (2, 2), (3, 5), (5, 5), (6, 6), (7, 7), (1, 7), (14, 14)):
        inits = []
        if op == "ReduceMean":
            inits = [helper.make_tensor("ax", TensorProto.INT64, [2], [2, 3])]
            node = helper.make_node(op, ["x", "ax"], ["y"], keepdims=1)
        else:
            node = helper.make_node(op, ["x"], ["y"])
        g = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [None, 6, *hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        layer = L.GlobalAvgPool("gap", ["x"], "y", keepdims=True, float_kernel=op)
        for n in (1, 3, 40):
            x = (rng.normal(size=(n, 6, *hw)) * 10).astype(np.float32)
            want = sess.run(None, {"x": x})[0]
            got = golden._run_float(layer, [x], [], None)
            assert got.dtype == want.dtype and np.array_equal(got, want), (hw, n)


# ---------------------------------------------------------------------------- rules, exactly
def _round_half_up(v: Fraction) -> int:
    return (v + Fraction(1, 2)).__floor__()


finite = st.floats(-100, 100, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(x=st.integers(-(1 << 20), 1 << 20), scale=finite, bias=finite,
       frac_in=st.integers(0, 16), frac=st.integers(-4, 16))
def test_affine_rule_is_round_half_up_of_the_exact_value(x, scale, bias, frac_in, frac):
    m, r, s = fx.affine_params(np.array([scale]), np.array([bias]), frac_in, frac)
    y = int(fx.affine(np.array([[x]], dtype=np.int64), m, r, s)[0, 0])
    m0, r0 = int(m[0]), int(r[0]) - (1 << (s - 1))
    assert y == _round_half_up(Fraction(x * m0 + r0, 1 << s))  # the documented rounding
    assert abs(m0) < 1 << 31
    # and it approximates scale * x + bias: each of the three roundings costs half a step
    exact = Fraction(scale) * Fraction(x, 1 << frac_in) + Fraction(bias)
    err = abs(Fraction(y) / Fraction(2) ** frac - exact)
    step = Fraction(2) ** -frac
    assert err <= step / 2 + (abs(x) * Fraction(2) ** -frac_in + 1) * step / (1 << (s + 1))
    assert abs(y) <= fx.affine_bound(abs(x), m, r, s)


@settings(max_examples=300, deadline=None)
@given(q=st.integers(-(1 << 30), 1 << 30), fi=st.integers(-4, 16), fo=st.integers(-4, 16))
def test_add_alignment_rounds_half_up(q, fi, fo):
    got = int(fx.align(np.array([q], dtype=np.int64), fi, fo)[0])
    assert got == _round_half_up(Fraction(q) * Fraction(2) ** (fo - fi))
    assert abs(got) <= fx.align_bound(abs(q), fi, fo)


@settings(max_examples=200, deadline=None)
@given(a=st.integers(-(1 << 29), 1 << 29), b=st.integers(-(1 << 29), 1 << 29),
       fa=st.integers(0, 16), fb=st.integers(0, 16))
def test_residual_add_of_two_fracs(a, b, fa, fb):
    bound = abs(a) * 2.0 ** -fa + abs(b) * 2.0 ** -fb
    f = fx.frac_for(bound)
    qa, qb = np.array([a], np.int64), np.array([b], np.int64)
    got = int((fx.align(qa, fa, f) + fx.align(qb, fb, f))[0])
    exact = (Fraction(a, 1) / Fraction(2) ** fa + Fraction(b) / Fraction(2) ** fb) * \
        Fraction(2) ** f
    assert abs(got - exact) <= 1  # two roundings of half a step
    assert abs(got) < 1 << 31


@settings(max_examples=300, deadline=None)
@given(x=st.integers(-(1 << 30), 1 << 30), slope=st.floats(-4, 4, allow_nan=False, width=32))
def test_prelu_rule(x, slope):
    a = fx.prelu_params(np.array([slope]))
    got = int(fx.prelu(np.array([[x]], dtype=np.int64), a)[0, 0])
    want = x if x >= 0 else _round_half_up(Fraction(x * int(a[0]), 1 << fx.PRELU_SHIFT))
    assert got == want
    assert abs(got) <= fx.prelu_bound(abs(x), a)


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), data=st.data())
def test_global_average_rule(h, w, data):
    vals = data.draw(st.lists(st.integers(-(1 << 30), 1 << 30), min_size=h * w,
                              max_size=h * w))
    q = np.array(vals, dtype=np.int64).reshape(1, 1, h, w)
    got = int(fx.gap(q)[0, 0])
    n, total = h * w, sum(vals)
    r = fx.gap_multiplier(n)
    assert r == _round_half_up(Fraction(1 << fx.GAP_SHIFT, n))
    assert got == _round_half_up(Fraction(total * r, 1 << fx.GAP_SHIFT))
    assert abs(got - Fraction(total, n)) <= Fraction(1, 2) + abs(total) * Fraction(n, 2) \
        / (n * (1 << fx.GAP_SHIFT)) + Fraction(1, 1 << 20)
    assert abs(got) <= fx.gap_bound(max(abs(v) for v in vals), n)


@settings(max_examples=100, deadline=None)
@given(t=st.floats(-50, 50, allow_nan=False, width=32), frac=st.integers(0, 16),
       mode=st.sampled_from(["sign", "ge0", "gt0"]), neg=st.booleans())
def test_rsign_threshold_on_fixed_point_is_exact(t, frac, mode, neg):
    """sign(q * 2**-frac - t) (or its negation) at tau - 1, tau, tau + 1, exactly."""
    info = TensorInfo((1,), "fixed", -(1 << 24), 1 << 24, frac)
    ops = [L.Add(np.array([-t], np.float32))] + ([L.Mul(np.array([-1.0], np.float32))]
                                                  if neg else [])
    layer = L.FixedThreshold("s", ["x"], "y", ops=ops, mode=mode)
    try:
        fp._solve(layer, info)
    except edge_sdk.EdgeError:
        return  # constant channel under Sign(0): refused, as for Threshold
    tau = int(layer.tau[0])
    for q in (tau - 1, tau, tau + 1):
        if not info.lo <= q <= info.hi:
            continue
        v = Fraction(q) / Fraction(2) ** frac - Fraction(t)
        v = -v if neg else v
        want = {"sign": (v > 0) - (v < 0), "ge0": 1 if v >= 0 else -1,
                "gt0": 1 if v > 0 else -1}[mode]
        got = apply_threshold(np.array([[q]]), layer.tau, layer.flip, layer.zero, axis=1)
        assert int(got[0, 0]) == want, (q, tau)


def test_frac_rule():
    assert fx.frac_for(0.5) == fx.FRAC_MAX
    assert fx.frac_for(63.0) == fx.FRAC_MAX == 24  # 30 - 6
    assert fx.frac_for(1000.0) == 30 - 10  # 2**9 < 1000 + 1 <= 2**10
    assert fx.frac_for(1e6) == 30 - 20  # 2**19 < 1e6 + 1 <= 2**20
    for bound in (1.0, 7.9, 1000.0, 3e6, 2e9):
        f = fx.frac_for(bound)
        assert bound * 2.0 ** f < 1 << 30
        assert f == fx.FRAC_MAX or bound * 2.0 ** (f + 1) >= 1 << 29


def test_cli_run_fixed_point_and_inspect(exported, tmp_path):
    _, path = exported("reactnet_real_head", True)
    x = _inputs(30, seed=3)
    np.save(tmp_path / "x.npy", x)
    for flag, fixed in (([], False), (["--fixed-point"], True)):
        out = tmp_path / f"y{int(fixed)}.npy"
        r = run_cli("run", path, "--input-range", "0,15", "--input", tmp_path / "x.npy",
                    "--output", out, *flag)
        assert r.returncode == 0, r.stderr
        m = edge_sdk.load(path, input_range=(LO, HI))
        np.testing.assert_array_equal(np.load(out), m.run(x, fixed_point=fixed))
    r = run_cli("run", path, "--input-range", "0,15", "--input", tmp_path / "x.npy",
                "--output", tmp_path / "y.npy", "--check")
    assert r.returncode == 0 and "golden vs onnxruntime" in r.stdout, r.stdout + r.stderr
    r = run_cli("inspect", path, "--input-range", "0,15")
    assert r.returncode == 0 and "argmax agrees on" in r.stdout, r.stderr


class DeepBiReal(nn.Module):
    """Four Bi-Real blocks (one grouped, one depthwise) on 12x12 inputs, RPReLU after each,
    a real-valued scores head: realistic depth for the agreement of the two modes."""

    def __init__(self, c=16, seed=7, n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.stem, self.bn0 = _bin_conv(1, c, gen, kfan=9 * HI)
        self.blocks = nn.ModuleList(BiRealBlock(c, gen, groups=g) for g in (1, 2, 1, c))
        self.acts = nn.ModuleList(RPReLU(c, gen) for _ in self.blocks)
        self.scale = nn.Parameter(torch.randn(1, c, generator=gen))
        self.bias = nn.Parameter(torch.randn(1, c, generator=gen))

    def forward(self, x):
        x = self.bn0(self.stem(x))
        for block, act in zip(self.blocks, self.acts):
            x = act(block(x))
        return x.mean((2, 3)) * self.scale + self.bias


@pytest.mark.slow
@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_deep_bireal_agreement(tmp_path, dynamo):
    shape = (1, 12, 12)
    path = tn.export(DeepBiReal(), torch.zeros((2, *shape)), tmp_path / "m.onnx", dynamo)
    m = edge_sdk.load(path, input_range=(LO, HI))
    x = np.random.default_rng(4).integers(LO, HI + 1, size=(200, *shape)).astype(np.float32)
    ref = run_onnxruntime(path, x)
    assert m.check(x).ok
    yq = m.run(x, fixed_point=True)
    assert float(np.mean(yq.argmax(1) == ref.argmax(1))) >= 0.99
    assert float(np.abs(yq - ref).max()) <= 0.02 * float(np.abs(ref).max())


@pytest.mark.parametrize("name", ["bireal", "reactnet_real_head", "depthwise_concat"])
def test_diff_against_onnxruntime_finds_no_difference_in_real_valued_layers(exported, tmp_path,
                                                                           name):
    """`edge-sdk diff --target golden` compares real-valued tensors as floats, not exactly."""
    _model, path = exported(name, False)
    np.save(tmp_path / "x.npy", _inputs(8))
    proc = run_cli("diff", path, "--input-range", "0,15", "--target", "golden", "--input",
                   tmp_path / "x.npy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kinds = {line.split()[1] for line in proc.stdout.splitlines()[3:] if len(line.split()) > 2}
    assert kinds & {"add", "prelu", "gap", "concat"}, proc.stdout  # real-valued rows compared
