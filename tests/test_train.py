"""edge_sdk.train: each estimator's forward and backward against the papers' formulas, and the
exported models (shipped and freshly exported) against onnxruntime."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

from conftest import EXAMPLES, assert_close_to_reference
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import nn

import edge_sdk
from edge_sdk import cli
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.train import (
    STE,
    ApproxSign,
    BinaryActivation,
    BinaryConv2d,
    BinaryLinear,
    BiPer,
    ElasticBinaryActivation,
    ReSTE,
    SignWeight,
    StatsTernaryWeight,
    TernaryConv2d,
    TernaryLinear,
    TWNWeight,
    binarize,
    export_onnx,
    frozen_weights,
)

ESTIMATOR_FILES = EXAMPLES / "estimators"
SHIPPED = ("ste", "biper", "reste", "twn", "stats", "elastic")


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def grad_of(fn, x: torch.Tensor, upstream: torch.Tensor | None = None) -> torch.Tensor:
    """d(sum(upstream * fn(x)))/dx."""
    x = x.clone().requires_grad_(True)
    y = fn(x)
    y.backward(torch.ones_like(y) if upstream is None else upstream)
    return x.grad


# ----------------------------------------------------------------------------- estimators
def test_sign_forward_ties():
    x = t([-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0])
    assert binarize(x).tolist() == [-1.0, 0.0, 0.0, 1.0, -1.0, 1.0]  # torch/ONNX Sign(0) = 0
    assert binarize(x, zero_to_plus=True).tolist() == [-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]


def test_ste_backward_is_the_clipped_identity():
    x = t([-1.5, -1.0, -0.3, 0.0, 0.999, 1.0, 1.0001, 7.0])
    up = t([1, 2, 3, 4, 5, 6, 7, 8])
    assert grad_of(lambda v: binarize(v, STE()), x, up).tolist() == [0, 2, 3, 4, 5, 6, 0, 0]
    assert grad_of(lambda v: binarize(v, STE(clip=0.5)), x, up).tolist() == [0, 0, 3, 4, 0, 0,
                                                                               0, 0]
    assert grad_of(lambda v: binarize(v, STE(clip=None)), x, up).tolist() == up.tolist()


def test_approxsign_backward_is_the_bireal_triangle():
    x = t([-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.75, 1.0, 3.0])
    # d/dx of Bi-Real's piecewise quadratic: 2 - 2|x| inside [-1, 1], 0 outside
    assert grad_of(lambda v: binarize(v, ApproxSign()), x).tolist() == [0, 0, 1, 1.5, 2, 1.5,
                                                                         0.5, 0, 0]


@pytest.mark.parametrize("o", [1.0, 2.0, 3.0])
def test_reste_backward_is_the_power_function_derivative(o):
    est = ReSTE(o=o, t=1.5, interval=0.1)
    pts = [-2.0, -1.5, -0.7, -0.3, -0.1, -0.04, 0.0, 0.02, 0.1, 0.11, 0.5, 1.2, 1.5, 1.51]
    got = grad_of(lambda v: binarize(v, est), t(pts)).tolist()
    for x, g in zip(pts, got, strict=True):
        a = abs(x)
        if a > 1.5:
            want = 0.0
        elif a <= 0.1:  # the chord from 0 to (m, m^(1/o)) replaces the unbounded slope
            want = 0.1 ** (1 / o) / 0.1
        else:
            want = (1 / o) * a ** ((1 - o) / o)
        assert g == pytest.approx(want, rel=1e-5), (x, g, want)


def test_reste_gradient_is_the_slope_of_its_forward_model():
    # F(x) = sign(x)|x|^(1/o): central differences away from 0 and from the cut-off t
    est = ReSTE(o=3.0, t=1.5)
    xs = np.array([-1.3, -0.8, -0.25, 0.15, 0.4, 0.9, 1.4])
    h = 1e-6
    fd = (np.sign(xs + h) * np.abs(xs + h) ** (1 / 3) - np.sign(xs - h) * np.abs(xs - h) ** (1 / 3)
          ) / (2 * h)
    got = grad_of(lambda v: binarize(v, est), t(xs)).numpy()
    np.testing.assert_allclose(got, fd, rtol=1e-4)


def test_reste_exponent_schedule():
    assert ReSTE.exponent(0, 40) == 1.0
    assert ReSTE.exponent(40, 40, o_end=3.0) == pytest.approx(3.0)
    assert ReSTE.exponent(20, 40, o_end=3.0) == pytest.approx(1 + 2 * (1 - math.cos(math.pi / 4)))
    assert ReSTE(o=1.0).derivative(t([1.4, 1.6])).tolist() == [1.0, 0.0]  # o = 1: STE at t


def test_biper_forward_is_a_square_wave_and_backward_its_sine_derivative():
    f = 20.0
    xs = [-0.4, -0.2, -0.01, 0.01, 0.1, 0.2, 0.3, 0.4, 1.0]
    x = t(xs)
    want = [float(np.sign(math.sin(f * float(v)))) for v in x]  # periodic: sign(w) is not it
    assert binarize(x, BiPer(freq=f)).tolist() == want
    assert want != np.sign(xs).tolist()
    got = grad_of(lambda v: binarize(v, BiPer(freq=f)), x)
    np.testing.assert_allclose(got.numpy(), [f * math.cos(f * float(v)) for v in x], rtol=1e-5,
                               atol=1e-5)
    # the same as autograd through the sine itself
    np.testing.assert_allclose(got.numpy(), grad_of(lambda v: torch.sin(f * v), x).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_biper_is_refused_on_activations():
    with pytest.raises(ValueError, match="periodic"):
        BinaryActivation(BiPer())


# ----------------------------------------------------------------------------- weights
def test_twn_threshold_and_scale():
    w = t([[0.1, -0.5, 1.0, -2.0], [0.05, 0.3, -0.2, 0.8]])
    # mean|w| = 4.95 / 8, delta = 0.7 * that = 0.433125: keeps -0.5, 1.0, -2.0, 0.8
    alpha = (0.5 + 1.0 + 2.0 + 0.8) / 4
    y = TWNWeight()(w)
    pattern = [[0, -1, 1, -1], [0, 0, 0, 1]]
    assert torch.sign(y).tolist() == pattern
    mags = y.abs()[y != 0]
    assert torch.all(mags == mags[0])  # one exact magnitude: what the frontend classifies
    assert float(mags[0]) == pytest.approx(alpha, rel=1e-6)


def test_twn_strict_threshold_and_per_row():
    # ratio 0.5, mean|w| = 1: |w| = 0.5 is not above the threshold
    y = TWNWeight(ratio=0.5)(t([[0.5, -1.5, 1.0, -1.0]]))
    assert y[0].tolist() == pytest.approx([0.0, -3.5 / 3, 3.5 / 3, -3.5 / 3])
    w = t([[1.0, 0.1, 0.1, 0.1], [8.0, 4.0, -4.0, 0.5]])
    y = TWNWeight(per_row=True)(w)  # row deltas 0.7 * 0.325, 0.7 * 4.125
    assert torch.sign(y).tolist() == [[1, 0, 0, 0], [1, 1, -1, 0]]
    assert y[0, 0].item() == 1.0 and y[1, 0].item() == pytest.approx(16 / 3)


def test_stats_ternary_row_scale_and_tie():
    w = t([[1.5, 0.5, -0.5, -0.5], [2.0, -2.0, 1.0, 0.0]])
    y = StatsTernaryWeight()(w)
    # row 0: a = 4/3 * 0.75 = 1, w / a = 1.5, 0.5, -0.5, -0.5 -> 1, 0, 0, 0 (half to even)
    assert y[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    # row 1: a = 4/3 * 1.25 = 5/3, w / a = 1.2, -1.2, 0.6, 0 -> 1, -1, 1, 0
    assert torch.sign(y[1]).tolist() == [1, -1, 1, 0]
    assert y[1, 0].item() == pytest.approx(5 / 3) and y[1, 0] == -y[1, 1] == y[1, 2]


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (3, 7), elements=st.floats(-4, 4, width=32)))
def test_stats_ternary_property(w):
    y = StatsTernaryWeight()(torch.from_numpy(w)).numpy()
    for row, q in zip(w.astype(np.float64), y, strict=True):
        a = 4 / 3 * np.abs(row).mean()
        nz = q != 0
        if nz.any():  # one exact magnitude per row, a = 4/3 mean|w_row|, signs kept
            assert np.all(np.abs(q[nz]) == np.abs(q[nz])[0])
            assert abs(abs(q[nz][0]) - a) <= 1e-5 * a
            assert np.all(np.sign(q[nz]) == np.sign(row[nz]))
        far = np.abs(np.abs(row) - a / 2) > 1e-5 * max(a, 1e-30)
        assert np.array_equal(nz[far], (np.abs(row) > a / 2)[far])


def test_ternary_and_scaled_weights_pass_the_gradient_by_their_estimator():
    w = t([[0.1, -0.5, 1.0, -2.0]])
    up = t([[1.0, 2.0, 3.0, 4.0]])
    for q in (TWNWeight(), StatsTernaryWeight()):
        assert grad_of(q, w, up).tolist() == up.tolist()  # identity, as TWN and BTNLG
    # BTNLG binary: a = mean|w_row| times sign(w); the STE clipped at 1 by default
    y = SignWeight(scale="row")(w)
    assert y[0].tolist() == pytest.approx([0.9, -0.9, 0.9, -0.9])
    assert grad_of(SignWeight(scale="row"), w, up).tolist() == [[1.0, 2.0, 3.0, 0.0]]
    assert SignWeight(scale="layer")(t([[1.0, -3.0], [0.5, 0.5]])).tolist() == [
        [1.25, -1.25], [1.25, 1.25]]


# ----------------------------------------------------------------------------- elastic
def test_elastic_forward_init_and_gradients():
    q = ElasticBinaryActivation(channels=3)
    with torch.no_grad():
        q.beta.copy_(t([0.0, 1.0, -1.0]))
    x = t([[2.0, 1.0, -3.0], [-0.5, 4.0, 0.0]])
    u = x - q.beta.detach()  # [[2, 0, -2], [-0.5, 3, 1]]
    q.train()
    y = q(x)
    a0 = 2 * u.abs().mean().item()  # LSQ/BTNLG init on the first training batch: 2 mean|u|
    assert q.alpha.item() == pytest.approx(a0)
    assert (y / q.alpha.detach()).tolist() == [[1, 1, -1], [-1, 1, 1]]  # 0 -> +1 by default
    up = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    xg = x.clone().requires_grad_(True)
    (q(xg) * up).sum().backward()
    inside = (u.abs() <= a0).float()
    np.testing.assert_allclose(xg.grad, up * inside, rtol=1e-6)  # STE clipped at a
    b = torch.where(u >= 0, 1.0, -1.0)
    assert q.alpha.grad.item() == pytest.approx((b * up).sum().item() / math.sqrt(6))
    assert q.beta.grad.tolist() == pytest.approx((-(up * inside).sum(0)).tolist())


def test_elastic_scale_multiplies_the_accumulator():
    torch.manual_seed(0)
    el = ElasticBinaryActivation(channels=5)
    layer = BinaryLinear(5, 3, bias=True, input_quant=el).eval()
    with torch.no_grad():
        el.alpha.fill_(0.75)
        el.beta.copy_(t([0.0, 0.5, -0.5, 1.0, 0.0]))
    x = torch.randn(4, 5)
    want = 0.75 * (torch.where(x - el.beta >= 0, 1.0, -1.0) @ torch.sign(layer.weight).T)
    assert torch.allclose(layer(x), want + layer.bias, atol=1e-6)
    assert torch.allclose(el.eval()(x), 0.75 * torch.where(x - el.beta >= 0, 1.0, -1.0))


def test_frozen_weights_are_the_quantised_constants():
    layer = TernaryLinear(6, 4, "stats")
    with frozen_weights(nn.Sequential(layer)):
        assert layer.frozen_weight is not None and not layer.frozen_weight.requires_grad
        assert torch.equal(layer.frozen_weight, StatsTernaryWeight()(layer.weight))
    assert layer.frozen_weight is None


def test_bad_arguments():
    with pytest.raises(ValueError, match="scale"):
        SignWeight(scale="column")
    with pytest.raises(ValueError, match="ternary method"):
        TernaryLinear(4, 4, "ttq")


# ----------------------------------------------------------------------------- export
def _randomise(model: nn.Module, seed: int) -> None:
    """BN statistics and elastic scales as after training (one batch of training mode first)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.randn(c, generator=gen))
                m.bias.copy_(torch.randn(c, generator=gen))
                m.running_mean.copy_(torch.randn(c, generator=gen) * 3)
                m.running_var.copy_(torch.rand(c, generator=gen) * 20 + 0.5)


def _mlp() -> nn.Module:
    return nn.Sequential(
        TernaryLinear(30, 24, "twn"), nn.BatchNorm1d(24),
        BinaryLinear(24, 20, ReSTE(o=2.0), input_quant=ElasticBinaryActivation(24)),
        nn.BatchNorm1d(20), BinaryActivation(ApproxSign()),
        TernaryLinear(20, 16, "stats"), nn.BatchNorm1d(16), BinaryActivation(zero_to_plus=True),
        BinaryLinear(16, 5, BiPer()), nn.BatchNorm1d(5),
    )


def _cnn() -> nn.Module:
    return nn.Sequential(
        TernaryConv2d(1, 6, 3, padding=1, method="stats"), nn.BatchNorm2d(6),
        BinaryConv2d(6, 8, 3, padding=1, estimator=BiPer(), input_quant=ElasticBinaryActivation(6)),
        nn.BatchNorm2d(8), BinaryActivation(), nn.MaxPool2d(2), nn.Flatten(),
        BinaryLinear(8 * 4 * 4, 4, ReSTE(o=3.0)), nn.BatchNorm1d(4),
    )


@pytest.mark.parametrize("build,shape", [(_mlp, (30,)), (_cnn, (1, 8, 8))], ids=["mlp", "cnn"])
@pytest.mark.parametrize("optimize", [False, True], ids=["bn-node", "bn-fused"])
def test_export_matches_onnxruntime_and_torch(tmp_path, build, shape, optimize):
    torch.manual_seed(1)
    model = build()
    x = torch.randint(0, 16, (32, *shape)).float()
    model.train()
    model(x)  # initialises the elastic scales
    _randomise(model, 2)
    path = tmp_path / "m.onnx"
    export_onnx(model, x[:2], path, optimize=optimize)
    xs = np.random.default_rng(3).integers(0, 16, size=(200, *shape)).astype(np.float32)
    m = edge_sdk.load(path)
    y = m.run(xs)
    # BN kept as its own node and a ±1 last layer: every float op as written, so bit-exact;
    # torch's optimiser fuses BN into the weights, then the scores depend on onnxruntime's
    # summation order (a ±a weight makes every partial sum a rounded float)
    assert_close_to_reference(y, run_onnxruntime(path, xs), exact=not optimize)
    with torch.no_grad():
        assert_close_to_reference(y, model.eval()(torch.from_numpy(xs)).numpy(), exact=False)
    kinds = [layer.weights.ternary for layer in m.ir.layers if hasattr(layer, "weights")]
    assert kinds[0] is True and len(kinds) == (4 if shape == (30,) else 3)


def test_frozen_export_holds_constant_weights_beyond_torchs_fold_limit(tmp_path):
    # 100 x 120 = 12000 > 8192 weights: unfrozen, dynamo leaves the TWN subgraph in the file
    model = nn.Sequential(TernaryLinear(120, 100, "twn"), nn.BatchNorm1d(100),
                          BinaryActivation(), BinaryLinear(100, 10))
    _randomise(model, 4)
    ops = {}
    for freeze in (True, False):
        path = tmp_path / f"f{freeze}.onnx"
        export_onnx(model, torch.zeros(2, 120), path, freeze=freeze)
        ops[freeze] = {n.op_type for n in onnx.load(path).graph.node}
        xs = np.random.default_rng(5).integers(0, 16, size=(64, 120)).astype(np.float32)
        assert_close_to_reference(edge_sdk.load(path).run(xs), run_onnxruntime(path, xs),
                                  exact=False)
    assert "ReduceMean" in ops[False] and "ReduceMean" not in ops[True]


# ----------------------------------------------------------------------------- shipped models
@pytest.fixture(scope="module")
def digits_test_split():
    sys.path.insert(0, str(EXAMPLES))
    try:
        from digits_data import load_split
    finally:
        sys.path.remove(str(EXAMPLES))
    return load_split()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_estimator_models(tmp_path, capsys, digits_test_split, name):
    path = ESTIMATOR_FILES / f"{name}_mlp.onnx"
    assert cli.main(["convert", str(path), "--target", "ir", "-o", str(tmp_path / "ir")]) == 0
    assert json.loads((tmp_path / "ir" / "ir.json").read_text())["layers"]
    x = EXAMPLES / "digits_mlp_x.npy"
    assert cli.main(["run", str(path), "--input", str(x), "--output",
                     str(tmp_path / "y.npy"), "--check"]) == 0
    assert "golden vs onnxruntime" in capsys.readouterr().out
    # the whole test split: golden == onnxruntime, and the accuracy is a trained model's
    xs, ys = digits_test_split.x_test, digits_test_split.y_test
    m = edge_sdk.load(path)
    y = m.run(xs)
    # BN kept as a node and ±1 last-layer weights: bit-exact; a ±a last layer (ternary, or
    # BTNLG's per-row scale) leaves onnxruntime's float summation order in the scores
    exact = name in ("ste", "biper", "reste")
    assert_close_to_reference(y, run_onnxruntime(path, xs), exact=exact)
    assert (y.argmax(1) == ys).mean() > 0.9
    ternary = [layer.weights.ternary for layer in m.ir.layers if hasattr(layer, "weights")]
    assert any(ternary) == (name in ("twn", "stats"))


# ----------------------------------------------------------------------------- training (slow)
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
@pytest.mark.parametrize("name", SHIPPED)
def test_train_one_epoch_export_and_check(tmp_path, name, arch):
    if name == "elastic" and arch == "cnn":
        pytest.skip("the elastic example is an MLP")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_estimators
    finally:
        sys.path.remove(str(EXAMPLES))
    (row,) = train_estimators.main(["--estimator", name, "--arch", arch, "--epochs", "1",
                                    "--out", str(tmp_path)])
    assert row.torch_acc == pytest.approx(row.onnx_acc, abs=1e-6)  # torch gives a float32
    path = tmp_path / f"{name}_{arch}.onnx"
    x = np.load(EXAMPLES / ("digits_mlp_x.npy" if arch == "mlp" else "digits_cnn_x.npy"))
    assert_close_to_reference(edge_sdk.load(path).run(x), run_onnxruntime(path, x), exact=False)
