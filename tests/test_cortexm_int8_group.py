"""Cortex-M backend, 8-bit grouped and depthwise convolutions (`int8_group_conv`).

The kernel alone is compiled for the host and checked against a plain NumPy integer grouped
conv written here (zero padding, strides, dilations, asymmetric SAME-style pads, depth
multipliers 1 and 2, int8 / int16 / int32 inputs, -128 / 127 weights on the largest inputs),
with int32 output and with a fused threshold (against the same sums thresholded here). Whole
hand-built graphs (Input -> GroupConv2d(Int8Weights) -> TflRequant / Threshold -> Scores) go
through the planner to the host and, under QEMU, to the Cortex-M4, bit-exact with
`golden.run(..., fixed_point=True)`; the planner's MAC count is the grouped one.
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np
import pytest
from host_check import (
    assert_device_tensors_bit_exact,
    assert_host_bit_exact,
    assert_qemu_bit_exact,
    host_bit_exact,
)

from edge_sdk import bitpack, golden, targets
from edge_sdk.converters.cortexm import backend, build, layout
from edge_sdk.converters.cortexm.geometry import Window
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.kernels_int8 import int8_group_conv, int8_words
from edge_sdk.converters.cortexm.kernels_threshold import Epilogue
from edge_sdk.converters.cortexm.tir_to_c import to_c
from edge_sdk.converters.tflite.frontend import import_tflite
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph
from edge_sdk.passes.pipeline import lower

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
ACC_LIMIT = 2**30 - 1  # plan.INT_LIMIT: what the planner lets an accumulator reach


# ---------------------------------------------------------------------------- reference
def ref_group_conv(x: np.ndarray, w: np.ndarray, groups: int, kernel: tuple[int, int],
                   strides: tuple[int, int], pads: tuple[int, int, int, int],
                   dil: tuple[int, int]) -> np.ndarray:
    """Plain integer grouped conv: x [C, H, W], w [O, (C/groups)*KH*KW] in (c, kh, kw) order,
    pads (top, left, bottom, right) of zeros -> int64 [O, OH, OW]."""
    c, h, wd = x.shape
    o = w.shape[0]
    kh, kw = kernel
    cin, rows = c // groups, o // groups
    xp = np.zeros((c, h + pads[0] + pads[2], wd + pads[1] + pads[3]), np.int64)
    xp[:, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    oh = (xp.shape[1] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (xp.shape[2] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    wk = w.astype(np.int64).reshape(o, cin, kh, kw)
    y = np.zeros((o, oh, ow), np.int64)
    for out in range(o):
        grp = out // rows
        for i in range(cin):
            for r in range(kh):
                for s in range(kw):
                    r0, s0 = r * dil[0], s * dil[1]
                    win = xp[grp * cin + i, r0:r0 + strides[0] * (oh - 1) + 1:strides[0],
                             s0:s0 + strides[1] * (ow - 1) + 1:strides[1]]
                    y[out] += wk[out, i, r, s] * win
    return y


def test_reference_matches_a_hand_computed_case():
    """The reference itself: a 1-channel 3x3 map, 2x2 kernel, pad 1 at the top/left only."""
    x = np.arange(1, 10).reshape(1, 3, 3)
    w = np.array([[1, 2, 3, 4]])
    y = ref_group_conv(x, w, 1, (2, 2), (1, 1), (1, 1, 0, 0), (1, 1))
    # output (0, 0) sees only x[0, 0] under weight 4; (1, 1) sees x[0:2, 0:2]
    assert y[0, 0, 0] == 4 * 1 and y[0, 1, 1] == 1 * 1 + 2 * 2 + 3 * 4 + 4 * 5
    assert y.shape == (1, 3, 3)


# ---------------------------------------------------------------------------- kernel alone
def _lib(kernels, tmp_path) -> ctypes.CDLL:
    src = "#include <stdint.h>\n" + "\n".join(to_c(k) for k in kernels)
    return compile_shared({"k.c": src}, tmp_path)


def _p(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _window(c, h, w, o, kernel, strides, pads, dil) -> Window:
    oh = (h + pads[0] + pads[2] - dil[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dil[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    return Window(c, h, w, o, kernel[0], kernel[1], strides[0], strides[1], pads[0], pads[1],
                  dil[0], dil[1], oh, ow)


def _case(seed, c, groups, mult, h, w, kernel, strides, pads, dil, dtype):
    """Random data at the dtype's (planner-safe) extremes and int8 weights with -128 / 127
    rows, so the accumulators reach their bound."""
    rng = np.random.default_rng(seed)
    o = groups * mult
    k = c // groups * kernel[0] * kernel[1]
    if dtype == "int32":  # as large as the planner allows: |acc| <= 128 * K * max|x|
        hi = ACC_LIMIT // (128 * k)
        lo = -hi
    else:
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
    x = rng.integers(lo, hi + 1, (c, h, w)).astype(dtype)
    x[0] = lo
    if c > 1:
        x[1] = hi
    wt = rng.integers(-128, 128, (o, k)).astype(np.int8)
    wt[0] = -128
    wt[-1] = 127
    return x, wt, _window(c, h, w, o, kernel, strides, pads, dil)


# (c, groups, mult, h, w, kernel, strides, pads (t, l, b, r), dilations)
GEOMETRIES = [
    (8, 8, 1, 7, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # depthwise 3x3, same
    (5, 5, 2, 6, 7, (3, 3), (2, 2), (0, 0, 1, 1), (1, 1)),  # multiplier 2, stride 2, SAME
    (4, 4, 1, 9, 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),  # dilation 2
    (6, 3, 2, 5, 6, (3, 2), (2, 1), (1, 0, 1, 1), (1, 2)),  # cin 2, mixed strides/dilations
    (3, 3, 1, 4, 4, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # kernel larger than interior
    (4, 2, 3, 6, 6, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),  # pointwise grouped, unbounded
    (2, 1, 3, 5, 5, (3, 3), (1, 2), (0, 1, 2, 0), (1, 1)),  # one group = an ordinary conv
    (2, 2, 1, 3, 3, (1, 1), (1, 1), (2, 1, 0, 3), (1, 1)),  # pads beyond the kernel: 0 rims
    (9, 1, 1, 4, 4, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # K = 81 > 64: loop over channels
]


DTYPES = ["int8", "int16", "int32"]


def _check_cases(tmp_path, cases: list[tuple[tuple, str]], seed: int) -> None:
    """(geometry, dtype) cases compiled into one library (TVM's lowering, ~0.5 s a kernel,
    dominates), each against the reference."""
    built = []
    for j, (geom, dtype) in enumerate(cases):
        x, wt, g = _case(seed * 1000 + j, *geom, dtype)
        built.append((geom, dtype, x, wt, g))
    lib = _lib([int8_group_conv(f"gc{j}", g, geom[1], dtype)
                for j, (geom, dtype, _, _, g) in enumerate(built)], tmp_path)
    for j, (geom, dtype, x, wt, g) in enumerate(built):
        _, groups, _, _, _, kernel, strides, pads, dil = geom
        want = ref_group_conv(x, wt, groups, kernel, strides, pads, dil)
        assert want.shape == (g.o, g.oh, g.ow)
        y = np.full(want.shape, 0x5A5A5A5A, np.int32)
        getattr(lib, f"gc{j}")(_p(x), _p(int8_words(wt)), _p(y))
        np.testing.assert_array_equal(y, want, err_msg=f"{geom} {dtype}")


def test_kernel_equals_integer_grouped_conv(tmp_path):
    """Each geometry once, the input dtypes taking turns."""
    _check_cases(tmp_path, [(geom, DTYPES[j % 3]) for j, geom in enumerate(GEOMETRIES)], 0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_equals_integer_grouped_conv_every_dtype(tmp_path, dtype):
    _check_cases(tmp_path, [(geom, dtype) for geom in GEOMETRIES], 1)

def _random_geometry(rng) -> tuple:
    """A random grouped conv, pads up to beyond the kernel and asymmetric, that has outputs."""
    while True:
        groups = int(rng.integers(1, 6))
        cin = int(rng.choice([1, 1, 1, 2, 3]))
        mult = int(rng.integers(1, 4))
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dil = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        pads = tuple(int(p) for p in rng.integers(0, 4, 4))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        if (h + pads[0] + pads[2] >= dil[0] * (kernel[0] - 1) + 1
                and w + pads[1] + pads[3] >= dil[1] * (kernel[1] - 1) + 1):
            return groups * cin, groups, mult, h, w, kernel, strides, pads, dil


def _random_cases(tmp_path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    _check_cases(tmp_path, [(_random_geometry(rng), DTYPES[int(rng.integers(0, 3))])
                            for _ in range(n)], seed)


def test_kernel_on_random_geometries(tmp_path):
    _random_cases(tmp_path, 4, seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 8))
def test_kernel_on_many_random_geometries(tmp_path, seed):
    _random_cases(tmp_path, 40, seed)

def _thresholded(acc: np.ndarray, rng) -> tuple[L.Threshold, np.ndarray]:
    """A Threshold on [O, OH, OW] accumulators with taus taken from the values themselves
    (so ties and both sides occur), some flipped and some with zero ties; and the packed
    bits it gives: sign plane [P][CW] then mask plane, computed here."""
    o = acc.shape[0]
    flat = acc.reshape(o, -1)
    tau = flat[np.arange(o), rng.integers(0, flat.shape[1], o)] + rng.integers(-1, 2, o)
    flip = rng.random(o) < 0.5
    zero = rng.random(o) < 0.5
    v = np.where(flip[:, None], flat <= tau[:, None], flat >= tau[:, None])
    tie = zero[:, None] & (flat == np.where(flip, tau + 1, tau - 1)[:, None])
    sign = np.where(v & ~tie, 1, 0)
    bits = np.concatenate([bitpack.pack_bits(sign.T > 0).ravel(),
                           bitpack.pack_bits(~tie.T).ravel()])
    thr = L.Threshold("t", ["a"], "t", tau=tau.astype(np.int64), flip=flip, zero=zero)
    return thr, bits


FUSED_CASES = [
    ((20, 20, 2, 5, 6, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)), "int16"),  # 40 outputs: 2 words
    ((6, 3, 2, 7, 5, (3, 3), (2, 1), (0, 1, 2, 1), (1, 2)), "int8"),
    ((4, 4, 1, 4, 4, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)), "int32"),  # unbounded
]


def test_fused_threshold_kernel_equals_thresholded_sums(tmp_path):
    built, kernels = [], []
    for j, (geom, dtype) in enumerate(FUSED_CASES):
        c, groups, mult, h, w, kernel, strides, pads, dil = geom
        x, wt, g = _case(c + w, c, groups, mult, h, w, kernel, strides, pads, dil, dtype)
        acc = ref_group_conv(x, wt, groups, kernel, strides, pads, dil)
        thr, want = _thresholded(acc, np.random.default_rng(c + h))
        table, flip, zero = layout.threshold_table(thr, int(acc.min()), int(acc.max()))
        assert flip and zero
        kernels.append(int8_group_conv(f"gt{j}", g, groups, dtype, Epilogue(g.o, flip, zero)))
        built.append((x, wt, table, want))
    lib = _lib(kernels, tmp_path)
    for j, (x, wt, table, want) in enumerate(built):
        y = np.full(want.shape, 0xDEADBEEF, np.uint32)
        getattr(lib, f"gt{j}")(_p(x), _p(int8_words(wt)), _p(table), _p(y))
        np.testing.assert_array_equal(y, want, err_msg=str(FUSED_CASES[j]))

# ---------------------------------------------------------------------------- whole graphs
def _requant(name: str, src: str, c: int, rng) -> L.TflRequant:
    """A TFLite-style per-channel requant of depthwise accumulators back to int8."""
    return L.TflRequant(name, [src], name, factor=np.ones(c, np.int64),
                        bias=rng.integers(-2000, 2000, c), mult=rng.integers(1 << 30, 2**31 - 1, c),
                        shift=np.full(c, -9), zero_point=-3, lo=-128, hi=127, rounding="ruy")


def _depthwise_graph(seed: int, c: int = 6, h: int = 9, w: int = 8) -> Graph:
    """int8 input [C, H, W] -> depthwise 3x3 x2 multiplier, stride 2, SAME (pads 0,0,1,1) ->
    TflRequant -> depthwise 3x3, dilation 2, pads 2 (on int32 arena data) -> TflRequant ->
    grouped 1x1 (2 groups) -> Scores."""
    rng = np.random.default_rng(seed)

    def weights(o, k):
        v = rng.integers(-128, 128, (o, k)).astype(np.int8)
        v[0, 0], v[-1, -1] = -128, 127
        return L.Int8Weights(v)

    inp = L.Input("input", [], "input", shape=(c, h, w), lo=-128, hi=127)
    d1 = L.GroupConv2d("d1", ["input"], "d1", weights=weights(2 * c, 9), in_channels=c,
                       kernel=(3, 3), strides=(2, 2), pads=(0, 0, 1, 1), groups=c)
    r1 = _requant("r1", "d1", 2 * c, rng)
    d2 = L.GroupConv2d("d2", ["r1"], "d2", weights=weights(2 * c, 9), in_channels=2 * c,
                       kernel=(3, 3), pads=(2, 2, 2, 2), dilations=(2, 2), groups=2 * c)
    r2 = _requant("r2", "d2", 2 * c, rng)
    p = L.GroupConv2d("p", ["r2"], "p", weights=weights(4, c), in_channels=2 * c,
                      kernel=(1, 1), groups=2)
    scores = L.Scores("s", ["p"], "s")
    return Graph("dw", [inp, d1, r1, d2, r2, p, scores], ["input"], ["s"])


def _thr_graph(seed: int, c: int = 8) -> Graph:
    """int16 input -> depthwise 3x3 (x2) with a fused threshold -> Scores (unpacked ±1/0;
    taus near 0 so that ties happen)."""
    rng = np.random.default_rng(seed)
    inp = L.Input("input", [], "input", shape=(c, 5, 5), lo=-300, hi=300)
    wv = rng.integers(-128, 128, (2 * c, 9)).astype(np.int8)
    d = L.GroupConv2d("d", ["input"], "d", weights=L.Int8Weights(wv), in_channels=c,
                      kernel=(3, 3), pads=(1, 1, 1, 1), groups=c)
    t = L.Threshold("t", ["d"], "t", tau=rng.integers(-300, 300, 2 * c),
                    flip=rng.random(2 * c) < 0.5, zero=rng.random(2 * c) < 0.5)
    return Graph("dwt", [inp, d, t, L.Scores("s", ["t"], "s")], ["input"], ["s"])



def _bits_graph(seed: int, c: int = 8) -> Graph:
    """`_thr_graph`'s ±1/0 map read by an 8-bit grouped 3x3 conv (4 groups of 4 channels,
    stride 2, SAME pads; the bits unpacked to int32 first) -> Scores."""
    base = _thr_graph(seed, c)
    rng = np.random.default_rng(seed + 1)
    wv = rng.integers(-128, 128, (8, 4 * 9)).astype(np.int8)
    g = L.GroupConv2d("g", ["t"], "g", weights=L.Int8Weights(wv), in_channels=2 * c,
                      kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), groups=4)
    layers = [*base.layers[:-1], g, L.Scores("s", ["g"], "s")]
    return Graph("bits", layers, ["input"], ["s"])

def _inputs(ir: Graph, n: int, seed: int) -> np.ndarray:
    """Random inputs over the Input's range (some samples scaled down, so small sums and
    threshold ties occur), the first two at its ends."""
    inp = ir.layers[0]
    rng = np.random.default_rng(seed)
    x = rng.integers(inp.lo, inp.hi + 1, (n, *inp.shape)) >> rng.integers(0, 8, (n, 1, 1, 1))
    x[0], x[1] = inp.lo, inp.hi
    return x.astype(np.float32)


def _want(ir: Graph, x: np.ndarray) -> np.ndarray:
    """golden.run(fixed_point=True); for `_bits_graph`, the golden ±1/0 map through the
    reference grouped conv: sdk/golden.group_conv2d re-wraps 8-bit weights as IntWeights, so
    on ±1/0 data it sums sign(w) * x instead of w * x (reported to the lead)."""
    if ir.name != "bits":
        return golden.run(ir, x, fixed_point=True).reshape(len(x), -1)
    t = golden.run_all(ir, x, fixed_point=True)["t"].astype(np.int64)
    g = ir.layers[-2]
    return np.stack([ref_group_conv(t[n], g.weights.values, g.groups, g.kernel, g.strides,
                                    g.pads, g.dilations) for n in range(len(x))]
                    ).reshape(len(x), -1)


@pytest.mark.parametrize("make", [_depthwise_graph, _thr_graph, _bits_graph])
def test_host_graph_bit_exact_with_fixed_point_golden(tmp_path, make):
    ir = make(1)
    x = _inputs(ir, 300, seed=2)
    want = _want(ir, x)
    cm = assert_host_bit_exact(ir, x, tmp_path / "host", want)
    assert len(np.unique(want)) >= 3  # not a clamped constant; the ±1 map has ties
    if make is _depthwise_graph:
        assert cm.files == build(ir).files  # deterministic
    kinds = [s.spec.kind for s in cm.plan.steps]
    grouped = [layer for layer in ir.layers if isinstance(layer, L.GroupConv2d)]
    assert kinds.count("group_conv_int8") + kinds.count("group_conv_int8_thr") == len(grouped)
    infos = ir.infos()
    for layer in grouped:  # grouped MACs: out.size * (C / groups) * KH * KW
        cost = next(c for c in cm.info.layers if c.layer == ir.layers.index(layer))
        assert cost.macs == infos[layer.output].size * (
            layer.in_channels // layer.groups) * layer.kernel[0] * layer.kernel[1]


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("make", [_depthwise_graph, _thr_graph])
def test_qemu_graph_bit_exact_with_fixed_point_golden(tmp_path, make):
    ir = make(3)
    x = _inputs(ir, 6, seed=4)
    assert_qemu_bit_exact(ir, x, tmp_path / "out", _want(ir, x))


def test_bad_groups_and_pad_value_refused():
    ir = _thr_graph(0)
    ir.layers[1].pad_value = 1
    with pytest.raises(EdgeError, match=r"layer 1 \(groupconv2d\): \+1 padding"):
        build(ir)


# ---------------------------------------------------------------------------- a real model
LARQ = Path(__file__).resolve().parent.parent / "examples" / "larq"


def test_tflite_depthwise_fixture_equals_golden_and_lce(tmp_path):
    """examples/larq/int8_dw.tflite (LCE int8 conversion: RGB input, depthwise 3x3, then
    depthwise multiplier 2 stride 2): every fixture input on the host equals the golden
    fixed-point model and LCE's own interpreter (`int8_dw_ref.npy`, an independent reference)."""
    ir = lower(import_tflite(LARQ / "int8_dw.tflite"))
    x = np.load(LARQ / "int8_dw_x.npy")
    cm, y = host_bit_exact(ir, x, tmp_path / "host")
    kinds = [s.spec.kind for s in cm.plan.steps]
    # the two depthwise convs and the MEAN's per-channel window sum (a GroupConv2d of ones)
    assert kinds.count("group_conv_int8") == 3
    out = targets.output_of_scores(ir, y, len(x))
    np.testing.assert_array_equal(out, np.load(LARQ / "int8_dw_ref.npy").astype(np.float32))


# ---------------------------------------------------------------------------- cost
def _block_diagonal(wv: np.ndarray, c: int) -> np.ndarray:
    """Depthwise [C*m, 9] weights as an ordinary conv's [C*m, C*9] (0 off the group)."""
    o = wv.shape[0]
    full = np.zeros((o, c, 9), np.int8)
    for r in range(o):
        full[r, r // (o // c)] = wv[r]
    return full.reshape(o, c * 9)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_depthwise_costs_a_fraction_of_the_block_diagonal_conv(tmp_path):
    """A 16-channel 16x16 depthwise 3x3 (int8 input, int32 output) against the same layer as
    an ordinary conv with block-diagonal weights: equal outputs, and unicorn's exact counts
    (measured here: about 116 k vs 3.26 M instructions, ~3.1 per grouped MAC)."""
    c, h = 16, 16
    wv = np.random.default_rng(0).integers(-128, 128, (c, 9)).astype(np.int8)
    inp = L.Input("input", [], "input", shape=(c, h, h), lo=-128, hi=127)
    common = {"in_channels": c, "kernel": (3, 3), "pads": (1, 1, 1, 1)}
    counts, outs = {}, {}
    x = _inputs(Graph("i", [inp], ["input"], ["input"]), 3, seed=0)
    for name, conv in [
            ("grouped", L.GroupConv2d("d", ["input"], "d", weights=L.Int8Weights(wv),
                                      groups=c, **common)),
            ("block", L.Conv2d("d", ["input"], "d", weights=L.Int8Weights(_block_diagonal(wv, c)),
                               **common))]:
        ir = Graph(name, [inp, conv, L.Scores("s", ["d"], "s")], ["input"], ["s"])
        folder = tmp_path / name
        folder.mkdir()
        report = backend.convert(ir, {}, folder)
        counts[name] = report["instructions_per_inference"]["mean"]
        q = golden.quantise_input(inp, x)
        y, _ = backend.simulate(folder, {"options": {}}, ir, q, x, count=False)
        outs[name] = np.asarray(y).reshape(len(x), -1)
        np.testing.assert_array_equal(outs[name], _want(ir, x))
    print(f"depthwise 3x3 {c}x{h}x{h}: grouped {counts['grouped']:.0f}, block-diagonal "
          f"{counts['block']:.0f} instructions")
    assert counts["grouped"] * 10 < counts["block"]
    assert counts["grouped"] < 4 * c * h * h * 9  # under 4 instructions per grouped MAC


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("make, tensors", [(_depthwise_graph, {"d1", "d2", "p"}),
                                           (_thr_graph, {"d", "t"})])
def test_every_tensor_on_the_device_equals_fixed_point_golden(tmp_path, make, tensors):
    """The debug firmware (every buffer kept, thresholds unfused) under unicorn: the grouped
    accumulators and every other tensor equal golden.run_all."""
    ir = make(5)
    assert tensors <= assert_device_tensors_bit_exact(ir, _inputs(ir, 4, seed=6),
                                                      tmp_path / "debug")
