"""The attribute example (examples/attributes): data, committed models, recorded figures.

The recorded figures (results.json) were written by evaluate.py when the models were trained;
here the committed files are run again through the CLI and must give the very same indices
(digests), not just similar accuracies: a change in the golden model, the decoders or the
ONNX frontend that moves a single answer fails.
"""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent.parent / "examples" / "attributes"
sys.path.insert(0, str(HERE))

import data  # the example's own module (examples/attributes is not a package)

FACTORIZER = HERE / "attributes_factorizer.onnx"
FC = HERE / "attributes_fc.onnx"
X = HERE / "test_x.npy"
Y = HERE / "test_y.npy"


@pytest.fixture(scope="module")
def results():
    return json.loads((HERE / "results.json").read_text())


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def exact_match(pred, y):
    return float((pred == y).all(axis=1).mean())


def test_generator_is_deterministic_and_seed_dependent():
    a, b = data.make_split(2, seed=5), data.make_split(2, seed=5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    c = data.make_split(2, seed=6)
    assert not np.array_equal(a.x, c.x)


def test_splits_are_balanced_and_integer():
    s = data.make_split(3, seed=0)
    counts = np.bincount(s.classes, minlength=data.M**data.F)
    assert (counts == 3).all()
    for f in range(data.F):
        assert (np.bincount(s.y[:, f], minlength=data.M) == 3 * data.M ** (data.F - 1)).all()
    assert s.x.shape == (3 * data.M**data.F, 1, data.SIZE, data.SIZE)
    assert s.x.dtype == np.float32
    assert s.x.min() >= 0 and s.x.max() <= data.MAX_LEVEL
    assert np.array_equal(s.x, np.round(s.x))


def test_committed_test_split_is_the_generators():
    s = data.test_split()
    assert np.array_equal(np.load(X), s.x) and np.array_equal(np.load(Y), s.y)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, data.M - 1)] * data.F), min_size=1, max_size=4),
       st.integers(0, 2**32 - 1))
def test_every_attribute_combination_renders_an_object(attrs, seed):
    x = data.render(np.array(attrs), np.random.default_rng(seed))
    # the object (brightness >= 11 times a fill of at least 0.25, minus noise) stands out of
    # the background (at most 3 + 1 noise): every image has pixels above the background
    assert x.shape == (len(attrs), 1, data.SIZE, data.SIZE)
    assert (x.reshape(len(attrs), -1).max(axis=1) >= 5).all()


def test_different_positions_move_the_object():
    rng = np.random.default_rng(0)
    x = data.render(np.array([[0, 0, 0], [0, 0, 7]]), rng)
    # square at the top-left centre vs the bottom-right one: bright mass on opposite corners
    assert x[0, 0, :8, :8].sum() > x[0, 0, 8:, 8:].sum()
    assert x[1, 0, 8:, 8:].sum() > x[1, 0, :8, :8].sum()


@pytest.mark.parametrize("flags,key,acc", [((), "float", "float_default"),
                                           (("--fixed-point",), "fixed", "fixed_point_default")])
def test_factorizer_model_reproduces_recorded_indices(tmp_path, results, flags, key, acc):
    out = tmp_path / "y.npz"
    proc = run_cli("run", FACTORIZER, "--input", X, "--output", out, *flags)
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    y = np.load(Y)
    idx = got["attributes"]
    assert idx.shape == y.shape and idx.dtype == np.int64
    assert digest(idx) == results["factorizer"][f"digest_{key}"]
    assert exact_match(idx, y) == results["factorizer"][acc]
    assert got["iterations"].shape == (len(y),) and (got["iterations"] >= 1).all()


def test_float_default_decoder_is_exhaustive_search_on_the_same_queries(results):
    import edge_sdk
    from edge_sdk.factorizer import decode, product_indices

    model = edge_sdk.load(FACTORIZER)
    x = np.load(X)
    q = model.queries(x).astype(np.float64)
    _, _, b, length = model.head.shape
    # independent exhaustive search: score every class's product vector by inner product
    pos = product_indices(model.head.codebooks.indices, data.all_classes(), length)
    scores = q.reshape(len(q), b, length)[:, np.arange(b)[None, :], pos].sum(-1)
    best = data.all_classes()[scores.argmax(1)]
    assert np.array_equal(best, decode(q, model.head.codebooks, "exhaustive")[0])
    assert exact_match(best, np.load(Y)) == results["factorizer"]["exhaustive"]
    assert np.array_equal(best, model.run(x)) == results["factorizer"]["float_equals_exhaustive"]


def test_fc_model_golden_equals_onnxruntime_and_recorded_accuracy(tmp_path, results):
    out = tmp_path / "s.npy"
    proc = run_cli("run", FC, "--input", X, "--output", out, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pred = np.load(out).argmax(1)
    y = np.load(Y)
    classes = np.ravel_multi_index(tuple(y.T), (data.M,) * data.F)
    assert digest(pred) == results["fc"]["digest"]
    assert float((pred == classes).mean()) == results["fc"]["accuracy"]


def test_recorded_head_bytes_follow_from_the_shapes(results):
    fz, fc = results["factorizer"], results["fc"]
    c, b, length = results["classes"], results["B"], results["L"]
    assert fz["codebook_table_bytes"] == data.F * data.M * b * int(np.log2(length)) // 8
    assert fz["head_bytes"] < fc["head_bytes"]
    assert fc["head_bytes"] % (c // 8) == 0  # features x classes bits


@pytest.mark.slow
def test_training_one_epoch_exports_runnable_models(tmp_path):
    sys.path.insert(0, str(HERE))
    import train

    cfg = train.Config(epochs=1)
    summary = train.run(cfg, tmp_path, epochs=1)
    assert summary["query"]["torch_test_accuracy"] > 1 / data.M**data.F
    x = tmp_path / "test_x.npy"
    for name, flags in ((train.QUERY_ONNX, ("--fixed-point",)), (train.FC_ONNX, ("--check",))):
        proc = run_cli("run", tmp_path / name, "--input", x, "--output", tmp_path / "o.npz",
                       *flags)
        assert proc.returncode == 0, proc.stdout + proc.stderr
