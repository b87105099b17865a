"""Grouped (and depthwise) binary conv on packed inputs, lane-parallel, in TVMScript.

A grouped conv has g groups of `cin` input and `rows` output channels; output
o = gr * rows + r reads input channels gr * cin + i (i < cin). In a packed pixel (layout.py)
the groups' first channels sit at bits gr * cin: the "lanes". Shifting the pixel's words
right by i brings channel gr * cin + i of every group onto its lane at once (a funnel shift
across words), so one XOR with a weight word that holds, on each lane, the weight of output
(gr, r) for input i, compares all g groups together. The per-lane mismatch counts are kept
bit-sliced (a vertical counter: level l holds bit l of every lane's count, one AND and one
XOR per level to add a word) and read out per output channel at the end of the pixel.

Per output pixel this costs rows * taps * cin * CW word steps instead of the O * taps * CW
masked-popcount steps of the block-diagonal ordinary conv (plan_fixed.py picks the cheaper):
depthwise convs (cin = 1) and many small groups gain most.

Exactness. Weights are {-1, +1} or with zeros, activations ±1 or with zeros (mask plane),
padded taps count 0 (ONNX). With m = lane & nonzero weight & nonzero activation & real tap,
the dot product of a lane is popcount(m) - 2 * popcount(m & (a ^ w)) summed over taps and
inputs; both sums are vertical counters (the first is the constant `valid taps * cin` when
nothing can be zero). Weight table: sign plane [rows][taps][cin][CW] words (bit 1 = +1 on
each lane), then the lane plane of the same shape (bit 1 = a lane whose weight is nonzero).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import Window
from .kernel_io import outputs, params, wrap
from .kernels_threshold import Epilogue
from .tir_to_c import Kernel

# Cortex-M4 instructions (unicorn counts of the examples in tests/test_cortexm_fixed_point.py)
LANE_STEP = 25  # per word step of this kernel (shift, XOR, AND, vertical counter)
LANE_STEP_ZEROS = 50  # ... with zeros in weights or activations (a second counter)
READ_OUT = 4  # per output channel and counter level
BLOCK_WORD = 37  # per word of the block-diagonal conv (masked: two popcounts)


def lanes_pay(groups: int, cin: int, rows: int, taps: int, cw: int, zeros: bool) -> bool:
    """Whether this kernel beats the block-diagonal conv, per output pixel."""
    levels = (taps * cin).bit_length()
    step = LANE_STEP_ZEROS if zeros else LANE_STEP
    lanes = rows * taps * cin * cw * step + groups * rows * levels * READ_OUT
    return lanes < groups * rows * taps * cw * BLOCK_WORD


def group_conv(name: str, g: Window, groups: int, a_mask: bool, w_zero: bool,
               ep: Epilogue | None = None) -> Kernel:
    """`g.o` outputs in `groups` groups over a packed [H][W][CW] input (+ mask plane)."""
    out = outputs(g.o, g.oh * g.ow, ep)
    fused, init, put, store = out.fused, out.init, out.put, out.store
    cw = g.cw
    cin = g.c // groups
    rows = g.o // groups
    taps = g.kh * g.kw
    nw = taps * cw
    a_plane = g.h * g.w * cw
    a_len = a_plane * (2 if a_mask else 1)
    w_plane = rows * taps * cin * cw
    levels = (taps * cin).bit_length()
    need_pm = g.bounded or a_mask  # some taps / values count 0
    count_n = a_mask or w_zero  # popcount(m) differs between lanes

    def funnel(P, base, j, i):
        """Words P[base..] shifted right by i bits (i, j loop variables that unrolling makes
        constants): the branch C evaluates never reads past the tap, and no shift count is 32
        even in the branches it skips (gcc -Werror=shift-count-overflow)."""
        hi = T.if_then_else(
            j + 1 < cw,
            (P[base + j] >> T.Cast("uint32", i)) | (P[base + j + 1] << T.Cast("uint32", (32 - i) % 32)),
            P[base + j] >> T.Cast("uint32", i))
        return T.if_then_else(i == 0, P[base + j], hi)

    @T.macro
    def count(C, x, lv0):
        carry = T.alloc_buffer((1,), "uint32")
        carry[0] = x
        for lv in T.unroll(levels):
            t = T.bind(C[lv0 + lv * cw] & carry[0])
            C[lv0 + lv * cw] = C[lv0 + lv * cw] ^ carry[0]
            carry[0] = t

    @T.macro
    def body(A, W, Tb, Y):
        for oh in range(g.oh):
            for ow in range(g.ow):
                if fused:
                    bits = T.alloc_buffer((out.local,), "uint32")
                    init(bits)
                patch = T.alloc_buffer((nw,), "uint32")
                if need_pm:
                    pm = T.alloc_buffer((nw,), "uint32")
                else:
                    pm = patch  # never read
                nvalid = T.alloc_buffer((1,), "int32")
                nvalid[0] = 0
                for r in range(g.kh):
                    for s in range(g.kw):
                        ih = T.bind(oh * g.sh - g.pt + r * g.dh)
                        iw = T.bind(ow * g.sw - g.pl + s * g.dw)
                        pp = T.bind((r * g.kw + s) * cw)
                        if 0 <= ih < g.h and 0 <= iw < g.w:
                            nvalid[0] = nvalid[0] + 1
                            for j in range(cw):
                                patch[pp + j] = A[(ih * g.w + iw) * cw + j]
                                if a_mask:
                                    pm[pp + j] = A[a_plane + (ih * g.w + iw) * cw + j]
                                elif need_pm:
                                    pm[pp + j] = T.uint32(0xFFFFFFFF)
                        else:
                            for j in range(cw):
                                patch[pp + j] = T.uint32(0)
                                if need_pm:
                                    pm[pp + j] = T.uint32(0)
                for ro in range(rows):
                    dc = T.alloc_buffer((levels * cw,), "uint32")
                    if count_n:
                        nc = T.alloc_buffer((levels * cw,), "uint32")
                    else:
                        nc = dc  # never touched
                    for z in range(levels * cw):
                        dc[z] = T.uint32(0)
                        if count_n:
                            nc[z] = T.uint32(0)
                    for t in range(taps):
                        for i in T.unroll(cin):
                            for j in T.unroll(cw):
                                wi = T.bind(((ro * taps + t) * cin + i) * cw + j)
                                if need_pm:
                                    m = T.bind(W[w_plane + wi] & funnel(pm, t * cw, j, i))
                                else:
                                    m = T.bind(W[w_plane + wi])
                                count(dc, (funnel(patch, t * cw, j, i) ^ W[wi]) & m, j)
                                if count_n:
                                    count(nc, m, j)
                    for gr in range(groups):
                        lane = T.bind(gr * cin)
                        word = T.bind(lane // 32)
                        sh = T.bind(T.Cast("uint32", lane % 32))
                        d = T.alloc_buffer((1,), "int32")
                        n = T.alloc_buffer((1,), "int32")
                        d[0] = 0
                        n[0] = 0
                        for lv in T.unroll(levels):
                            d[0] = d[0] + (T.Cast(
                                "int32", (dc[lv * cw + word] >> sh) & T.uint32(1)) << lv)
                            if count_n:
                                n[0] = n[0] + (T.Cast(
                                    "int32", (nc[lv * cw + word] >> sh) & T.uint32(1)) << lv)
                        if not count_n:
                            n[0] = nvalid[0] * cin
                        o = T.bind(gr * rows + ro)
                        if fused:
                            put(bits, Tb, o, n[0] - 2 * d[0])
                        else:
                            Y[(o * g.oh + oh) * g.ow + ow] = n[0] - 2 * d[0]
                if fused:
                    store(Y, Tb, bits, oh * g.ow + ow, out.plane)

    return Kernel(name, wrap(body, out, "uint32", a_len, 2 * w_plane), params(fused))
