"""Models exported by torch 2.13, both exporters: golden == onnxruntime on the exported file."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

import torch_nets as tn
from conftest import assert_close_to_reference

import edge_sdk
from edge_sdk.converters.onnx.reference import run_onnxruntime


def roundtrip(model, shape, tmp_path, dynamo, lo=0, hi=15, n=128, exact=False):
    path = tn.export(model, torch.zeros((2, *shape)), tmp_path / "m.onnx", dynamo)
    x = np.random.default_rng(0).integers(lo, hi + 1, size=(n, *shape)).astype(np.float32)
    m = edge_sdk.load(path)
    y = m.run(x)
    assert_close_to_reference(y, run_onnxruntime(path, x), exact=exact)
    with torch.no_grad():
        ty = model(torch.from_numpy(x)).numpy()
    assert_close_to_reference(y, ty, exact=False)
    return m, path


@pytest.mark.parametrize("dynamo", [True, False])
@pytest.mark.parametrize("act", [tn.sign_act, tn.where_act], ids=["sign", "where"])
def test_mlp_both_exporters(tmp_path, dynamo, act):
    # 96*100 > 8192 weights: dynamo keeps Sign(W) for that layer, folds the small ones
    # dynamo=False keeps BatchNormalization as a node: bit-exact; dynamo fuses it into Gemm
    roundtrip(tn.MLP((96, 100, 33, 10), act, seed=1), (96,), tmp_path, dynamo, exact=not dynamo)


@pytest.mark.parametrize("dynamo", [True, False])
def test_ternary_twn_subgraph(tmp_path, dynamo):
    m, _ = roundtrip(tn.MLP((120, 90, 10), tn.sign_act, ternary=True, seed=2), (120,), tmp_path,
                     dynamo)
    assert any(layer.weights.ternary for layer in m.ir.layers if hasattr(layer, "weights"))


@pytest.mark.parametrize("dynamo", [True, False])
def test_cnn_both_exporters(tmp_path, dynamo):
    roundtrip(tn.CNN(tn.where_act, seed=3), (1, 8, 8), tmp_path, dynamo, exact=not dynamo)


def test_large_weights_go_to_external_data(tmp_path):
    model = tn.MLP((256, 600, 10), tn.sign_act, seed=4)  # 153600 weights
    roundtrip(model, (256,), tmp_path, dynamo=True, n=32)
    assert (tmp_path / "m.onnx.data").exists(), "expected torch to write external data"


def step_act(x):
    return (x >= 0).float() * 2 - 1


@pytest.mark.parametrize("dynamo", [True, False])
def test_cast_comparison_ste_spelling(tmp_path, dynamo):
    # `(x >= 0).float() * 2 - 1` exports as GreaterOrEqual, Cast, Mul, Sub
    roundtrip(tn.MLP((96, 100, 10), step_act, seed=5), (96,), tmp_path, dynamo,
              exact=not dynamo)


def test_float_ste_is_refused_with_a_reason(tmp_path):
    # x + (sign(x) - x).detach() is float arithmetic, not exactly ±1 after export
    def float_ste(x):
        return x + (torch.sign(x) - x).detach()

    path = tn.export(tn.MLP((20, 16, 4), float_ste, seed=6), torch.zeros((2, 20)),
                     tmp_path / "m.onnx", dynamo=False)
    with pytest.raises(edge_sdk.EdgeError, match="two computed tensors"):
        edge_sdk.load(path)
