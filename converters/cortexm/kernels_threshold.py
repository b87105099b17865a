"""Threshold + pack kernel in TVMScript: integer accumulators -> packed ±1 / ternary bits.

Semantics are `edge_sdk.thresholds.apply_threshold` per channel c: +1 iff x >= tau
(x <= tau when flipped), and, for `zero` channels, 0 at the single value next to tau on the
-1 side. Both directions become one compare: with s = -1 for flipped channels (+1 otherwise)
and thr = s * tau, the output is +1 iff s*x >= thr, and a tie iff s*x == thr - 1.

Table `t` (int32, flash): thr[C]; then s[C] if any channel flips; then, if any channel has
`zero`, CW words (bit patterns) with bit c set for the `zero` channels.

Input: int [C][P] in C order (P = H*W pixels, 1 for a 1-D tensor). Output: bits [P][CW]
(per pixel, channels packed, pad bits 0), then, with ties, the mask plane [P][CW]
(bit 1 = nonzero) whose pad bits are 0 too.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.script import tirx as T

from .tir_to_c import Kernel, Param


def threshold_pack(
    name: str, channels: int, pixels: int, in_dtype: str, flip: bool, zero: bool
) -> Kernel:
    """Standalone threshold + pack, for accumulators that are not fused into their producer
    (an integer max-pool between them, several readers, or the model input itself). Bits are
    built a word at a time with unrolled constant shifts."""
    cw = (channels + 31) // 32
    full = channels // 32
    tail = channels % 32
    s_off = channels
    z_off = channels * (2 if flip else 1)
    t_len = z_off + (cw if zero else 0)
    plane = pixels * cw
    y_len = plane * (2 if zero else 1)

    @T.macro
    def word(X, Tb, Y, p, j, nbits):
        sign = T.alloc_buffer((1,), "uint32")
        sign[0] = T.uint32(0)
        if zero:
            tie = T.alloc_buffer((1,), "uint32")
            tie[0] = T.uint32(0)
        for t in T.unroll(nbits):
            if flip:
                v = T.bind(T.Cast("int32", X[(j * 32 + t) * pixels + p]) * Tb[s_off + j * 32 + t])
            else:
                v = T.bind(T.Cast("int32", X[(j * 32 + t) * pixels + p]))
            sign[0] = sign[0] | (T.Cast("uint32", v >= Tb[j * 32 + t]) << T.uint32(t))
            if zero:
                tie[0] = tie[0] | (T.Cast("uint32", v == Tb[j * 32 + t] - 1) << T.uint32(t))
        Y[p * cw + j] = sign[0]
        if zero:
            Y[plane + p * cw + j] = (
                ~(tie[0] & T.Cast("uint32", Tb[z_off + j])) & T.uint32((1 << nbits) - 1)
            )

    @T.prim_func
    def func(x: T.handle(in_dtype), t: T.handle("int32"), y: T.handle("uint32")):
        X = T.decl_buffer((channels * pixels,), in_dtype, data=x)
        Tb = T.decl_buffer((t_len,), "int32", data=t)
        Y = T.decl_buffer((y_len,), "uint32", data=y)
        for p in range(pixels):
            for j in range(full):
                word(X, Tb, Y, p, j, 32)
            if tail > 0:
                word(X, Tb, Y, p, full, tail)

    return Kernel(name, func, (Param("x", "in"), Param("t", "const"), Param("y", "out")))


@dataclass(frozen=True)
class Epilogue:
    """Threshold + pack fused into a Dense/Conv kernel: its accumulators never reach memory.

    The kernel takes the same table `t` as `threshold_pack` and writes bits [P][CW] (+ mask
    plane) for its `channels` output channels instead of int32 accumulators, which saves the
    int32 tensor in the arena (32x the packed size).
    """

    channels: int
    flip: bool
    zero: bool

    @property
    def cw(self) -> int:
        return (self.channels + 31) // 32

    @property
    def table_len(self) -> int:
        return self.channels * (2 if self.flip else 1) + (self.cw if self.zero else 0)


def pack_epilogue(ep: Epilogue):
    """Macros (init, put, store) that threshold accumulators into a local word buffer.

    init(bits): clear; put(bits, Tb, o, acc): set channel o's sign (and tie) bit from acc;
    store(Y, Tb, bits, p, plane): write pixel p's words (and mask words) to Y.
    """
    cw = ep.cw
    s_off = ep.channels
    z_off = ep.channels * (2 if ep.flip else 1)
    last_bits = ep.channels - 32 * (cw - 1)
    flip, zero = ep.flip, ep.zero

    @T.macro
    def init(bits):
        for j in range(cw * (2 if zero else 1)):
            bits[j] = T.uint32(0)

    @T.macro
    def put(bits, Tb, o, acc):
        if flip:
            v = T.bind(acc * Tb[s_off + o])
        else:
            v = T.bind(acc)
        bit = T.bind(T.Cast("uint32", o % 32))
        bits[o // 32] = bits[o // 32] | (T.Cast("uint32", v >= Tb[o]) << bit)
        if zero:
            bits[cw + o // 32] = bits[cw + o // 32] | (T.Cast("uint32", v == Tb[o] - 1) << bit)

    @T.macro
    def store(Y, Tb, bits, p, plane):
        for j in range(cw):
            Y[p * cw + j] = bits[j]
        if zero:  # mask = not a tie of a `zero` channel; pad bits of the last word stay 0
            for j in range(cw - 1):
                Y[plane + p * cw + j] = ~(bits[cw + j] & T.Cast("uint32", Tb[z_off + j]))
            Y[plane + p * cw + cw - 1] = ~(
                bits[cw + cw - 1] & T.Cast("uint32", Tb[z_off + cw - 1])
            ) & T.uint32((1 << last_bits) - 1)

    return init, put, store
