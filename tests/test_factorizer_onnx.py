"""The edge_sdk.BlockCodeFactorizer ONNX node through `edge-sdk run` and `inspect`."""

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import edge_sdk
import edge_sdk.factorizer as fz

F, M, B, L = 3, 9, 4, 16


def model(path, codebooks, two_outputs=True, width=None, **attrs):
    """x (logits) -> per-block Softmax -> factorizer: a small network producing the query."""
    d = B * L if width is None else width
    attrs = {"blocks": B, "block_len": L, **attrs}
    nodes = [
        h.make_node("Reshape", ["x", "shape3"], ["r"], name="to_blocks"),
        h.make_node("Softmax", ["r"], ["p"], name="softmax", axis=-1),
        h.make_node("Reshape", ["p", "shape2"], ["q"], name="to_query"),
        h.make_node("BlockCodeFactorizer", ["q", "cb"], ["idx", "it"] if two_outputs else ["idx"],
                    domain="edge_sdk", name="head", **attrs),
    ]
    outs = [h.make_tensor_value_info("idx", T.INT64, ["N", codebooks.shape[0]])]
    if two_outputs:
        outs.append(h.make_tensor_value_info("it", T.INT64, ["N"]))
    g = h.make_graph(
        nodes, "fac", [h.make_tensor_value_info("x", T.FLOAT, ["N", d])], outs,
        [nh.from_array(codebooks.astype(np.float32), "cb"),
         nh.from_array(np.array([-1, d // L, L], np.int64), "shape3"),
         nh.from_array(np.array([-1, d], np.int64), "shape2")],
    )
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def logits(cb, n, seed):
    """Noisy logits whose block-wise softmax peaks at the product's hot positions."""
    _, truth = fz.make_queries(cb, n, "clean", seed=seed)
    rng = np.random.default_rng(seed)
    clean, _ = fz.make_queries(cb, n, "clean", seed=seed)
    x = 6.0 * clean + rng.normal(0, 1.0, size=clean.shape)
    return x.astype(np.float32), truth


def softmax_blocks(x):
    r = x.reshape(len(x), -1, L).astype(np.float64)
    e = np.exp(r - r.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).reshape(len(x), -1)


@pytest.fixture
def cb():
    return fz.random_sbc(F, M, B, L, seed=7)


@pytest.mark.parametrize("decoder", ["default", "published", "resonator", "exhaustive"])
def test_run_matches_library_on_the_networks_query(tmp_path, cb, decoder):
    path = model(tmp_path / "m.onnx", cb.as_dense().reshape(F, M, B * L), decoder=decoder)
    x, truth = logits(cb, 40, seed=1)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz")
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "y.npz")
    # independent path: NumPy softmax (not onnxruntime) then the library decoder
    want_idx, want_it = fz.decode(softmax_blocks(x), cb, decoder)
    assert np.array_equal(got["idx"], want_idx) and np.array_equal(got["it"], want_it)
    assert got["idx"].dtype == np.int64 and got["idx"].shape == (40, F)
    if decoder in ("default", "exhaustive"):
        assert (got["idx"] == truth).all(axis=1).mean() > 0.9


def test_npy_output_is_the_indices_and_attributes_reach_the_decoder(tmp_path, cb):
    dense = cb.as_dense().reshape(F, M, B * L)
    path = model(tmp_path / "m.onnx", dense, two_outputs=False, decoder="published",
                 similarity="dot", threshold=0.2, sampling_width=3, max_iters=7, seed=5)
    x, _ = logits(cb, 16, seed=2)
    y = edge_sdk.load(path).run(x)
    want, _ = fz.decode(softmax_blocks(x), cb, "published", similarity="dot", T=0.2, A=3,
                        max_iters=7, seed=5)
    assert np.array_equal(y, want)
    np.save(tmp_path / "x.npy", x)
    assert run_cli("run", path, "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy").returncode == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), want)


def test_inspect_shows_classes_and_bytes(tmp_path, cb):
    path = model(tmp_path / "m.onnx", cb.as_dense().reshape(F, M, B * L))
    proc = run_cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    assert f"M^F = {M**F:,}" in proc.stdout
    assert "F=3" in proc.stdout and "B=4" in proc.stdout and "L=16" in proc.stdout
    # index table: F*M*B entries of log2(L) = 4 bits
    assert f"{F * M * B * 4 // 8:,} B (one-hot index table)" in proc.stdout
    assert f"{M**F * B * L // 8:,} B binary" in proc.stdout


def _bad(tmp_path, cb, name):
    dense = cb.as_dense().reshape(F, M, B * L)
    if name == "codebook_shape":
        return model(tmp_path / "m.onnx", dense[:, :, : B * L - 1])
    if name == "query_width":
        return model(tmp_path / "m.onnx", dense, width=B * L - L)
    if name == "negative":
        neg = dense.copy()
        neg[0, 0, 0] = -1
        return model(tmp_path / "m.onnx", neg)
    if name == "too_many_classes":
        big = np.tile(dense[:1, :2], (64, 1, 1))  # M^F = 2^64 > int64
        return model(tmp_path / "m.onnx", big)
    if name == "unknown_decoder":
        return model(tmp_path / "m.onnx", dense, decoder="magic")
    if name == "unknown_similarity":
        return model(tmp_path / "m.onnx", dense, decoder="published", similarity="cosine")
    if name == "attribute_for_other_decoder":
        return model(tmp_path / "m.onnx", dense, similarity="dot")
    raise AssertionError(name)


@pytest.mark.parametrize("name,words", [
    ("codebook_shape", "codebooks"), ("query_width", "query"), ("negative", "negative"),
    ("too_many_classes", "int64"), ("unknown_decoder", "decoder"),
    ("unknown_similarity", "similarity"), ("attribute_for_other_decoder", "does not apply"),
])
def test_bad_factorizer_models(tmp_path, cb, name, words):
    path = _bad(tmp_path, cb, name)
    x, _ = logits(cb, 4, seed=3)
    np.save(tmp_path / "x.npy", x[:, : (B * L - L if name == "query_width" else B * L)])
    out = tmp_path / "y.npy"
    proc = run_cli("run", path, "--input", tmp_path / "x.npy", "--output", out)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert words in proc.stderr.lower(), proc.stderr
    assert "head" in proc.stderr  # names the node
    assert not out.exists()
