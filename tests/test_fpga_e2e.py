"""Generated Verilog under cocotb 2 + Icarus == the golden model, bit-exactly.

The design's output is the integer tensor feeding the IR's `Scores`; the host applies Scores'
float ops, so golden.float_ops(simulated) must equal `edge-sdk run` (golden.run) exactly.
Default run: a few inputs per model. `-m slow`: >= 32 inputs each, and the Amaranth fast path
over many random zoo models.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import edge_sdk
from edge_sdk import golden
from edge_sdk.converters.fpga import generate, simulate, simulate_amaranth

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
ROOT = Path(__file__).resolve().parents[1]


def load_model(model: onnx.ModelProto, input_range=(0, 15)):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(model, str(path))
        return edge_sdk.load(path, input_range=input_range).ir


def scores_input(graph, x):
    return golden.run_all(graph, x)[graph.layers[-1].inputs[0]]


def inputs(shape, n, seed, hi=15):
    rng = np.random.default_rng(seed)
    return rng.integers(0, hi + 1, size=(n, *shape)).astype(np.float32)


ZOO = {
    "mlp_sign": (lambda: zoo.mlp(1), (64,)),
    "mlp_where": (lambda: zoo.mlp(2, act="where", weights="sign"), (64,)),
    "mlp_ternary": (lambda: zoo.mlp(3, weights="ternary"), (64,)),
    "mlp_rowscale": (lambda: zoo.mlp(4, weights="rowscale", bias=True), (64,)),
    "tie_mlp": (lambda: zoo.tie_mlp(5), (12,)),
    "odd_mlp": (lambda: zoo.odd_mlp(6), (67,)),
    "neg_gamma_mlp": (lambda: zoo.neg_gamma_mlp(7), (40,)),
    "cnn_pad_pool": (lambda: zoo.cnn(8, channels=(4, 8)), (1, 8, 8)),
    "cnn_ternary_stride": (lambda: zoo.cnn(9, in_shape=(2, 7, 6), channels=(5,), strides=2,
                                           weights="ternary", act="sign"), (2, 7, 6)),
}
DEFAULT = sorted(ZOO)  # every family, a few inputs each


def _check(graph, x, files):
    scores, cycles, ii = simulate(files, graph, x)
    want = scores_input(graph, x)
    assert scores.dtype == np.int64 and scores.shape == want.shape
    np.testing.assert_array_equal(scores, want)
    final = golden.float_ops(scores, graph.layers[-1].ops)
    np.testing.assert_array_equal(final, golden.run(graph, x))
    return cycles, ii


@needs_icarus
@pytest.mark.parametrize("name", DEFAULT)
def test_zoo_cocotb(name):
    build, shape = ZOO[name]
    graph = load_model(build())
    files, sched = generate(graph)
    cycles, ii = _check(graph, inputs(shape, 3, 1), files)
    assert ii == sched.initiation_interval
    assert abs(cycles - sched.cycles_per_inference) <= 8


@needs_icarus
@pytest.mark.parametrize("example,data", [("mlp_digits.onnx", "digits_mlp_x.npy"),
                                          ("cnn_digits.onnx", "digits_cnn_x.npy")])
def test_examples_cocotb(example, data, tmp_path):
    graph = edge_sdk.load(ROOT / "examples" / example).ir
    files, sched = generate(graph)
    for name, text in files.items():  # the folder form, as `convert --target fpga` writes it
        (tmp_path / name).write_text(text)
    x = np.load(ROOT / "examples" / data)[:3]
    _cycles, ii = _check(graph, x, tmp_path)
    assert ii == sched.initiation_interval


@needs_icarus
def test_folding_options_cocotb():
    """Explicit PE/SIMD that do not divide the layers (padding) stay exact."""
    graph = load_model(zoo.odd_mlp(11))
    files, _sched = generate(graph, pe=[3, 5, 4], simd=[9, 7, 33])
    _check(graph, inputs((67,), 2, 2), files)


@pytest.mark.slow
@needs_icarus
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_cocotb_many_inputs(name):
    build, shape = ZOO[name]
    graph = load_model(build())
    files, _ = generate(graph)
    _check(graph, inputs(shape, 32, 3), files)


@pytest.mark.slow
@needs_icarus
@pytest.mark.parametrize("example,data", [("mlp_digits.onnx", "digits_mlp_x.npy"),
                                          ("cnn_digits.onnx", "digits_cnn_x.npy")])
def test_examples_cocotb_many_inputs(example, data):
    graph = edge_sdk.load(ROOT / "examples" / example).ir
    files, _ = generate(graph)
    x = np.load(ROOT / "examples" / data)
    assert len(x) >= 32
    _check(graph, x, files)


def test_amaranth_fast_path():
    graph = load_model(zoo.tie_mlp(12))
    x = inputs((12,), 4, 4)
    scores, _cycles, _ii = simulate_amaranth(graph, x)
    np.testing.assert_array_equal(scores, scores_input(graph, x))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_models_fast_path(seed):
    model, shape, (lo, hi) = zoo.random_model(seed)
    graph = load_model(model, (lo, hi))
    x = inputs(shape, 4, seed, hi)
    pe = [None, 1, 3][seed % 3]
    scores, _, _ = simulate_amaranth(graph, x, pe=pe, simd=[None, 2, 5][seed % 3])
    np.testing.assert_array_equal(scores, scores_input(graph, x))


def pool_first_graph(seed: int):
    """Conv -> max-pool on integer accumulators (some channels min) -> threshold -> dense.

    The order Larq/FINN export and the passes produce when they commute a pool in front of a
    BN: the pool runs on integers and the threshold becomes a stand-alone stage.
    """
    from edge_sdk.ir import layers as L
    from edge_sdk.ir.graph import Graph

    rng = np.random.default_rng(seed)
    c, o, n = 2, 4, 5
    conv_w = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(o, c * 9))
    dense_w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, o * 3 * 3))
    layers = [
        L.Input(name="input", inputs=[], output="input", shape=(c, 6, 6), lo=0, hi=3),
        L.Conv2d(name="conv", inputs=["input"], output="conv", weights=L.IntWeights(conv_w),
                 in_channels=c, kernel=(3, 3), pads=(1, 1, 1, 1)),
        L.MaxPool(name="pool", inputs=["conv"], output="pool", kernel=(2, 2), strides=(2, 2),
                  select_min=np.array([True, False, True, False])),
        L.Threshold(name="thr", inputs=["pool"], output="thr", tau=rng.integers(-3, 4, size=o),
                    flip=rng.random(o) < 0.5, zero=np.array([True, False, False, True])),
        L.Flatten(name="flat", inputs=["thr"], output="flat"),
        L.Dense(name="fc", inputs=["flat"], output="fc", weights=L.IntWeights(dense_w)),
        L.Scores(name="scores", inputs=["fc"], output="scores"),
    ]
    return Graph("pool_first", layers, ["input"], ["scores"])


def test_int_maxpool_then_threshold_fast_path():
    graph = pool_first_graph(3)
    x = inputs((2, 6, 6), 3, 5, hi=3)
    scores, _, _ = simulate_amaranth(graph, x, pe=2, simd=[1, 3])
    np.testing.assert_array_equal(scores, scores_input(graph, x))


@needs_icarus
def test_int_maxpool_then_threshold_cocotb():
    graph = pool_first_graph(4)
    files, sched = generate(graph)
    assert [s.kind for s in sched.stages] == ["conv", "maxpool", "threshold", "dense"]
    _check(graph, inputs((2, 6, 6), 2, 6, hi=3), files)


@needs_icarus
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_models_cocotb_many_inputs(seed):
    """The foundation's random test models, as Verilog under Icarus, 32 inputs each."""
    model, shape, (lo, hi) = zoo.random_model(seed)
    graph = load_model(model, (lo, hi))
    x = inputs(shape, 32, seed, hi)
    files, _ = generate(graph)
    _check(graph, x, files)
