"""Output kernels in TVMScript: copy integers into the int32 output, or unpack bits into it.

The model's output `out` is the int32 tensor that feeds `Scores`, flattened in the IR's C
order. Usually the producing layer writes straight into `out`; these kernels cover the rest:
an integer tensor that lives elsewhere (e.g. the input itself), and a ±1 / ternary tensor
([P][CW] packed words, optional mask plane) unpacked to +1 / -1 / 0 at C-order index c*P + p.
`transpose_int` is the one copy that moves data between layouts: a TFLite model's NHWC input
into the IR's CHW order.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .tir_to_c import Kernel, Param


def copy_int(name: str, n: int, in_dtype: str) -> Kernel:
    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((n,), in_dtype, data=x)
        Y = T.decl_buffer((n,), "int32", data=y)
        for i in range(n):
            Y[i] = T.Cast("int32", X[i])

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def transpose_int(name: str, h: int, w: int, c: int, in_dtype: str) -> Kernel:
    """[H][W][C] -> int32 [C][H][W]; the inner loop walks the input in order (contiguous reads
    of the small NHWC input, strided int32 stores)."""

    @T.prim_func
    def func(x: T.handle(in_dtype), y: T.handle("int32")):
        X = T.decl_buffer((h * w * c,), in_dtype, data=x)
        Y = T.decl_buffer((c * h * w,), "int32", data=y)
        for p in range(h * w):
            for ch in range(c):
                Y[ch * (h * w) + p] = T.Cast("int32", X[p * c + ch])

    return Kernel(name, func, (Param("x", "in"), Param("y", "out")))


def unpack_bits(name: str, channels: int, pixels: int, mask: bool) -> Kernel:
    """value = 2 * sign - nonzero: +1 (1, 1), -1 (0, 1), 0 (0, 0)."""
    cw = (channels + 31) // 32
    plane = pixels * cw

    @T.prim_func
    def func(a: T.handle("uint32"), y: T.handle("int32")):
        A = T.decl_buffer((plane * (2 if mask else 1),), "uint32", data=a)
        Y = T.decl_buffer((channels * pixels,), "int32", data=y)
        for c in range(channels):
            for p in range(pixels):
                bit = T.bind(T.Cast("uint32", c % 32))
                sign = T.bind(T.Cast("int32", (A[p * cw + c // 32] >> bit) & T.uint32(1)))
                if mask:
                    nz = T.bind(
                        T.Cast("int32", (A[plane + p * cw + c // 32] >> bit) & T.uint32(1))
                    )
                    Y[c * pixels + p] = 2 * sign - nz
                else:
                    Y[c * pixels + p] = 2 * sign - 1

    return Kernel(name, func, (Param("a", "in"), Param("y", "out")))
