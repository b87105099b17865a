"""TFLite int8 kernels in TVMScript (LCE int8 conversion, issue #11): TflRequant, TflAdd,
TflPRelu, bit for bit as sdk/tflite_int8.py (`run`) computes them.

Data are the IR's centred int8 values (q - z) in C order ([C][P], P = H*W, 1 for vectors),
int32 in the arena (or the model input's int8/int16). Every intermediate is held in int64, so
no C expression can overflow; the planner (plan_tflite.py) refuses a layer whose int32
intermediates (which TFLite computes in int32 and `run` checks) could leave int32 for some
input in the tensor's range, so int64 and TFLite's int32 agree wherever the golden model runs.

MultiplyByQuantizedMultiplier (`mbqm`, TFLite's common.h, no single rounding):

    a = x * 2**left                       left = max(e, 0)  (a multiply: C99 leaves << of a
                                          negative value undefined)
    SRDHM: ab = a * M (int64); s = ab + (2**30 if ab >= 0 else 1 - 2**30);
           h = s / 2**31 with C's truncating division (TIR `truncdiv`, printed as `/`; TIR's
           `//` would be floor division); a == M == INT32_MIN -> INT32_MAX (the saturating case)
    RDBPOT: n = max(-e, 0), mask = 2**n - 1, (h >> n) + ((h & mask) > (mask >> 1) + (h < 0))
    ruy (`ruy=True`, CONV_2D / FULLY_CONNECTED): (h + (2**n >> 1)) >> n, half up

`>>` of a negative value is an arithmetic shift with GCC (host gcc and arm-none-eabi-gcc),
as kernels_fixed.py explains; `&` on a negative int64 acts on its two's complement bits.

Parameters are per channel in one int32 flash table per layer (a multiplier M and a shift e
per MBQM; negative e = right shift), so a kernel is shared by every layer of the same shape.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .tir_to_c import Kernel, Param

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ADD_LEFT_SHIFT = 20  # sdk/tflite_int8.ADD_LEFT_SHIFT


def _i64(v):
    return T.Cast("int64", v)


def _left(e):
    """int64 max(e, 0) of an int32 shift e."""
    return _i64(T.if_then_else(e > 0, e, 0))


def _right(e):
    """int64 max(-e, 0) of an int32 shift e."""
    return _i64(T.if_then_else(e < 0, 0 - e, 0))


# Each kernel starts a channel by binding that channel's table entries once, outside its pixel
# loop. These two are plain Python called from inside the prim_funcs: T.bind emits its Bind
# into the function being parsed (a T.macro cannot hand values back), and the names given to
# what they return (`m, l, r = _mbqm_columns(...)`) are the C variables' names, so the C is the
# one the bindings written out in full gave.
def _column(Tb, channels: int, k: int, c):
    """Column k of a per-channel table [k0[C], k1[C], ...] at channel c, bound as int64."""
    return T.bind(_i64(Tb[k * channels + c]))


def _mbqm_columns(Tb, channels: int, k: int, c):
    """One MBQM's parameters at channel c: the multiplier M in column k and the shift e in
    column k + 1, bound as (M, max(e, 0), max(-e, 0)) in int64, as `mbqm` takes them."""
    e = Tb[(k + 1) * channels + c]
    return _column(Tb, channels, k, c), T.bind(_left(e)), T.bind(_right(e))


@T.macro
def mbqm(R, x, m, left, right, ruy: bool):
    """R[0] = MBQM(x, m, e) with left = max(e, 0), right = max(-e, 0) (int64, per channel:
    `_left`, `_right`); ruy: the last shift rounds half up. x, m: int64 holding int32 values."""
    a = T.bind(x * (T.int64(1) << left))
    ab = T.bind(a * m)
    s = T.bind(ab + T.if_then_else(ab >= T.int64(0), T.int64(1 << 30), T.int64(1 - (1 << 30))))
    h = T.bind(T.if_then_else(
        (a == T.int64(INT32_MIN)) & (m == T.int64(INT32_MIN)), T.int64(INT32_MAX),
        T.truncdiv(s, T.int64(1 << 31))))
    if ruy:
        R[0] = (h + ((T.int64(1) << right) >> T.int64(1))) >> right
    else:
        mask = T.bind((T.int64(1) << right) - T.int64(1))
        R[0] = (h >> right) + _i64((h & mask) > ((mask >> T.int64(1)) + _i64(h < T.int64(0))))


@T.macro
def clamp_store(Y, i, v, zp: int, lo: int, hi: int):
    """Y[i] = clamp(z + v, lo, hi) - z."""
    c = T.bind(v + T.int64(zp))
    Y[i] = T.Cast("int32", T.if_then_else(
        c > T.int64(hi), T.int64(hi), T.if_then_else(c < T.int64(lo), T.int64(lo), c))
        - T.int64(zp))


def tfl_requant(name: str, channels: int, pixels: int, in_dtype: str, ruy: bool, zp: int,
                lo: int, hi: int) -> Kernel:
    """y = clamp(z + MBQM(x * f_c + b_c, M_c, e_c), lo, hi) - z.
    Table t: f[C], b[C], M[C], e[C]."""
    n = channels * pixels

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Tb = T.decl_buffer((4 * channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        r = T.alloc_buffer((1,), "int64")
        for c in range(channels):
            f = _column(Tb, channels, 0, c)
            b = _column(Tb, channels, 1, c)
            m, sl, sr = _mbqm_columns(Tb, channels, 2, c)
            for p in range(pixels):
                mbqm(r, _i64(X[c * pixels + p]) * f + b, m, sl, sr, ruy)
                clamp_store(Y, c * pixels + p, r[0], zp, lo, hi)

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


def tfl_add(name: str, channels: int, pixels: int, a_dtype: str, b_dtype: str, zp: int,
            lo: int, hi: int) -> Kernel:
    """Two tensors: v_i = MBQM(x_i * 2**20, M_i, e_i); y = clamp(z + MBQM(v_1 + v_2, M_o,
    e_o), lo, hi) - z. Table t: M1[C], e1[C], M2[C], e2[C], Mo[C], eo[C]."""
    n = channels * pixels
    sh = 1 << ADD_LEFT_SHIFT

    @T.prim_func
    def func(a: T.handle(a_dtype), b: T.handle(b_dtype), t: T.handle("int32"),
             y: T.handle("int32")):
        A = T.decl_buffer((n,), a_dtype, data=a)
        B = T.decl_buffer((n,), b_dtype, data=b)
        Tb = T.decl_buffer((6 * channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        v1 = T.alloc_buffer((1,), "int64")
        v2 = T.alloc_buffer((1,), "int64")
        r = T.alloc_buffer((1,), "int64")
        for c in range(channels):
            m1, l1, r1 = _mbqm_columns(Tb, channels, 0, c)
            m2, l2, r2 = _mbqm_columns(Tb, channels, 2, c)
            mo, lo_, ro = _mbqm_columns(Tb, channels, 4, c)
            for p in range(pixels):
                mbqm(v1, _i64(A[c * pixels + p]) * T.int64(sh), m1, l1, r1, False)
                mbqm(v2, _i64(B[c * pixels + p]) * T.int64(sh), m2, l2, r2, False)
                mbqm(r, v1[0] + v2[0], mo, lo_, ro, False)
                clamp_store(Y, c * pixels + p, r[0], zp, lo, hi)

    return Kernel(name, func, (Param("a", "in"), Param("b", "in"), Param("t", "const"),
                               Param("y", "out")))


def tfl_add_const(name: str, channels: int, pixels: int, in_dtype: str, zp: int, lo: int,
                  hi: int) -> Kernel:
    """A tensor plus a per-channel constant whose v_2 is precomputed (`TflAdd.const`):
    y = clamp(z + MBQM(MBQM(x * 2**20, M1, e1) + k_c, Mo, eo), lo, hi) - z.
    Table t: M1[C], e1[C], k[C], Mo[C], eo[C]."""
    n = channels * pixels
    sh = 1 << ADD_LEFT_SHIFT

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Tb = T.decl_buffer((5 * channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        v1 = T.alloc_buffer((1,), "int64")
        r = T.alloc_buffer((1,), "int64")
        for c in range(channels):
            m1, l1, r1 = _mbqm_columns(Tb, channels, 0, c)
            k = _column(Tb, channels, 2, c)
            mo, lo_, ro = _mbqm_columns(Tb, channels, 3, c)
            for p in range(pixels):
                mbqm(v1, _i64(X[c * pixels + p]) * T.int64(sh), m1, l1, r1, False)
                mbqm(r, v1[0] + k, mo, lo_, ro, False)
                clamp_store(Y, c * pixels + p, r[0], zp, lo, hi)

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


def tfl_prelu(name: str, channels: int, pixels: int, in_dtype: str, zp: int, lo: int,
              hi: int) -> Kernel:
    """y = clamp(z + (MBQM(x, M1, e1) if x >= 0 else MBQM(x * a_c, M2, e2)), lo, hi) - z.
    Table t: a[C], M1[C], e1[C], M2[C], e2[C]."""
    n = channels * pixels

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Tb = T.decl_buffer((5 * channels,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        r = T.alloc_buffer((1,), "int64")
        for c in range(channels):
            al = _column(Tb, channels, 0, c)
            m1, l1, r1 = _mbqm_columns(Tb, channels, 1, c)
            m2, l2, r2 = _mbqm_columns(Tb, channels, 3, c)
            for p in range(pixels):
                v = T.bind(_i64(X[c * pixels + p]))
                if v >= T.int64(0):
                    mbqm(r, v, m1, l1, r1, False)
                else:
                    mbqm(r, v * al, m2, l2, r2, False)
                clamp_store(Y, c * pixels + p, r[0], zp, lo, hi)

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


def mbqm_probe(name: str, n: int, ruy: bool) -> Kernel:
    """MBQM alone on n (x, M, e) triples, for tests: y[i] = MBQM(x[i], t[i], t[n + i]) (x and
    x * 2**max(e, 0) within int32, as TFLite requires and the planner proves)."""

    @T.prim_func
    def func(x: T.handle("int32"), t: T.handle("int32"), y: T.handle("int32")):
        X = T.decl_buffer((n,), "int32", data=x)
        Tb = T.decl_buffer((2 * n,), "int32", data=t)
        Y = T.decl_buffer((n,), "int32", data=y)
        r = T.alloc_buffer((1,), "int64")
        for i in range(n):
            mbqm(r, _i64(X[i]), _i64(Tb[i]), _left(Tb[n + i]), _right(Tb[n + i]), ruy)
            Y[i] = T.Cast("int32", r[0])

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))
