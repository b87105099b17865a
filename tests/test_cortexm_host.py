"""Cortex-M backend, whole models on the host: generated C (gcc -Wall -Wextra -Werror -std=c99)
equals the golden model exactly, for every zoo family, random models, the examples and
hand-built IR that exercises what the zoo does not (ternary maps into convs and pools, integer
pools with select_min, dilation, reshapes, scores on ±1 data).

The int32 output is compared with the golden tensor that feeds `Scores`, and after
`golden.float_ops` with `golden.run` (what `edge-sdk run` prints).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import zoo
from conftest import EXAMPLES

import edge_sdk
from edge_sdk import golden
from edge_sdk.converters.cortexm import build, generate
from edge_sdk.converters.cortexm.host import HostModel
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph

N_INPUTS = 96
_counter = itertools.count()


# ---------------------------------------------------------------------------- helpers
def input_layer(graph: Graph) -> L.Input:
    return next(layer for layer in graph.layers if isinstance(layer, L.Input))


def random_batch(graph: Graph, n: int = N_INPUTS, seed: int = 0) -> np.ndarray:
    """Random integers over the input range, with the extremes in the first two samples."""
    inp = input_layer(graph)
    rng = np.random.default_rng(seed)
    x = rng.integers(inp.lo, inp.hi + 1, size=(n, *inp.shape))
    x[0], x[1] = inp.lo, inp.hi
    return x.astype(np.float32)


def check_graph(graph: Graph, tmp_path: Path, x: np.ndarray | None = None,
                popcount: str = "swar", fuse: bool = True) -> np.ndarray:
    """Generate, compile, run on `x` and compare with the golden model; returns the outputs."""
    if x is None:
        x = random_batch(graph)
    cm = build(graph, popcount, fuse=fuse)
    work = tmp_path / f"build{next(_counter)}"
    host = HostModel(cm.files, work, cm.info.input_dtype, cm.info.input_size,
                     cm.info.output_size)
    env = golden.run_all(graph, x)
    scores = graph.producer(graph.outputs[0])
    ref = env[scores.inputs[0]]
    y = host.run(golden.quantise_input(input_layer(graph), x))
    flat = ref.reshape(len(x), -1)
    bad = np.argwhere(y != flat)
    assert bad.size == 0, (
        f"{len(bad)} differences, first at {bad[0]}: C {y[tuple(bad[0])]} vs golden "
        f"{flat[tuple(bad[0])]}"
    )
    final = golden.float_ops(y.reshape(ref.shape), scores.ops)
    np.testing.assert_array_equal(final, env[graph.outputs[0]])
    return y


def load(model: onnx.ModelProto, tmp_path: Path, input_range=(0, 15)) -> Graph:
    path = tmp_path / f"m{next(_counter)}.onnx"
    onnx.save(model, path)
    return edge_sdk.load(path, input_range=input_range).ir


# ---------------------------------------------------------------------------- zoo families
WEIGHT_KINDS = ["pm1", "sign", "ternary", "rowscale"]
ACTS = ["sign", "where"]
FAST_PAIRS = {("sign", "pm1"), ("where", "sign"), ("sign", "ternary"), ("where", "rowscale"),
              ("where", "ternary")}


def act_weight_pairs() -> list:
    """Every (act, weights) pair; the fast suite keeps a covering subset, the rest is slow."""
    return [
        pytest.param(act, weights, id=f"{act}-{weights}",
                     marks=() if (act, weights) in FAST_PAIRS else (pytest.mark.slow,))
        for act, weights in itertools.product(ACTS, WEIGHT_KINDS)
    ]


@pytest.mark.parametrize("act,weights", act_weight_pairs())
def test_mlp(tmp_path, act, weights):
    check_graph(load(zoo.mlp(1, act=act, weights=weights), tmp_path), tmp_path)


@pytest.mark.parametrize("family", ["odd_mlp", "tie_mlp", "tie_where_mlp", "neg_gamma_mlp",
                                    "where_cast_mlp"])
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_fixed_families(tmp_path, family, seed):
    check_graph(load(getattr(zoo, family)(seed), tmp_path), tmp_path)


def test_neg_gamma_where(tmp_path):
    # odd seeds use Where(>= 0) with every threshold flipped
    check_graph(load(zoo.neg_gamma_mlp(3), tmp_path), tmp_path)


def test_tie_mlp_carries_mask_planes(tmp_path):
    graph = load(zoo.tie_mlp(0), tmp_path)
    kinds = {info.kind for info in graph.infos().values()}
    assert "ternary" in kinds
    assert "dense_masked" in generate(graph)["edge_kernels.c"]
    check_graph(graph, tmp_path, random_batch(graph, n=256, seed=3))
    check_graph(graph, tmp_path, random_batch(graph, n=256, seed=4), fuse=False)


@pytest.mark.parametrize("act,weights", act_weight_pairs())
def test_cnn(tmp_path, act, weights):
    check_graph(load(zoo.cnn(2, act=act, weights=weights), tmp_path), tmp_path)


@pytest.mark.parametrize("strides,pads,pool", [(2, 1, True), (1, 0, True), (2, 0, False),
                                               (1, 1, False)])
def test_cnn_strides_and_pads(tmp_path, strides, pads, pool):
    model = zoo.cnn(3, in_shape=(2, 11, 9), channels=(5, 40), strides=strides, pads=pads,
                    pool=pool)
    check_graph(load(model, tmp_path), tmp_path)


@pytest.mark.parametrize("seed", range(20))
def test_random_models(tmp_path, seed):
    model, _, (lo, hi) = zoo.random_model(seed)
    # every fourth seed with unfused thresholds (int32 accumulators in the arena)
    check_graph(load(model, tmp_path, (lo, hi)), tmp_path, fuse=seed % 4 != 3)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_examples(tmp_path, name, fuse):
    graph = edge_sdk.load(EXAMPLES / f"{name}_digits.onnx", input_range=(0, 16)).ir
    samples = np.load(EXAMPLES / f"digits_{name}_x.npy")
    x = np.concatenate([samples, random_batch(graph, n=64)])
    y = check_graph(graph, tmp_path, x, fuse=fuse)
    scores = golden.float_ops(y[: len(samples)], graph.producer(graph.outputs[0]).ops)
    labels = np.load(EXAMPLES / "digits_y.npy")
    # examples/README.md: on these 64 images the MLP scores 60/64 and the CNN 59/64
    assert int((scores.argmax(1) == labels).sum()) == {"mlp": 60, "cnn": 59}[name]


def test_default_input_range_uses_int16(tmp_path):
    graph = edge_sdk.load(EXAMPLES / "mlp_digits.onnx").ir  # [-255, 255]
    cm = build(graph)
    assert cm.info.input_dtype == "int16"
    assert "#define EDGE_IN_T int16_t" in cm.files["model.h"]
    check_graph(graph, tmp_path)


# ---------------------------------------------------------------------------- hand-built IR
def _weights(rng, rows, k, ternary):
    w = rng.choice([-1, 0, 1] if ternary else [-1, 1], size=(rows, k)).astype(np.int8)
    if ternary:
        w[0, 0] = 0
    return L.IntWeights(w)


def _threshold(name, src, channels, rng, lo, hi, zero):
    tau = rng.integers(lo // 4 - 1, hi // 4 + 2, size=channels)
    return L.Threshold(name, [src], name, tau=tau,
                       flip=rng.random(channels) < 0.5,
                       zero=(rng.random(channels) < 0.7) if zero else np.zeros(channels, bool))


def ternary_cnn(seed: int, dilation=(1, 1), pads=(1, 0, 2, 1), int_pool=False,
                scores_on_bits=False) -> Graph:
    """Input -> conv -> thr(zero ties) -> conv(dilated, asymmetric pads) -> [pool] -> thr ->
    pool(mask planes) -> reshape -> dense -> scores; every kernel variant with masks."""
    rng = np.random.default_rng(seed)
    c0, h, w = 3, 9, 8
    layers: list[L.Layer] = [L.Input("in", [], "in", shape=(c0, h, w), lo=-7, hi=9)]
    c1, c2, n_out = 35, 6, 5
    layers.append(L.Conv2d("c1", ["in"], "c1", weights=_weights(rng, c1, c0 * 9, True),
                           in_channels=c0, kernel=(3, 3), pads=(1, 1, 1, 1)))
    layers.append(_threshold("t1", "c1", c1, rng, -243, 243, True))
    layers.append(L.Conv2d("c2", ["t1"], "c2", weights=_weights(rng, c2, c1 * 6, seed % 2 == 0),
                           in_channels=c1, kernel=(2, 3), strides=(1, 2), pads=pads,
                           dilations=dilation))
    g = Graph("hand", layers, ["in"], [])
    cur = "c2"
    if int_pool:
        sel = rng.random(c2) < 0.5
        layers.append(L.MaxPool("p0", [cur], "p0", kernel=(2, 2), strides=(1, 1),
                                pads=(1, 0, 0, 1), select_min=sel))
        cur = "p0"
    info = g.infos()[cur]
    layers.append(_threshold("t2", cur, c2, rng, info.lo, info.hi, True))
    layers.append(L.MaxPool("p1", ["t2"], "p1", kernel=(2, 3), strides=(2, 2),
                            pads=(1, 1, 1, 1)))
    info = g.infos()["p1"]
    if scores_on_bits:
        layers.append(L.Flatten("f", ["p1"], "f"))
        layers.append(L.Scores("s", ["f"], "s"))
        return Graph("hand", layers, ["in"], ["s"])
    layers.append(L.Reshape("r", ["p1"], "r", shape=(info.size,)))
    layers.append(L.Dense("d", ["r"], "d", weights=_weights(rng, n_out, info.size, True)))
    layers.append(L.Scores("s", ["d"], "s", ops=[L.Mul(np.full(n_out, 0.5, np.float32))]))
    return Graph("hand", layers, ["in"], ["s"])


@pytest.mark.parametrize("seed,dilation,int_pool,fuse", [
    (0, (1, 1), False, True), (1, (2, 1), True, True), (2, (1, 2), False, False),
    (3, (2, 2), True, False)])
def test_ternary_cnn_ir(tmp_path, seed, dilation, int_pool, fuse):
    graph = ternary_cnn(seed, dilation=dilation, int_pool=int_pool)
    kinds = {info.kind for info in graph.infos().values()}
    assert "ternary" in kinds
    check_graph(graph, tmp_path, fuse=fuse)


def test_scores_on_bits(tmp_path):
    check_graph(ternary_cnn(0, scores_on_bits=True), tmp_path)


def test_input_straight_to_threshold_and_pool(tmp_path):
    rng = np.random.default_rng(5)
    layers = [
        L.Input("in", [], "in", shape=(4, 5, 5), lo=-100, hi=100),
        L.MaxPool("p", ["in"], "p", kernel=(2, 2), strides=(1, 1), pads=(0, 0, 1, 1)),
        _threshold("t", "p", 4, rng, -400, 400, True),
        L.Flatten("f", ["t"], "f"),
        L.Dense("d", ["f"], "d", weights=_weights(rng, 7, 100, False)),
        L.Scores("s", ["d"], "s"),
    ]
    check_graph(Graph("g", layers, ["in"], ["s"]), tmp_path)


def test_scores_straight_from_input(tmp_path):
    layers = [L.Input("in", [], "in", shape=(6,), lo=-3, hi=3), L.Scores("s", ["in"], "s")]
    check_graph(Graph("g", layers, ["in"], ["s"]), tmp_path)


# ---------------------------------------------------------------------------- properties
def test_builtin_popcount_matches(tmp_path):
    graph = load(zoo.cnn(4, weights="ternary"), tmp_path)
    files = generate(graph, popcount="builtin")
    assert "__builtin_popcount" in files["edge_kernels.c"]
    assert "__builtin_popcount" not in generate(graph)["edge_kernels.c"]
    check_graph(graph, tmp_path, popcount="builtin")


def test_deterministic(tmp_path):
    graph = load(zoo.cnn(5, weights="ternary", act="sign"), tmp_path)
    again = load(zoo.cnn(5, weights="ternary", act="sign"), tmp_path)
    assert generate(graph) == generate(again) == generate(graph)


def test_files_are_plain_c(tmp_path):
    files = generate(load(zoo.odd_mlp(0), tmp_path))
    assert sorted(files) == ["edge_kernels.c", "edge_kernels.h", "model.c", "model.h"]
    for text in files.values():
        assert not re.search(r"TVM_|TVMValue|TVMFFI|__tvm|tvm/|TVMBackend", text)
        includes = re.findall(r"#include (.*)", text)
        assert set(includes) <= {"<stdint.h>", '"model.h"', '"edge_kernels.h"'}
    c = files["model.c"]
    assert "static const uint32_t" in c and "static uint32_t edge_arena[" in c
    assert "int edge_model_run(const EDGE_IN_T *in, int32_t *out);" in files["model.h"]


MALICIOUS = 'x"; system("rm -rf /"); //'


def test_model_names_never_reach_c(tmp_path):
    model = zoo.mlp(0, sizes=(20, 33, 7))
    model.graph.name = MALICIOUS
    for node in model.graph.node:
        node.name = MALICIOUS
        node.doc_string = MALICIOUS
    old = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = [MALICIOUS if n == old else n for n in node.input]
    model.graph.input[0].name = MALICIOUS
    graph = load(model, tmp_path)
    assert any(MALICIOUS in layer.source for layer in graph.layers)
    files = generate(graph)
    for name, text in files.items():
        for needle in (MALICIOUS, "system(", "rm -rf", '"; '):
            assert needle not in text, (name, needle)
    check_graph(graph, tmp_path)


def test_info(tmp_path):
    graph = edge_sdk.load(EXAMPLES / "mlp_digits.onnx", input_range=(0, 16)).ir
    info = build(graph).info
    assert (info.input_dtype, info.input_size, info.output_size) == ("int8", 64, 10)
    assert [c.macs for c in info.layers] == [64 * 128, 128 * 128, 128 * 10]
    assert [c.binary for c in info.layers] == [False, True, True]
    assert info.binary_macs == 128 * 128 + 1280
    # thresholds fused into the dense kernels: ping-pong of two 128-bit vectors (4 words each)
    assert info.arena_bytes == 4 * (4 + 4)
    assert info.weight_bytes == 4 * (128 * 2 + 128 + 128 * 4 + 128 + 10 * 4)
    # unfused: int32 accumulators of 128 rows + 128 packed bits
    assert build(graph, fuse=False).info.arena_bytes == 4 * (128 + 4)


# ---------------------------------------------------------------------------- refusals
def test_refuses_wide_input(tmp_path):
    graph = load(zoo.mlp(0), tmp_path, input_range=(0, 40000))
    with pytest.raises(EdgeError, match=r"input range \[0, 40000\] does not fit int16"):
        generate(graph)


def test_refuses_wide_accumulators():
    layers = [
        L.Input("in", [], "in", shape=(64,), lo=0, hi=2**25),
        L.Dense("d", ["in"], "d", weights=L.IntWeights(np.ones((2, 64), np.int8))),
        L.Scores("s", ["d"], "s"),
    ]
    with pytest.raises(EdgeError):
        generate(Graph("g", layers, ["in"], ["s"]))


def test_refuses_bad_popcount(tmp_path):
    with pytest.raises(EdgeError, match="popcount"):
        generate(load(zoo.mlp(0), tmp_path), popcount="fast")


# ---------------------------------------------------------------------------- slow sweeps
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 120))
def test_random_models_sweep(tmp_path, seed):
    model, _, (lo, hi) = zoo.random_model(seed)
    graph = load(model, tmp_path, (lo, hi))
    check_graph(graph, tmp_path, random_batch(graph, n=512, seed=seed), fuse=seed % 2 == 0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 24))
def test_ternary_cnn_ir_sweep(tmp_path, seed):
    rng = np.random.default_rng(seed)
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
    graph = ternary_cnn(seed, dilation=dilation, pads=pads, int_pool=bool(seed % 2))
    check_graph(graph, tmp_path, random_batch(graph, n=256, seed=seed), fuse=seed % 3 != 0)
