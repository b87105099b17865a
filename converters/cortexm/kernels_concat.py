"""Concat of packed ±1 / ternary maps along the channels, in TVMScript.

Packed tensors are [P][CW] words per plane (layout.py), channel c at bit c % 32 of word
c // 32. Concatenating maps of C_0, C_1, ... channels puts input k's channel c at output
channel off_k + c, so each input word lands shifted by off_k % 32 across one or two output
words. One `bits_into` step per input ORs its words in; the first step clears the output.
Pad bits are 0 in every input, so the ORs never disturb a neighbour's channels and the
output's pad bits stay 0.

When the output has a mask plane (some input is ternary), an input without one contributes
all-ones mask words over its real channels (every ±1 value is nonzero).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .tir_to_c import Kernel, Param


def bits_into(name: str, pixels: int, c_in: int, a_mask: bool, c_out: int, offset: int,
              y_mask: bool, first: bool) -> Kernel:
    """OR the bits of a [P][ceil(c_in/32)] input into channels offset.. of the output."""
    cwa = (c_in + 31) // 32
    cwo = (c_out + 31) // 32
    a_plane = pixels * cwa
    y_plane = pixels * cwo
    planes = 2 if y_mask else 1
    w0 = offset // 32
    s = offset % 32
    last = (1 << (c_in - 32 * (cwa - 1))) - 1

    @T.macro
    def put(Y, base, j, word):
        Y[base + w0 + j] = Y[base + w0 + j] | (word << T.uint32(s))
        if s > 0:  # noqa: SIM102 (a Python-time test around a TIR one)
            if w0 + j + 1 < cwo:
                Y[base + w0 + j + 1] = Y[base + w0 + j + 1] | (word >> T.uint32(32 - s))

    @T.prim_func
    def func(a: T.handle("uint32"), y: T.handle("uint32")):
        A = T.decl_buffer((a_plane * (2 if a_mask else 1),), "uint32", data=a)
        Y = T.decl_buffer((y_plane * planes,), "uint32", data=y)
        if first:
            for i in range(y_plane * planes):
                Y[i] = T.uint32(0)
        for p in range(pixels):
            for j in range(cwa):
                put(Y, p * cwo, j, A[p * cwa + j])
                if y_mask:
                    if a_mask:
                        put(Y, y_plane + p * cwo, j, A[a_plane + p * cwa + j])
                    else:
                        put(Y, y_plane + p * cwo, j, T.if_then_else(
                            j < cwa - 1, T.uint32(0xFFFFFFFF), T.uint32(last)))

    return Kernel(name, func, (Param("a", "in"), Param("y", "out")))
