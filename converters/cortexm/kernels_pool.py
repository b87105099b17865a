"""Max-pool kernels in TVMScript: on packed bits, and on integer accumulators.

Padding never wins (ONNX), so padded taps are skipped; a window always holds a real tap
(the planner refuses pads >= kernel).

Bits ([H][W][CW] words, sign plane then optional mask plane): max over ±1 is OR of the sign
bits; with zeros ({-1, 0, +1}, sign bit 0 and mask bit 0 for a 0) the max is +1 if any sign
bit is set, else 0 if any element is 0, else -1: out sign = OR(sign), out mask =
OR(sign) | AND(mask). Pad bits stay 0 in both planes.

Integers ([C][H][W] C order, int8/16/32 in, int32 out): max, or min on the channels with
`select_min` (a decreasing per-channel transform was commuted past the pool), computed as
s * max(s * x) with s = -1 on those channels; table `t` holds s[C] (int32, flash).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import Window
from .tir_to_c import Kernel, Param

# Below every accumulator the planner accepts (|x| < 2**31 - 1), so padding never wins.
_FLOOR = -(2**31 - 1)


def pool_bits(name: str, g: Window, mask: bool) -> Kernel:
    cw = g.cw
    a_plane = g.h * g.w * cw
    y_plane = g.oh * g.ow * cw
    planes = 2 if mask else 1

    @T.macro
    def tap(A, acc, pa):
        acc[0] = acc[0] | A[pa]
        if mask:
            acc[1] = acc[1] & A[a_plane + pa]

    @T.prim_func
    def func(a: T.handle("uint32"), y: T.handle("uint32")):
        A = T.decl_buffer((a_plane * planes,), "uint32", data=a)
        Y = T.decl_buffer((y_plane * planes,), "uint32", data=y)
        for oh in range(g.oh):
            for ow in range(g.ow):
                for j in range(cw):
                    acc = T.alloc_buffer((planes,), "uint32")  # OR of signs, AND of masks
                    acc[0] = T.uint32(0)
                    if mask:
                        acc[1] = T.uint32(0xFFFFFFFF)
                    for r in range(g.kh):
                        for s in range(g.kw):
                            ih = T.bind(oh * g.sh - g.pt + r)
                            iw = T.bind(ow * g.sw - g.pl + s)
                            if g.bounded:
                                if 0 <= ih < g.h and 0 <= iw < g.w:
                                    tap(A, acc, (ih * g.w + iw) * cw + j)
                            else:
                                tap(A, acc, (ih * g.w + iw) * cw + j)
                    Y[(oh * g.ow + ow) * cw + j] = acc[0]
                    if mask:
                        Y[y_plane + (oh * g.ow + ow) * cw + j] = acc[0] | acc[1]

    return Kernel(name, func, (Param("a", "in"), Param("y", "out")))


def pool_int(name: str, g: Window, in_dtype: str, select_min: bool) -> Kernel:
    if select_min:
        return Kernel(name, _pool_int_signed(g, in_dtype),
                      (Param("x", "in"), Param("t", "const"), Param("y", "out")))
    return Kernel(name, _pool_int_max(g, in_dtype), (Param("x", "in"), Param("y", "out")))


def _pool_int_max(g: Window, in_dtype: str):
    @T.macro
    def tap(X, best, xi):
        best[0] = T.max(best[0], T.Cast("int32", X[xi]))

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((g.c * g.h * g.w,), in_dtype, data=x)
        Y = T.decl_buffer((g.c * g.oh * g.ow,), "int32", data=y)
        for c in range(g.c):
            for oh in range(g.oh):
                for ow in range(g.ow):
                    best = T.alloc_buffer((1,), "int32")
                    best[0] = _FLOOR
                    for r in range(g.kh):
                        for s in range(g.kw):
                            ih = T.bind(oh * g.sh - g.pt + r)
                            iw = T.bind(ow * g.sw - g.pl + s)
                            if g.bounded:
                                if 0 <= ih < g.h and 0 <= iw < g.w:
                                    tap(X, best, (c * g.h + ih) * g.w + iw)
                            else:
                                tap(X, best, (c * g.h + ih) * g.w + iw)
                    Y[(c * g.oh + oh) * g.ow + ow] = best[0]

    return func


def _pool_int_signed(g: Window, in_dtype: str):
    @T.macro
    def tap(X, Tb, best, xi, c):
        best[0] = T.max(best[0], T.Cast("int32", X[xi]) * Tb[c])

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((g.c * g.h * g.w,), in_dtype, data=x)
        Tb = T.decl_buffer((g.c,), "int32", data=t)
        Y = T.decl_buffer((g.c * g.oh * g.ow,), "int32", data=y)
        for c in range(g.c):
            for oh in range(g.oh):
                for ow in range(g.ow):
                    best = T.alloc_buffer((1,), "int32")
                    best[0] = _FLOOR
                    for r in range(g.kh):
                        for s in range(g.kw):
                            ih = T.bind(oh * g.sh - g.pt + r)
                            iw = T.bind(ow * g.sw - g.pl + s)
                            if g.bounded:
                                if 0 <= ih < g.h and 0 <= iw < g.w:
                                    tap(X, Tb, best, (c * g.h + ih) * g.w + iw, c)
                            else:
                                tap(X, Tb, best, (c * g.h + ih) * g.w + iw, c)
                    Y[(c * g.oh + oh) * g.ow + ow] = best[0] * Tb[c]

    return func
