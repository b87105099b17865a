"""8-bit layers in TVMScript (issue #11): the first conv and the last dense of QuickNet /
ReActNet-style networks, and the Quantize step that feeds a last layer.

Both linear kernels read integer data (the int8/int16 model input, int32 arena tensors, or
±1 maps unpacked to int32 first) and int8 weights, and accumulate x * w in int32: the
planner accepts a layer only when its accumulator bound (max row sum |w| * max |x|, the IR's
tensor facts) fits, so no partial sum can overflow. They compute exactly what
`golden.integer_dot` computes.

Weights: [O][ceil(K/4)] uint32 words, weight k of a row in byte k % 4 (bits 8*(k%4)..+7, two's
complement) of word k // 4, the IR's (c, kh, kw) column order, pad bytes 0 (`int8_words`).
A byte is sign-extended arithmetically, ((b ^ 128) - 128), so no implementation-defined
conversion is involved. Outputs as the other compute kernels (kernel_io.py): int32
accumulators, or bits through a fused threshold.

Grouped / depthwise convs (`int8_group_conv`, a GroupConv2d with 8-bit weights: TFLite int8 and
calibrated DEPTHWISE_CONV_2D, ONNX grouped 8-bit convs) keep each output's (C / groups) * KH * KW
weights only, same word layout, and sweep each output channel over the map with the interior
taps unchecked: a depthwise 3x3 costs ~3 Cortex-M4 instructions per MAC. The same layer as an
ordinary conv with block-diagonal weights does C times the MACs: 28x the instructions at 16
channels, 16x16 (measured with unicorn, tests/test_cortexm_int8_group.py).

Quantize (sdk/fixedpoint.py): q = clip(((x * M + 2**(S-1)) >> S) + z, lo, hi) - z, the product
in int64 (GCC's arithmetic `>>`, as kernels_fixed.py explains).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from .geometry import Window
from .kernel_io import outputs, params, wrap
from .kernels_threshold import Epilogue
from .tir_to_c import Kernel, Param


def int8_words(values: np.ndarray) -> np.ndarray:
    """int8 [O, K] -> uint32 [O * ceil(K/4)]: four weights per word, little end first."""
    rows, k = values.shape
    wpr = (k + 3) // 4
    padded = np.zeros((rows, wpr * 4), dtype=np.int64)
    padded[:, :k] = values
    b = (padded & 0xFF).reshape(rows, wpr, 4)
    words = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16) | (b[..., 3] << 24)
    return words.astype(np.uint32).ravel()


def _sext(word, lane: int):
    """int32 value of byte `lane` of the uint32 `word`, sign-extended."""
    b = T.Cast("int32", (word >> T.uint32(8 * lane)) & T.uint32(0xFF))
    return (b ^ 128) - 128


def int8_dense(name: str, rows: int, k: int, in_dtype: str, ep: Epilogue | None = None
               ) -> Kernel:
    """y[o] = sum_k x[k] * w[o, k] (int32), four weights per loaded word."""
    out = outputs(rows, 1, ep)
    fused, init, put, store, local = out.fused, out.init, out.put, out.store, out.local
    wpr = (k + 3) // 4
    full = k // 4
    tail = k % 4

    @T.macro
    def body(X, W, Tb, Y):
        if fused:
            out_bits = T.alloc_buffer((local,), "uint32")
            init(out_bits)
        acc = T.alloc_buffer((1,), "int32")
        for o in range(rows):
            acc[0] = 0
            for j in range(full):
                wd = T.bind(W[o * wpr + j])
                for t in T.unroll(4):
                    acc[0] = acc[0] + T.Cast("int32", X[j * 4 + t]) * _sext(wd, t)
            if tail > 0:
                wt = T.bind(W[o * wpr + full])
                for t in T.unroll(tail):
                    acc[0] = acc[0] + T.Cast("int32", X[full * 4 + t]) * _sext(wt, t)
            if fused:
                put(out_bits, Tb, o, acc[0])
            else:
                Y[o] = acc[0]
        if fused:
            store(Y, Tb, out_bits, 0, out.plane)

    return Kernel(name, wrap(body, out, in_dtype, k, rows * wpr), params(fused))


def int8_conv(name: str, g: Window, in_dtype: str, ep: Epilogue | None = None) -> Kernel:
    """Conv on integer [C][H][W] data: per output pixel the receptive field is gathered once
    into an int32 patch (padded taps and the pad to a multiple of 4 hold 0) shared by all O
    output channels, each then a dot product with its packed int8 row."""
    out = outputs(g.o, g.oh * g.ow, ep)
    fused, init, put, store = out.fused, out.init, out.put, out.store
    k = g.c * g.kh * g.kw
    wpr = (k + 3) // 4

    @T.macro
    def body(X, W, Tb, Y):
        for oh in range(g.oh):
            for ow in range(g.ow):
                if fused:
                    bits = T.alloc_buffer((out.local,), "uint32")
                    init(bits)
                patch = T.alloc_buffer((wpr * 4,), "int32")
                for kk in range(k, wpr * 4):
                    patch[kk] = 0
                for c in range(g.c):
                    for r in range(g.kh):
                        for s in range(g.kw):
                            ih = T.bind(oh * g.sh - g.pt + r * g.dh)
                            iw = T.bind(ow * g.sw - g.pl + s * g.dw)
                            kk = T.bind((c * g.kh + r) * g.kw + s)
                            if g.bounded:
                                if 0 <= ih < g.h and 0 <= iw < g.w:
                                    patch[kk] = T.Cast("int32", X[(c * g.h + ih) * g.w + iw])
                                else:
                                    patch[kk] = 0
                            else:
                                patch[kk] = T.Cast("int32", X[(c * g.h + ih) * g.w + iw])
                for o in range(g.o):
                    acc = T.alloc_buffer((1,), "int32")
                    acc[0] = 0
                    for j in range(wpr):
                        wd = T.bind(W[o * wpr + j])
                        for t in T.unroll(4):
                            acc[0] = acc[0] + patch[j * 4 + t] * _sext(wd, t)
                    if fused:
                        put(bits, Tb, o, acc[0])
                    else:
                        Y[(o * g.oh + oh) * g.ow + ow] = acc[0]
                if fused:
                    store(Y, Tb, bits, oh * g.ow + ow, out.plane)

    return Kernel(name, wrap(body, out, in_dtype, g.c * g.h * g.w, g.o * wpr), params(fused))


def quantize(name: str, n: int, in_dtype: str, mult: int, shift: int, zero_point: int,
             lo: int, hi: int) -> Kernel:
    """y = clip(((x * M + 2**(S-1)) >> S) + z, lo, hi) - z over n values (int64 inside)."""
    half = 1 << (shift - 1)

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Y = T.decl_buffer((n,), "int32", data=y)
        for i in range(n):
            v = T.bind(((T.Cast("int64", X[i]) * T.int64(mult) + T.int64(half))
                        >> T.int64(shift)) + T.int64(zero_point))
            c = T.bind(T.if_then_else(v > T.int64(hi), T.int64(hi),
                                      T.if_then_else(v < T.int64(lo), T.int64(lo), v)))
            Y[i] = T.Cast("int32", c - T.int64(zero_point))

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def _interior(n_out: int, size: int, k: int, stride: int, pad: int, dil: int
              ) -> tuple[int, int]:
    """[lo, hi) of the output positions along one axis whose k taps all fall inside the input
    (empty, lo == hi, when none do)."""
    lo = min(-(-pad // stride), n_out)  # first o with o * stride - pad >= 0
    last = size - 1 + pad - (k - 1) * dil  # o * stride <= last
    hi = min(last // stride + 1, n_out) if last >= 0 else 0
    return lo, max(lo, hi)


def int8_group_conv(name: str, g: Window, groups: int, in_dtype: str,
                    ep: Epilogue | None = None) -> Kernel:
    """Grouped (depthwise when g.c == groups) conv on integer [C][H][W] data, int8 weights
    [O][ceil(K/4)] words of K = (C / groups) * KH * KW, output o reading input channels
    (o // (O / groups)) * (C / groups) + i: out.size * K MACs, not the O * C * KH * KW of the
    block-diagonal ordinary conv.

    Padded taps hold 0. The output positions whose window stays inside the input (computed
    here: constant loop bounds) take unchecked taps; only the border tests each tap, and the
    load stays behind the test. Rows of up to 64 weights are unrolled whole (constant
    indices, so the C compiler keeps weights in registers and reuses loaded inputs between
    neighbouring pixels).

    int32 output: output-channel major, the [O][OH][OW] layout. A row's K weights are
    sign-extended once into a local array and swept over the whole map, so a depthwise 3x3
    pixel is 9 multiply-adds on inputs partly reused from the previous pixel.

    Fused threshold (`ep`): the bits of a pixel gather all O channels, so the sweep is pixel
    major, each output channel's sum made from the input and the packed weights directly
    (a group's inputs are few: nothing to share through a gathered patch).
    """
    out = outputs(g.o, g.oh * g.ow, ep)
    fused, init, put, store = out.fused, out.init, out.put, out.store
    cin = g.c // groups
    rows = g.o // groups
    k = cin * g.kh * g.kw
    wpr = (k + 3) // 4
    if g.bounded:
        h_lo, h_hi = _interior(g.oh, g.h, g.kh, g.sh, g.pt, g.dh)
        w_lo, w_hi = _interior(g.ow, g.w, g.kw, g.sw, g.pl, g.dw)
    else:
        h_lo, h_hi, w_lo, w_hi = 0, g.oh, 0, g.ow
    unroll_c = k <= 64

    def make_dot(checked: bool):
        """acc[0] += sum over the row's taps of x * weight(i, r, s); `weight` a macro."""

        @T.macro
        def tap(X, W, wv, acc, o, c0, oh, ow, i, r, s):
            ih = T.bind(oh * g.sh - g.pt + r * g.dh)
            iw = T.bind(ow * g.sw - g.pl + s * g.dw)
            kk = T.bind((i * g.kh + r) * g.kw + s)
            if checked:
                if 0 <= ih < g.h and 0 <= iw < g.w:
                    if fused:
                        acc[0] = acc[0] + T.Cast("int32", X[((c0 + i) * g.h + ih) * g.w + iw]) \
                            * _sext(W[o * wpr + kk // 4], kk % 4)
                    else:
                        acc[0] = acc[0] + T.Cast("int32", X[((c0 + i) * g.h + ih) * g.w + iw]) \
                            * wv[kk]
            else:
                if fused:
                    acc[0] = acc[0] + T.Cast("int32", X[((c0 + i) * g.h + ih) * g.w + iw]) \
                        * _sext(W[o * wpr + kk // 4], kk % 4)
                else:
                    acc[0] = acc[0] + T.Cast("int32", X[((c0 + i) * g.h + ih) * g.w + iw]) \
                        * wv[kk]

        @T.macro
        def dot(X, W, wv, acc, o, c0, oh, ow):
            acc[0] = 0
            if unroll_c:
                for i in T.unroll(cin):
                    for r in T.unroll(g.kh):
                        for s in T.unroll(g.kw):
                            tap(X, W, wv, acc, o, c0, oh, ow, i, r, s)
            else:
                for i in range(cin):
                    for r in T.unroll(g.kh):
                        for s in T.unroll(g.kw):
                            tap(X, W, wv, acc, o, c0, oh, ow, i, r, s)

        return dot

    def make_pixel(checked: bool):
        """One output pixel: row o's value (int32 output), or every channel's bit (fused)."""
        dot = make_dot(checked)

        @T.macro
        def pixel(X, W, Tb, Y, wv, o, oh, ow):
            acc = T.alloc_buffer((1,), "int32")
            if fused:
                bits = T.alloc_buffer((out.local,), "uint32")
                init(bits)
                for gr in range(groups):
                    for ro in range(rows):
                        dot(X, W, wv, acc, gr * rows + ro, gr * cin, oh, ow)
                        put(bits, Tb, gr * rows + ro, acc[0])
                store(Y, Tb, bits, oh * g.ow + ow, out.plane)
            else:
                dot(X, W, wv, acc, o, (o // rows) * cin, oh, ow)
                Y[(o * g.oh + oh) * g.ow + ow] = acc[0]

        return pixel

    inner, border = make_pixel(False), make_pixel(True)

    @T.macro
    def sweep(X, W, Tb, Y, wv, o):
        """Every output pixel, the interior ones unchecked."""
        for oh in range(h_lo):
            for ow in range(g.ow):
                border(X, W, Tb, Y, wv, o, oh, ow)
        for oh in range(h_lo, h_hi):
            for ow in range(w_lo):
                border(X, W, Tb, Y, wv, o, oh, ow)
            for ow in range(w_lo, w_hi):
                inner(X, W, Tb, Y, wv, o, oh, ow)
            for ow in range(w_hi, g.ow):
                border(X, W, Tb, Y, wv, o, oh, ow)
        for oh in range(h_hi, g.oh):
            for ow in range(g.ow):
                border(X, W, Tb, Y, wv, o, oh, ow)

    @T.macro
    def unpack_row(W, wv, o):
        if unroll_c:
            for j in T.unroll(wpr):
                wd = T.bind(W[o * wpr + j])
                for t in T.unroll(4):
                    wv[j * 4 + t] = _sext(wd, t)
        else:
            for j in range(wpr):
                wd = T.bind(W[o * wpr + j])
                for t in T.unroll(4):
                    wv[j * 4 + t] = _sext(wd, t)

    @T.macro
    def body(X, W, Tb, Y):
        if fused:
            sweep(X, W, Tb, Y, W, 0)  # `wv` unused: weights read packed
        else:
            wv = T.alloc_buffer((wpr * 4,), "int32")
            for o in range(g.o):
                unpack_row(W, wv, o)
                sweep(X, W, Tb, Y, wv, o)

    return Kernel(name, wrap(body, out, in_dtype, g.c * g.h * g.w, g.o * wpr), params(fused))
