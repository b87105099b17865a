"""Fixed-point kernels in TVMScript: the real-valued layers between binary layers (issue #11).

Every kernel computes exactly what `golden._run_fixed` computes with the rules of
sdk/fixedpoint.py, on int32 tensors in the IR's C order ([C][P], P = H*W, 1 for vectors):

- `requant`: y = (x * m_c + r_c) >> s, the product and sum in int64;
- `add_align`: y = align(a) + align(b), each operand aligned to the output frac;
- `align_into`: one input of a Concat, aligned and written at its channel offset;
- `prelu`: y = x if x >= 0 else (x * a_c + 2**14) >> 15 (int64 product);
- `global_avg`: y_c = (sum_p x * R + 2**(S-1)) >> S (int64 sum and product);
- `avg_pool`: a windowed average, y = (window sum * R_n + 2**(S-1)) >> S per output position
  (int64 sum and product), R_n one constant, or a flash table per position when padding is
  excluded from a padded window's divisor.

Shifts. C99 leaves `>>` of a negative signed value implementation-defined; GCC (the host gcc
and arm-none-eabi-gcc alike) documents it as an arithmetic shift, i.e. floor division by
2**s, which is what the golden model's NumPy `>>` does, so "round half up" is
`(v + 2**(s-1)) >> s` on both sides. Left shifts of negative values are undefined in C99, so
alignment to a finer frac multiplies by 2**k instead (exact: the bounds keep it in int64).

Tables hold int32 only (the plan's flash tables): an int64 bias r_c is stored as its low word
(bits, read back as uint32) and its high word (signed), r_c = hi * 2**32 + lo.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import Window
from .kernels_pool import window_fold
from .tir_to_c import Kernel, Param

TWO_32 = 1 << 32


def _int64(v):
    return T.Cast("int64", v)


def _align(v, shift: int):
    """int64 expression: v (int64) re-expressed `shift` bits finer (> 0) or coarser (< 0),
    coarser with rounding half up (the golden `fixedpoint.align`)."""
    if shift > 0:
        return v * T.int64(1 << shift)
    if shift < 0:
        return (v + T.int64(1 << (-shift - 1))) >> T.int64(-shift)
    return v


def requant(name: str, channels: int, pixels: int, in_dtype: str, shift: int) -> Kernel:
    """Per-channel affine to fixed point. Table t: m[C], then r_lo[C], r_hi[C]."""
    n = channels * pixels

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Tb = T.decl_buffer((3 * channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        for c in range(channels):
            m = T.bind(_int64(Tb[c]))
            r = T.bind(_int64(Tb[2 * channels + c]) * T.int64(TWO_32)
                       + _int64(T.Cast("uint32", Tb[channels + c])))
            for p in range(pixels):
                Y[c * pixels + p] = T.Cast(
                    "int32", (_int64(X[c * pixels + p]) * m + r) >> T.int64(shift))

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


def add_align(name: str, n: int, a_dtype: str, b_dtype: str, a_shift: int,
              b_shift: int) -> Kernel:
    """Residual add: y = align(a, a_shift) + align(b, b_shift), in int64, stored as int32."""

    @T.prim_func
    def func(a: T.handle(a_dtype), b: T.handle(b_dtype), y: T.handle("int32")):
        A = T.decl_buffer((n,), a_dtype, data=a)
        B = T.decl_buffer((n,), b_dtype, data=b)
        Y = T.decl_buffer((n,), "int32", data=y)
        for i in range(n):
            Y[i] = T.Cast("int32", _align(_int64(A[i]), a_shift) + _align(_int64(B[i]), b_shift))

    return Kernel(name, func, (Param("a", "in"), Param("b", "in"), Param("y", "out")))


def align_into(name: str, n: int, in_dtype: str, shift: int, y_len: int, offset: int) -> Kernel:
    """One Concat input: y[offset + i] = align(x[i]) (the output holds every input's slice;
    channel concatenation of [C][P] tensors is concatenation of their flat arrays)."""

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Y = T.decl_buffer((y_len,), "int32", data=y)
        for i in range(n):
            Y[offset + i] = T.Cast("int32", _align(_int64(X[i]), shift))

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def prelu(name: str, channels: int, pixels: int, in_dtype: str, shift: int) -> Kernel:
    """PReLU with slopes a_c = round(slope * 2**shift) (table t: a[C])."""
    n = channels * pixels
    half = 1 << (shift - 1)

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Tb = T.decl_buffer((channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        for c in range(channels):
            a = T.bind(_int64(Tb[c]))
            for p in range(pixels):
                v = T.bind(T.Cast("int32", X[c * pixels + p]))
                Y[c * pixels + p] = T.if_then_else(
                    v >= 0, v,
                    T.Cast("int32", (_int64(v) * a + T.int64(half)) >> T.int64(shift)))

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


def global_avg(name: str, channels: int, pixels: int, in_dtype: str, mult: int,
               shift: int) -> Kernel:
    """Mean over the P positions of each channel: (sum * mult + 2**(shift-1)) >> shift."""
    n = channels * pixels
    half = 1 << (shift - 1)

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Y = T.decl_buffer((channels,), "int32", data=y)
        for c in range(channels):
            total = T.alloc_buffer((1,), "int64")
            total[0] = T.int64(0)
            for p in range(pixels):
                total[0] = total[0] + _int64(X[c * pixels + p])
            Y[c] = T.Cast("int32", (total[0] * T.int64(mult) + T.int64(half)) >> T.int64(shift))

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def avg_pool(name: str, g: Window, in_dtype: str, mult: int | None, shift: int) -> Kernel:
    """Windowed average of [C][H*W] into [C][OH*OW] (geometry `g`): the taps inside the map
    summed in int64 (padded taps hold 0: skipped, with a bounds test only when the layer
    pads), then one rounding multiply. `mult` None: per-position multipliers R_n in a flash
    table t[OH*OW] (padding excluded from a padded window's divisor), else one constant."""
    half = 1 << (shift - 1)

    @T.macro
    def tap(ih, iw, X, Tb, total, c):
        total[0] = total[0] + _int64(X[(c * g.h + ih) * g.w + iw])

    def finish(total, Tb, c, oh, ow):
        """(sum * R_n + 2**(S-1)) >> S, R_n the position's table entry or the one constant."""
        r = T.int64(mult) if mult is not None else _int64(Tb[oh * g.ow + ow])
        return T.Cast("int32", (total * r + T.int64(half)) >> T.int64(shift))

    return window_fold(name, g, in_dtype, "int64", T.int64(0), tap, finish,
                       g.oh * g.ow if mult is None else None)
