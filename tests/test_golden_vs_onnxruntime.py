"""The golden model equals onnxruntime (graph optimiser off: every node as written) exactly.

Models come from tests/zoo (built with onnx.helper, ±a magnitudes that keep every dot product
exact in float32) and from examples/ (trained, exported by torch). Outputs whose last float op
is a bias/scale folded into a Gemm or Conv are compared at float32 rounding (rtol 1e-5) with
equal argmax, since onnxruntime's summation order inside a GEMM is its own.
"""

from pathlib import Path

import numpy as np
import onnx
import pytest
import zoo
from conftest import EXAMPLES, assert_close_to_reference

import edge_sdk
from edge_sdk.converters.onnx.reference import run_onnxruntime


def batch(shape, lo, hi, n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, *shape)).astype(np.float32)


def check(model: onnx.ModelProto | Path, tmp_path: Path, shape, rng_lo=0, rng_hi=15,
          exact=True, n=96, seed=0):
    path = model if isinstance(model, Path) else tmp_path / "m.onnx"
    if not isinstance(model, Path):
        onnx.save(model, path)
    x = batch(shape, rng_lo, rng_hi, n, seed)
    m = edge_sdk.load(path)
    y = m.run(x)
    ref = run_onnxruntime(path, x)
    assert_close_to_reference(y, ref, exact)
    return m, x, y


@pytest.mark.parametrize("act", ["sign", "where"])
@pytest.mark.parametrize("weights", ["pm1", "sign", "ternary"])
@pytest.mark.parametrize("dense", ["gemm", "matmul"])
def test_mlp_exact(tmp_path, act, weights, dense):
    for seed in range(3):
        check(zoo.mlp(seed, act=act, weights=weights, dense=dense), tmp_path, (64,), seed=seed)


@pytest.mark.parametrize("act", ["sign", "where"])
def test_rowscale_with_bias(tmp_path, act):
    # per-row ±a_n with a bias, as torch writes after fusing BN: thresholds exact, float output
    # at float32 rounding
    for seed in range(3):
        check(zoo.mlp(seed, act=act, weights="rowscale"), tmp_path, (64,), exact=False,
              seed=seed)


def test_odd_sizes(tmp_path):
    m, _, _ = check(zoo.odd_mlp(0), tmp_path, (67,))
    dense = [layer for layer in m.ir.layers if type(layer).__name__ == "Dense"]
    assert [d.weights.k for d in dense] == [67, 33, 33]


@pytest.mark.parametrize("weights", ["pm1", "sign", "ternary", "rowscale"])
@pytest.mark.parametrize("act", ["sign", "where"])
def test_cnn_padding_and_maxpool(tmp_path, weights, act):
    for seed in range(2):
        check(zoo.cnn(seed, weights=weights, act=act), tmp_path, (1, 8, 8),
              exact=weights != "rowscale", seed=seed)


@pytest.mark.parametrize("strides,pads", [(2, 1), (1, 0), (2, 0)])
def test_cnn_strides_and_pads(tmp_path, strides, pads):
    check(zoo.cnn(3, in_shape=(2, 11, 9), channels=(5, 7), strides=strides, pads=pads),
          tmp_path, (2, 11, 9))


def test_negative_gamma(tmp_path):
    for seed in range(4):
        check(zoo.neg_gamma_mlp(seed), tmp_path, (40,), seed=seed)


def test_sign_ties_are_reproduced(tmp_path):
    m, x, _ = check(zoo.tie_mlp(0), tmp_path, (12,), n=256)
    thr = [layer for layer in m.ir.layers if type(layer).__name__ == "Threshold"]
    assert any(t.zero.any() for t in thr), "the tie model must exercise Sign(0) = 0"
    from edge_sdk import golden

    inner = golden.run_all(m.ir, x)
    zeros = sum(int((inner[t.output] == 0).sum()) for t in thr)
    assert zeros > 0, "no activation was exactly 0: the tie was not reached"


def test_where_ties_go_to_plus_one(tmp_path):
    check(zoo.tie_where_mlp(0), tmp_path, (12,), n=256)


def test_shape_dependent_where_constants(tmp_path):
    check(zoo.where_cast_mlp(0), tmp_path, (48,))


def test_external_data(tmp_path):
    path = zoo.external_data_mlp(0, tmp_path / "ext.onnx")
    assert any(p.name.endswith(".data") for p in tmp_path.iterdir())
    check(path, tmp_path, (64,))


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets(tmp_path, opset):
    check(zoo.mlp(1, opset=opset), tmp_path, (64,))


def test_random_models(tmp_path):
    for seed in range(40):
        model, shape, (lo, hi) = zoo.random_model(seed)
        rowscale = any("rowscale" in (t.name or "") for t in model.graph.initializer)
        path = tmp_path / f"r{seed}.onnx"
        onnx.save(model, path)
        x = batch(shape, lo, hi, 48, seed)
        y = edge_sdk.load(path).run(x)
        ref = run_onnxruntime(path, x)
        assert_close_to_reference(y, ref, exact=not rowscale)


@pytest.mark.parametrize("name,shape", [("mlp_digits", (64,)), ("cnn_digits", (1, 8, 8))])
def test_examples(name, shape):
    path = EXAMPLES / f"{name}.onnx"
    x = np.load(EXAMPLES / f"digits_{name.split('_')[0]}_x.npy")
    y = edge_sdk.load(path).run(x)
    assert_close_to_reference(y, run_onnxruntime(path, x), exact=False)
    # the user's everyday onnxruntime (optimiser on) agrees to float32 rounding too
    assert_close_to_reference(y, run_onnxruntime(path, x, optimized=True), exact=False)


def test_any_batch_size(tmp_path):
    model = zoo.mlp(2)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    m = edge_sdk.load(path)
    x = batch((64,), 0, 15, 7)
    assert np.array_equal(m.run(x)[3:4], m.run(x[3:4]))


@pytest.mark.slow
def test_random_models_many(tmp_path):
    for seed in range(40, 540):
        model, shape, (lo, hi) = zoo.random_model(seed)
        rowscale = any("rowscale" in (t.name or "") for t in model.graph.initializer)
        path = tmp_path / "r.onnx"
        onnx.save(model, path)
        x = batch(shape, lo, hi, 64, seed)
        assert_close_to_reference(edge_sdk.load(path).run(x), run_onnxruntime(path, x),
                                  exact=not rowscale)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_examples_whole_test_split(name):
    pytest.importorskip("sklearn")
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from digits_data import load_split

    split = load_split()
    x, labels = split.x_test, split.y_test
    x = x.reshape(-1, 1, 8, 8) if name == "cnn" else x.reshape(-1, 64)
    path = EXAMPLES / f"{name}_digits.onnx"
    y = edge_sdk.load(path).run(x)
    assert_close_to_reference(y, run_onnxruntime(path, x), exact=False)
    assert (y.argmax(1) == labels).mean() > 0.9


@pytest.mark.parametrize("seed", range(3))
def test_nhwc_input_with_a_transpose(tmp_path, seed):
    """Keras-to-ONNX style: an [N, H, W, C] input, Transpose(0, 3, 1, 2), then the convs."""
    m, _, _ = check(zoo.cnn(seed, in_shape=(3, 7, 6), channels=(6,), nhwc=True), tmp_path,
                    (7, 6, 3), seed=seed)
    assert [layer.kind for layer in m.ir.layers[:2]] == ["input", "transpose"]
