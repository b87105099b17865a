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
