"""The signature and output side shared by the Dense and Conv2d kernels.

A compute kernel either stores int32 accumulators, `(a, w, y)`, or, with a fused threshold
(kernels_threshold.Epilogue), packs them into bits on the fly, `(a, w, t, y)`. The kernel body
is one TVMScript macro `body(A, W, Tb, Y)`; `wrap` gives it the matching prim_func, and
`outputs` the epilogue macros and buffer sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.script import tirx as T

from .kernels_threshold import Epilogue, pack_epilogue
from .tir_to_c import Param


@dataclass(frozen=True)
class Outputs:
    """How a compute kernel ends: int32 stores, or the fused threshold's macros and sizes."""

    fused: bool
    init: object  # macros from pack_epilogue
    put: object
    store: object
    local: int  # words of the local bit buffer (sign + tie words of one pixel)
    plane: int  # words per output bit plane (mask plane offset)
    t_len: int
    y_len: int


def outputs(channels: int, pixels: int, ep: Epilogue | None) -> Outputs:
    """`channels` outputs at `pixels` positions; bits when `ep` is given, else int32."""
    spec = ep if ep is not None else Epilogue(channels, False, False)
    init, put, store = pack_epilogue(spec)
    local = spec.cw * (2 if spec.zero else 1)
    plane = spec.cw * pixels
    y_len = plane * (2 if spec.zero else 1) if ep is not None else channels * pixels
    return Outputs(ep is not None, init, put, store, local, plane, spec.table_len, y_len)


def params(fused: bool) -> tuple[Param, ...]:
    table = (Param("t", "const"),) if fused else ()
    return (Param("a", "in"), Param("w", "const"), *table, Param("y", "out"))


def wrap(body, out: Outputs, in_dtype: str, a_len: int, w_len: int):
    """The prim_func around `body(A, W, Tb, Y)`: with the table `t` when fused."""
    t_len, y_len = out.t_len, out.y_len
    if out.fused:
        @T.prim_func
        def func(a: T.handle(in_dtype), w: T.handle("uint32"), t: T.handle("int32"),
                 y: T.handle("uint32")):
            A = T.decl_buffer((a_len,), in_dtype, data=a)
            W = T.decl_buffer((w_len,), "uint32", data=w)
            Tb = T.decl_buffer((t_len,), "int32", data=t)
            Y = T.decl_buffer((y_len,), "uint32", data=y)
            body(A, W, Tb, Y)
    else:
        @T.prim_func
        def func(a: T.handle(in_dtype), w: T.handle("uint32"), y: T.handle("int32")):
            A = T.decl_buffer((a_len,), in_dtype, data=a)
            W = T.decl_buffer((w_len,), "uint32", data=w)
            Y = T.decl_buffer((y_len,), "int32", data=y)
            body(A, W, W, Y)  # no table: the body never reads its third operand
    return func
