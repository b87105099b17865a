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

Every pool here and the windowed average (kernels_fixed.py) walks its window with one macro,
`window_taps`, and the integer ones share the kernel around it, `window_fold`, so the bounds
test on padded taps and the table / no-table signatures are written once.
"""

from __future__ import annotations

from collections.abc import Callable

from tvm.ir.expr import Expr
from tvm.script import tirx as T

from .geometry import Window
from .tir_to_c import Kernel, Param

# Below every accumulator the planner accepts (|x| < 2**31 - 1), so padding never wins.
_FLOOR = -(2**31 - 1)


def window_taps(g: Window, tap: Callable[..., None]) -> Callable[..., None]:
    """TVMScript macro `taps(oh, ow, *ctx)`: runs the macro `tap(ih, iw, *ctx)` on every tap
    (ih, iw) of output (oh, ow)'s window that lies inside the map. Padded taps are skipped, with
    a bounds test only when the layer pads (`g.bounded`). `ctx` carries the caller's buffers and
    loop indices, which a macro made outside the prim_func cannot close over. The window loop
    of every pooling kernel (max on bits and integers here, average in kernels_fixed.py)."""

    @T.macro
    def taps(oh, ow, *ctx):
        for r in range(g.kh):
            for s in range(g.kw):
                ih = T.bind(oh * g.sh - g.pt + r)
                iw = T.bind(ow * g.sw - g.pl + s)
                if g.bounded:
                    if 0 <= ih < g.h and 0 <= iw < g.w:
                        tap(ih, iw, *ctx)
                else:
                    tap(ih, iw, *ctx)

    return taps


def window_fold(name: str, g: Window, in_dtype: str, acc_dtype: str, init: int | Expr,
                tap: Callable[..., None], finish: Callable[..., Expr],
                table: int | None) -> Kernel:
    """A pooling kernel on integers, x [C][H][W] of `in_dtype` in, y [C][OH][OW] int32 out:
    per channel c and output (oh, ow) a one-element `acc_dtype` accumulator starts at `init`,
    the macro `tap(ih, iw, X, Tb, acc, c)` folds in every tap inside the map (`window_taps`),
    and y = finish(acc[0], Tb, c, oh, ow). Tb is a flash table t of `table` int32 words or,
    when `table` is None, no table at all (Tb None, and the C function takes no `t`): a
    TVMScript signature cannot be optional, so the two forms live here, once for every pool."""
    taps = window_taps(g, tap)

    @T.macro
    def body(X, Tb, Y):
        for c in range(g.c):
            for oh in range(g.oh):
                for ow in range(g.ow):
                    acc = T.alloc_buffer((1,), acc_dtype)
                    acc[0] = init
                    taps(oh, ow, X, Tb, acc, c)
                    Y[(c * g.oh + oh) * g.ow + ow] = finish(acc[0], Tb, c, oh, ow)

    if table is not None:
        @T.prim_func
        def func_t(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
            X = T.decl_buffer((g.c * g.h * g.w,), in_dtype, data=x)
            Tb = T.decl_buffer((table,), "int32", data=t)
            Y = T.decl_buffer((g.c * g.oh * g.ow,), "int32", data=y)
            body(X, Tb, Y)

        return Kernel(name, func_t, (Param("x", "in"), Param("t", "const"), Param("y", "out")))

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((g.c * g.h * g.w,), in_dtype, data=x)
        Y = T.decl_buffer((g.c * g.oh * g.ow,), "int32", data=y)
        body(X, None, Y)

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def pool_bits(name: str, g: Window, mask: bool) -> Kernel:
    cw = g.cw
    a_plane = g.h * g.w * cw
    y_plane = g.oh * g.ow * cw
    planes = 2 if mask else 1

    @T.macro
    def tap(ih, iw, A, acc, j):
        acc[0] = acc[0] | A[(ih * g.w + iw) * cw + j]
        if mask:
            acc[1] = acc[1] & A[a_plane + (ih * g.w + iw) * cw + j]

    taps = window_taps(g, tap)

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
                    taps(oh, ow, A, acc, j)
                    Y[(oh * g.ow + ow) * cw + j] = acc[0]
                    if mask:
                        Y[y_plane + (oh * g.ow + ow) * cw + j] = acc[0] | acc[1]

    return Kernel(name, func, (Param("a", "in"), Param("y", "out")))


def pool_int(name: str, g: Window, in_dtype: str, select_min: bool) -> Kernel:
    def signed(v, Tb, c):
        """v times the channel's sign s_c (table t) when some channels pool with min."""
        return v * Tb[c] if select_min else v

    @T.macro
    def tap(ih, iw, X, Tb, best, c):
        best[0] = T.max(best[0], signed(T.Cast("int32", X[(c * g.h + ih) * g.w + iw]), Tb, c))

    def finish(best, Tb, c, oh, ow):
        return signed(best, Tb, c)

    return window_fold(name, g, in_dtype, "int32", _FLOOR, tap, finish,
                       g.c if select_min else None)
