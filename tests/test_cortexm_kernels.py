"""Cortex-M backend, kernel by kernel: each TVMScript kernel, emitted as plain C and compiled
with gcc -Wall -Wextra -Werror -std=c99 -pedantic, equals a NumPy reference (the golden
model's own functions where one exists) on random operands, ragged sizes and edge values.
Also the pieces around the kernels: TVM stripping, popcount lowering, threshold tables at
tau - 1 / tau / tau + 1, the arena planner.
"""

from __future__ import annotations

import ctypes
import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from tvm.script import tirx as T

from edge_sdk import bitpack, golden
from edge_sdk.converters.cortexm import arena, layout
from edge_sdk.converters.cortexm.geometry import Window
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.kernels_conv import binary_conv, int_conv
from edge_sdk.converters.cortexm.kernels_copy import copy_int, unpack_bits
from edge_sdk.converters.cortexm.kernels_dense import binary_dense, int_dense
from edge_sdk.converters.cortexm.kernels_dense_t import binary_dense_t, transposed_weights
from edge_sdk.converters.cortexm.kernels_pool import pool_bits, pool_int
from edge_sdk.converters.cortexm.kernels_threshold import Epilogue, threshold_pack
from edge_sdk.converters.cortexm.tir_to_c import Kernel, Param, to_c
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import conv_out
from edge_sdk.thresholds import apply_threshold

TRIALS = 8
_names = itertools.count()


def _name() -> str:
    return f"tk{next(_names)}"


# ---------------------------------------------------------------------------- operands
def packed(values: np.ndarray, mask: bool) -> np.ndarray:
    """int {-1, 0, +1} [..., C] -> sign plane (+ mask plane) words, flattened."""
    sign = bitpack.pack_bits(values > 0).ravel()
    if not mask:
        return sign
    return np.concatenate([sign, bitpack.pack_bits(values != 0).ravel()])


def pm(rng, shape, ternary: bool) -> np.ndarray:
    v = rng.choice([-1, 0, 1] if ternary else [-1, 1], size=shape).astype(np.int8)
    if ternary:
        v.flat[0] = 0
    return v


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    return a.ctypes.data_as(ctypes.c_void_p)


# ---------------------------------------------------------------------------- cases
# Each case: a kernel factory make(name) and a check(fn, rng) that calls the kernel on random
# operands. Kernels are made (TVMScript parsing, ~0.15 s for the Harley-Seal ones) only for
# the cases a session runs: slow cases go to their own library.
@dataclass(frozen=True)
class Case:
    label: str
    name: str
    make: Callable[[str], Kernel]
    check: Callable
    slow: bool


CASES: list[Case] = []


def case(label: str, make: Callable[[str], Kernel], slow: bool = False):
    def register(check):
        CASES.append(Case(label, _name(), make, check, slow))
        return check

    return register


def dense_case(rows: int, k: int, a_mask: bool, w_mask: bool) -> None:
    words = bitpack.n_words(k)

    @case(f"dense-{rows}x{k}-a{int(a_mask)}w{int(w_mask)}",
          lambda n: binary_dense(n, rows, words, k, a_mask, w_mask))
    def check(fn, rng):
        a, w = pm(rng, (k,), a_mask), pm(rng, (rows, k), w_mask)
        y = np.zeros(rows, np.int32)
        fn(ptr(packed(a, a_mask)), ptr(packed(w, w_mask)), ptr(y))
        np.testing.assert_array_equal(y, w.astype(np.int64) @ a)


# words: 0 Harley-Seal blocks, exactly 1, blocks + tail, 1024x1024-like depth
for rows, k, am, wm in [(3, 1, False, False), (5, 150, False, False), (4, 256, False, False),
                        (6, 600, False, False), (2, 1024, False, False), (4, 77, False, True),
                        (4, 300, True, False), (3, 300, True, True), (2, 40, True, True)]:
    dense_case(rows, k, am, wm)


def dense_extreme_case(k: int) -> None:
    """Rows that disagree with `a` everywhere (every XOR word all ones: the largest count the
    carry-save levels and the shared SWAR nibble/byte groups must hold), agree everywhere,
    disagree but for one position, and random; K from straight-line chunks plus tails."""
    words = bitpack.n_words(k)

    @case(f"dense-extreme-{k}", lambda n: binary_dense(n, 4, words, k, False, False))
    def check(fn, rng):
        a = pm(rng, (k,), False)
        w = np.stack([-a, a, -a, pm(rng, (k,), False)])
        w[2, k // 2] = a[k // 2]
        y = np.zeros(4, np.int32)
        fn(ptr(packed(a, False)), ptr(packed(w, False)), ptr(y))
        np.testing.assert_array_equal(y, w.astype(np.int64) @ a)
        assert y[0] == -k and y[1] == k


# one word, one chunk less a word, exactly one chunk, a chunk + 1 ragged word, 2 chunks + 6
for _k in (32, 31 * 32, 1024, 1024 + 17, 2 * 1024 + 6 * 32):
    dense_extreme_case(_k)


def transposed_case(rows: int, k: int, pixels: int = 1) -> None:
    """The transposed dense (kernels_dense_t): ragged row blocks and words, activations that
    are all +1 / all -1 / exactly balanced (the visit list switches to the rarer half), and a
    packed input with channel padding (pixels > 1: columns scattered as a flattened map)."""
    channels = -(-k // pixels)
    cw = bitpack.n_words(channels)
    words = pixels * cw
    src = layout.Storage("b", layout.BITS, k, channels, pixels, False)

    @case(f"dense-t-{rows}x{k}-p{pixels}", lambda n: binary_dense_t(n, rows, words, k))
    def check(fn, rng):
        w = pm(rng, (rows, k), False)
        pos = layout.dense_bits_positions(k, src)
        wt = transposed_weights(w, pos, words)
        for a in (pm(rng, (k,), False), np.ones(k, np.int8), -np.ones(k, np.int8),
                  np.where(np.arange(k) < k // 2, 1, -1).astype(np.int8)):
            bits = np.zeros(words * 32, bool)
            bits[pos] = a > 0
            y = np.zeros(rows, np.int32)
            fn(ptr(bitpack.pack_bits(bits).ravel()), ptr(wt), ptr(y))
            np.testing.assert_array_equal(y, w.astype(np.int64) @ a)


for _rows, _k, _p in [(1, 1, 1), (33, 260, 1), (64, 1024, 1), (40, 70, 1), (32, 31, 1),
                      (70, 300, 3), (5, 17 * 4, 4)]:
    transposed_case(_rows, _k, _p)


def int_dense_case(rows: int, k: int, dtype: str, w_mask: bool) -> None:
    @case(f"int-dense-{rows}x{k}-{dtype}-w{int(w_mask)}",
          lambda n: int_dense(n, rows, k, dtype, w_mask))
    def check(fn, rng):
        info = np.iinfo(dtype)
        lim = min(info.max, 2**20)
        x = rng.integers(-lim, lim + 1, size=k).astype(dtype)
        x[0] = max(info.min, -lim)
        w = pm(rng, (rows, k), w_mask)
        y = np.zeros(rows, np.int32)
        fn(ptr(x), ptr(packed(w, w_mask)), ptr(y))
        np.testing.assert_array_equal(y, w.astype(np.int64) @ x.astype(np.int64))


for rows, k, dt, wm in [(5, 40, "int8", False), (3, 64, "int16", True), (4, 100, "int32", False),
                        (2, 7, "int8", True), (3, 32, "int16", False)]:
    int_dense_case(rows, k, dt, wm)


def random_window(rng, o=None, pool=False) -> tuple[Window, tuple[int, int, int, int]]:
    while True:
        c, h, w = (int(v) for v in rng.integers(1, 8, size=3))
        if not pool:
            c = int(rng.integers(1, 70))
        kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 3, size=2))
        dh, dw = (1, 1) if pool else tuple(int(v) for v in rng.integers(1, 3, size=2))
        if pool:
            pads = (int(rng.integers(kh)), int(rng.integers(kw)), int(rng.integers(kh)),
                    int(rng.integers(kw)))
        else:
            pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
        oh = conv_out(h, kh, sh, pads[0], pads[2], dh)
        ow = conv_out(w, kw, sw, pads[1], pads[3], dw)
        if oh >= 1 and ow >= 1:
            out = c if pool else (o or int(rng.integers(1, 6)))
            return Window(c, h, w, out, kh, kw, sh, sw, pads[0], pads[1], dh, dw, oh, ow), pads


def conv_layer(g: Window, pads, w: np.ndarray) -> L.Conv2d:
    return L.Conv2d("c", ["x"], "y", weights=L.IntWeights(w.reshape(g.o, -1)), in_channels=g.c,
                    kernel=(g.kh, g.kw), strides=(g.sh, g.sw), pads=pads,
                    dilations=(g.dh, g.dw))


def conv_case(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g, pads = random_window(rng)
    a_mask, w_mask = bool(seed & 1), bool(seed & 2)

    @case(f"conv-{seed}", lambda n: binary_conv(n, g, a_mask, w_mask), slow=seed >= 6)
    def check(fn, rng):
        x = pm(rng, (1, g.c, g.h, g.w), a_mask)
        w = pm(rng, (g.o, g.c, g.kh, g.kw), w_mask)
        ref = golden.conv2d(x, conv_layer(g, pads, w), "ternary" if a_mask else "bipolar")
        y = np.zeros(ref.size, np.int32)
        fn(ptr(packed(x[0].transpose(1, 2, 0), a_mask)),
           ptr(layout.conv_bits_weights(w.reshape(g.o, -1), g.c, g.kh, g.kw)), ptr(y))
        np.testing.assert_array_equal(y, ref.ravel())

    if not (a_mask or w_mask):
        g1, pads1 = random_window(rng)

        @case(f"conv-pad1-{seed}", lambda n: binary_conv(n, g1, False, False, pad_one=True),
              slow=seed >= 6)
        def check_pad_one(fn, rng):
            """Larq's pad_values=1: padded taps are +1 inputs (golden: Conv2d.pad_value=1)."""
            x = pm(rng, (1, g1.c, g1.h, g1.w), False)
            w = pm(rng, (g1.o, g1.c, g1.kh, g1.kw), False)
            layer = conv_layer(g1, pads1, w)
            layer.pad_value = 1
            ref = golden.conv2d(x, layer, "bipolar")
            y = np.zeros(ref.size, np.int32)
            fn(ptr(packed(x[0].transpose(1, 2, 0), False)),
               ptr(layout.conv_bits_weights(w.reshape(g1.o, -1), g1.c, g1.kh, g1.kw)), ptr(y))
            np.testing.assert_array_equal(y, ref.ravel())

    g2, pads2 = random_window(rng)
    dtype = ("int8", "int16", "int32")[seed % 3]

    @case(f"int-conv-{seed}", lambda n: int_conv(n, g2, dtype, w_mask), slow=seed >= 6)
    def check_int(fn, rng):
        x = rng.integers(-100, 101, size=(1, g2.c, g2.h, g2.w))
        w = pm(rng, (g2.o, g2.c, g2.kh, g2.kw), w_mask)
        ref = golden.conv2d(x, conv_layer(g2, pads2, w), "int")
        y = np.zeros(ref.size, np.int32)
        fn(ptr(x.astype(dtype).ravel()), ptr(layout.int_input_weights(w.reshape(g2.o, -1))),
           ptr(y))
        np.testing.assert_array_equal(y, ref.ravel())


for seed in range(12):
    conv_case(seed)


def threshold_case(channels: int, pixels: int, dtype: str, flip: bool, zero: bool) -> None:
    @case(f"threshold-{channels}x{pixels}-{dtype}-f{int(flip)}z{int(zero)}",
          lambda n: threshold_pack(n, channels, pixels, dtype, flip, zero))
    def check(fn, rng):
        tau = rng.integers(-20, 21, size=channels)
        # every accumulator at tau - 1, tau, tau + 1 or far away
        x = (tau[None, :, None] + rng.integers(-1, 2, size=(1, channels, pixels))).astype(np.int64)
        x[0, :, 0] = rng.integers(-40, 41, size=channels)
        fl = (rng.random(channels) < 0.5) if flip else np.zeros(channels, bool)
        z = (rng.random(channels) < 0.6) if zero else np.zeros(channels, bool)
        if zero:
            z[0] = True
        if flip:
            fl[0] = True
        layer = L.Threshold("t", ["x"], "y", tau=tau, flip=fl, zero=z)
        tab, any_flip, any_zero = layout.threshold_table(layer, -40, 40)
        assert (any_flip, any_zero) == (flip, zero)
        ref = apply_threshold(x, tau, fl, z)[0]  # [C, P]
        expect = packed(ref.T, zero)
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(x[0].astype(dtype).ravel()), ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)


for args in [(10, 3, "int32", False, False), (33, 2, "int16", True, False),
             (64, 1, "int32", False, True), (70, 2, "int8", True, True), (1, 5, "int32", True, True)]:
    threshold_case(*args)


def pool_case(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    g, pads = random_window(rng, pool=True)
    mask = bool(seed & 1)

    def layer(sel=None) -> L.MaxPool:
        return L.MaxPool("p", ["x"], "y", kernel=(g.kh, g.kw), strides=(g.sh, g.sw), pads=pads,
                         select_min=sel)

    @case(f"pool-bits-{seed}", lambda n: pool_bits(n, g, mask))
    def check(fn, rng):
        x = pm(rng, (1, g.c, g.h, g.w), mask)
        ref = golden.maxpool(x, layer())[0]
        expect = packed(ref.transpose(1, 2, 0), mask)
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(packed(x[0].transpose(1, 2, 0), mask)), ptr(y))
        np.testing.assert_array_equal(y, expect)

    dtype = ("int8", "int16", "int32")[seed % 3]

    @case(f"pool-int-{seed}", lambda n: pool_int(n, g, dtype, mask))
    def check_int(fn, rng):
        x = rng.integers(-100, 101, size=(1, g.c, g.h, g.w)).astype(dtype)
        sel = (rng.random(g.c) < 0.5) if mask else None
        ref = golden.maxpool(x, layer(sel)).astype(np.int32).ravel()
        y = np.zeros(ref.size, np.int32)
        if mask:
            fn(ptr(x), ptr(np.where(sel, -1, 1).astype(np.int32)), ptr(y))
        else:
            fn(ptr(x), ptr(y))
        np.testing.assert_array_equal(y, ref)


for seed in range(8):
    pool_case(seed)


def fused_cases(seed: int) -> None:
    """Dense/Conv with the threshold fused: accumulators packed straight into bits."""
    rng = np.random.default_rng(200 + seed)
    flip, zero = bool(seed & 1), bool(seed & 2)
    a_mask, w_mask = bool(seed & 4), seed % 3 == 0
    g, pads = random_window(rng)
    if seed % 2:
        g, pads = random_window(rng, o=int(rng.integers(30, 70)))
    rows, k = int(rng.integers(1, 70)), int(rng.integers(1, 300))

    def thresholds(channels, acc):
        """Thresholds placed on the accumulators so that ties and both sides occur."""
        tau = acc.reshape(channels, -1)[:, 0] + rng.integers(-1, 2, size=channels)
        fl = (rng.random(channels) < 0.5) if flip else np.zeros(channels, bool)
        z = (rng.random(channels) < 0.7) if zero else np.zeros(channels, bool)
        z[0], fl[0] = zero, flip  # the table layout follows "any flip" / "any zero"
        layer = L.Threshold("t", ["x"], "y", tau=tau, flip=fl, zero=z)
        lim = int(np.abs(acc).max()) + 2
        tab, _, any_zero = layout.threshold_table(layer, -lim, lim)
        ref = apply_threshold(acc.reshape(1, channels, -1), tau, fl, z)[0]  # [C, P]
        return tab, packed(ref.T, any_zero), any_zero

    def ep(channels):
        return Epilogue(channels, flip, zero)

    slow = seed >= 4

    @case(f"fused-dense-{seed}",
          lambda n: binary_dense(n, rows, bitpack.n_words(k), k, a_mask, w_mask, ep(rows)), slow)
    def check_dense(fn, rng):
        a, w = pm(rng, (k,), a_mask), pm(rng, (rows, k), w_mask)
        tab, expect, _ = thresholds(rows, w.astype(np.int64) @ a)
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(packed(a, a_mask)), ptr(packed(w, w_mask)), ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)

    @case(f"fused-dense-t-{seed}",
          lambda n: binary_dense_t(n, rows, bitpack.n_words(k), k, ep(rows)), slow)
    def check_dense_t(fn, rng):
        a, w = pm(rng, (k,), False), pm(rng, (rows, k), False)
        tab, expect, _ = thresholds(rows, w.astype(np.int64) @ a)
        y = np.zeros(expect.size, np.uint32)
        wt = transposed_weights(w, np.arange(k), bitpack.n_words(k))
        fn(ptr(packed(a, False)), ptr(wt), ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)

    @case(f"fused-int-dense-{seed}", lambda n: int_dense(n, rows, k, "int16", w_mask, ep(rows)),
          slow)
    def check_int_dense(fn, rng):
        x = rng.integers(-300, 301, size=k).astype(np.int16)
        w = pm(rng, (rows, k), w_mask)
        tab, expect, _ = thresholds(rows, w.astype(np.int64) @ x)
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(x), ptr(packed(w, w_mask)), ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)

    @case(f"fused-conv-{seed}", lambda n: binary_conv(n, g, a_mask, w_mask, ep(g.o)), slow)
    def check_conv(fn, rng):
        x = pm(rng, (1, g.c, g.h, g.w), a_mask)
        w = pm(rng, (g.o, g.c, g.kh, g.kw), w_mask)
        acc = golden.conv2d(x, conv_layer(g, pads, w), "ternary" if a_mask else "bipolar")
        tab, expect, _ = thresholds(g.o, acc[0])
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(packed(x[0].transpose(1, 2, 0), a_mask)),
           ptr(layout.conv_bits_weights(w.reshape(g.o, -1), g.c, g.kh, g.kw)), ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)

    @case(f"fused-int-conv-{seed}", lambda n: int_conv(n, g, "int8", w_mask, ep(g.o)), slow)
    def check_int_conv(fn, rng):
        x = rng.integers(-100, 101, size=(1, g.c, g.h, g.w))
        w = pm(rng, (g.o, g.c, g.kh, g.kw), w_mask)
        acc = golden.conv2d(x, conv_layer(g, pads, w), "int")
        tab, expect, _ = thresholds(g.o, acc[0])
        y = np.zeros(expect.size, np.uint32)
        fn(ptr(x.astype(np.int8).ravel()), ptr(layout.int_input_weights(w.reshape(g.o, -1))),
           ptr(tab), ptr(y))
        np.testing.assert_array_equal(y, expect)


for seed in range(8):
    fused_cases(seed)


@case("copy", lambda n: copy_int(n, 9, "int16"))
def check_copy(fn, rng):
    x = rng.integers(-32768, 32768, size=9).astype(np.int16)
    y = np.zeros(9, np.int32)
    fn(ptr(x), ptr(y))
    np.testing.assert_array_equal(y, x)


for _c, _p, _m in [(40, 3, False), (33, 2, True)]:
    @case(f"unpack-{_c}x{_p}-{int(_m)}", lambda n, c=_c, p=_p, m=_m: unpack_bits(n, c, p, m))
    def check_unpack(fn, rng, c=_c, p=_p, m=_m):
        v = pm(rng, (c, p), m)
        y = np.zeros(c * p, np.int32)
        fn(ptr(packed(v.T, m)), ptr(y))
        np.testing.assert_array_equal(y, v.ravel())


def _popcount_kernel(name: str) -> Kernel:
    @T.prim_func
    def func(a: T.handle("uint32"), y: T.handle("int32")):
        A = T.decl_buffer((64,), "uint32", data=a)
        Y = T.decl_buffer((64,), "int32", data=y)
        for i in range(64):
            Y[i] = T.Cast("int32", T.popcount(A[i]))

    return Kernel(name, func, (Param("a", "in"), Param("y", "out")))


def _check_popcount(fn, rng):
    a = rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32)
    a[:4] = [0, 0xFFFFFFFF, 0x80000000, 1]
    y = np.zeros(64, np.int32)
    fn(ptr(a), ptr(y))
    np.testing.assert_array_equal(y, np.bitwise_count(a))


case("popcount-swar", _popcount_kernel)(_check_popcount)


# ---------------------------------------------------------------------------- library
def _library(tmp_path_factory, slow: bool) -> ctypes.CDLL:
    """The kernels of the fast (or slow) cases, plus a builtin-popcount kernel, in one library."""
    sources = [to_c(c.make(c.name)) for c in CASES if c.slow == slow]
    sources.append(to_c(_popcount_kernel("tk_pc_builtin"), popcount="builtin"))
    text = "#include <stdint.h>\n\n" + "\n".join(sources)
    return compile_shared({"kernels.c": text}, tmp_path_factory.mktemp("kernels"))


@pytest.fixture(scope="module")
def fast_lib(tmp_path_factory):
    return _library(tmp_path_factory, slow=False)


@pytest.fixture(scope="module")
def slow_lib(tmp_path_factory):
    return _library(tmp_path_factory, slow=True)


@pytest.mark.parametrize("c", [pytest.param(c, id=c.label, marks=(pytest.mark.slow,) * c.slow)
                               for c in CASES])
def test_kernel(request, c: Case):
    lib = request.getfixturevalue("slow_lib" if c.slow else "fast_lib")
    rng = np.random.default_rng(zlib.crc32(c.label.encode()))
    for _ in range(TRIALS):
        c.check(getattr(lib, c.name), rng)


def test_builtin_popcount(fast_lib):
    _check_popcount(fast_lib.tk_pc_builtin, np.random.default_rng(1))


# ---------------------------------------------------------------------------- C text
def test_plain_c_signature():
    text = to_c(binary_dense("edge_kx", 4, 3, 70, True, False))
    head = text.partition("{")[0]
    assert head.strip() == ("void edge_kx(const uint32_t* restrict a, const uint32_t* restrict w,"
                            " int32_t* restrict y)")
    assert "TVM" not in text and "#include" not in text


def test_swar_popcount_is_default():
    k = _popcount_kernel("pc")
    assert "__builtin_popcount" not in to_c(k)
    assert str(0x55555555) in to_c(k)  # the SWAR masks
    assert "__builtin_popcount(" in to_c(k, popcount="builtin")


def test_harley_seal_structure():
    """K = 1024: each row is one straight-line 32-word carry-save chunk (no block loop, no
    per-word popcount, no tail), its level words counted in 3 shared SWAR groups."""
    text = to_c(binary_dense("hs", 1024, 32, 1024, False, False))
    assert "blk" not in text and "for (int32_t j" not in text
    assert "pc_a" not in text  # no per-word popcount: the SWAR steps are shared
    assert text.count(str(0x01010101)) == 3  # one horizontal byte sum per group
    assert "a[31]" in text and "a[32]" not in text  # every word at a constant offset
    # longer rows loop over 32-word chunks and finish with one straight-line tail
    text = to_c(binary_dense("hs2", 4, 70, 2240, False, False))
    assert "for (int32_t c = 0; c < 2; ++c)" in text and "a[69]" in text


# ---------------------------------------------------------------------------- planning pieces
def test_threshold_table_clamps_and_drops_unreachable_ties():
    layer = L.Threshold("t", ["x"], "y", tau=np.array([5, 100, -100, 7]),
                        flip=np.array([False, False, True, True]),
                        zero=np.array([True, True, True, False]))
    tab, flip, zero = layout.threshold_table(layer, -10, 10)
    assert flip and zero
    # thr = s * clamp(tau): 5, 11, -(-11), -7; signs; zero flags: only channel 0 reachable
    np.testing.assert_array_equal(tab[:4], [5, 11, 11, -7])
    np.testing.assert_array_equal(tab[4:8], [1, 1, -1, -1])
    assert tab[8] == 0b0001
    x = np.arange(-10, 11)[None, None, :].repeat(4, axis=1)  # [1, C=4, 21]
    ref = apply_threshold(x, layer.tau, layer.flip, layer.zero)
    s, thr = tab[4:8, None], tab[:4, None]
    v = x[0] * s
    mine = np.where(v >= thr, 1, -1)
    mine[(v == thr - 1) & (np.array([1, 0, 0, 0])[:, None] == 1)] = 0
    np.testing.assert_array_equal(mine, ref[0])


def test_arena_never_overlaps_live_buffers():
    rng = np.random.default_rng(0)
    for _ in range(50):
        bufs = []
        for i in range(int(rng.integers(1, 12))):
            first = int(rng.integers(0, 10))
            bufs.append(arena.Live(f"b{i}", int(rng.integers(1, 100)), first,
                                   first + int(rng.integers(0, 4))))
        offsets, size = arena.plan(bufs)
        for a, b in itertools.combinations(bufs, 2):
            if a.first <= b.last and b.first <= a.last:
                ra = range(offsets[a.name], offsets[a.name] + a.words)
                rb = range(offsets[b.name], offsets[b.name] + b.words)
                assert not set(ra) & set(rb)
        assert size == max(offsets[b.name] + b.words for b in bufs)


def test_arena_chain_is_ping_pong():
    sizes = [128, 4, 128, 4, 10]
    bufs = [arena.Live(f"b{i}", s, i, i + 1) for i, s in enumerate(sizes)]
    _, size = arena.plan(bufs)
    assert size == 132


def test_dense_weights_follow_packed_layout():
    """Dense after Flatten of a [C, H, W] ±1 map: permuted columns give the IR's dot product."""
    rng = np.random.default_rng(3)
    c, h, w, rows = 37, 2, 3, 4
    x = pm(rng, (c, h, w), True)
    wt = pm(rng, (rows, c * h * w), True)
    src = layout.Storage("b0", layout.BITS, c * h * w, c, h * w, True)
    words = layout.dense_bits_weights(wt, src)
    a = packed(x.reshape(c, h * w).T, True)
    plane = src.plane_words
    dot = bitpack.popcount_dot(a[None, :plane], a[None, plane:],
                               words[: rows * plane].reshape(rows, plane),
                               words[rows * plane:].reshape(rows, plane), plane * 32)
    np.testing.assert_array_equal(dot[0], wt.astype(np.int64) @ x.ravel())
