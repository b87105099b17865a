"""Conv2d kernels in TVMScript (groups = 1): packed ±1 / ternary inputs, and multi-bit inputs.

Geometry is fixed per layer (`Window`), so every loop has constant bounds. A tap that falls
in the padding contributes 0 (ONNX pads ±1 maps with 0, DESIGN.md "Numerics"): the kernels
skip it, and the binary kernel adds the channel count C only for real taps, so the result is
`sum over real taps of (C - 2 * popcount(a ^ w))`. Layers whose taps never leave the input get
no bounds test at all.

Layouts (package docstring): packed input [H][W][CW] words (sign plane, then mask plane if
any), packed weights [O][KH][KW][CW] (sign plane, then mask plane), multi-bit input int
[C][H][W] with weights packed in the IR's (c, kh, kw) order; output int32 [O][OH][OW], or
with a fused threshold (`ep`) packed bits [OH*OW][ceil(O/32)] (+ mask plane), kernel_io.py.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .geometry import Window
from .kernel_io import outputs, params, wrap
from .kernels_threshold import Epilogue
from .popsum import xor_popsum
from .tir_to_c import Kernel


def binary_conv(
    name: str, g: Window, a_mask: bool, w_mask: bool, ep: Epilogue | None = None,
    pad_one: bool = False,
) -> Kernel:
    """XNOR-popcount conv over per-pixel packed channels.

    `pad_one` (Larq/LCE `pad_values=1`, ±1 activations): a padded tap is a +1 input on
    every real channel, so it is gathered as the words of an all-+1 pixel and counted like
    any other tap: no activation mask, and every output sums KH*KW*C products (ternary
    weights, e.g. a grouped conv's block-diagonal form, mask their zeros as anywhere else).

    Per output pixel the receptive field is gathered once into a local patch of KH*KW*CW
    words (padded taps as 0) and shared by all O output channels, each of which is then a
    dense row over the patch (Harley-Seal popsum for ±1 x ±1). A padded tap must count 0,
    not "0 XOR w", so when the window can leave the input a per-word valid mask `pm` (all
    ones for real taps, 0 for padded ones; the activation mask plane when there is one) is
    ANDed in, and only real taps add C. With `ep` the accumulators of a pixel are thresholded
    and packed as they are made (output [OH*OW][ceil(O/32)] words).
    """
    out = outputs(g.o, g.oh * g.ow, ep)
    fused, init, put, store = out.fused, out.init, out.put, out.store
    cw = g.cw
    nw = g.kh * g.kw * cw
    a_plane = g.h * g.w * cw
    w_plane = g.o * nw
    a_len = a_plane * (2 if a_mask else 1)
    w_len = w_plane * (2 if w_mask else 1)
    masked = a_mask or w_mask
    if pad_one and a_mask:
        raise ValueError("+1 padding is for ±1 (unmasked) activations")
    zero_pads = g.bounded and not pad_one  # taps that must count 0
    need_pm = zero_pads or a_mask
    count_taps = zero_pads and not masked
    popsum = xor_popsum(nw, masked=zero_pads)
    # an all-+1 pixel: bit 1 on the real channels of each word, pad bits 0 like the activations
    last_word = (1 << (g.c - 32 * (cw - 1))) - 1

    @T.macro
    def copy_tap(A, patch, pm, nvalid, pa, pp):
        for j in range(cw):
            patch[pp + j] = A[pa + j]
            if a_mask:
                pm[pp + j] = A[a_plane + pa + j]
            elif need_pm:
                pm[pp + j] = T.uint32(0xFFFFFFFF)
        if count_taps:
            nvalid[0] = nvalid[0] + 1

    @T.macro
    def zero_tap(patch, pm, pp):
        for j in range(cw):
            patch[pp + j] = T.uint32(0)
            pm[pp + j] = T.uint32(0)

    @T.macro
    def one_tap(patch, pp):
        for j in range(cw):
            patch[pp + j] = T.if_then_else(
                j < cw - 1, T.uint32(0xFFFFFFFF), T.uint32(last_word))

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
                if count_taps:
                    nvalid = T.alloc_buffer((1,), "int32")
                    nvalid[0] = 0
                else:
                    nvalid = patch  # never touched
                for r in range(g.kh):
                    for s in range(g.kw):
                        ih = T.bind(oh * g.sh - g.pt + r * g.dh)
                        iw = T.bind(ow * g.sw - g.pl + s * g.dw)
                        pp = T.bind((r * g.kw + s) * cw)
                        if g.bounded:
                            if 0 <= ih < g.h and 0 <= iw < g.w:
                                copy_tap(A, patch, pm, nvalid, (ih * g.w + iw) * cw, pp)
                            elif pad_one:
                                one_tap(patch, pp)
                            else:
                                zero_tap(patch, pm, pp)
                        else:
                            copy_tap(A, patch, pm, nvalid, (ih * g.w + iw) * cw, pp)
                for o in range(g.o):
                    acc = T.alloc_buffer((1,), "int32")
                    if masked:
                        m = T.alloc_buffer((1,), "uint32")
                        acc[0] = 0
                        for j in range(nw):
                            if need_pm and w_mask:
                                m[0] = pm[j] & W[w_plane + o * nw + j]
                            elif need_pm:
                                m[0] = pm[j]
                            else:
                                m[0] = W[w_plane + o * nw + j]
                            acc[0] = (
                                acc[0]
                                + T.Cast("int32", T.popcount(m[0]))
                                - 2 * T.Cast("int32", T.popcount(
                                    m[0] & (patch[j] ^ W[o * nw + j])))
                            )
                    else:
                        count = T.alloc_buffer((1,), "int32")
                        count[0] = 0
                        popsum(count, patch, 0, W, o * nw, pm, 0)
                        if zero_pads:
                            acc[0] = nvalid[0] * g.c - 2 * count[0]
                        else:
                            acc[0] = g.kh * g.kw * g.c - 2 * count[0]
                    if fused:
                        put(bits, Tb, o, acc[0])
                    else:
                        Y[(o * g.oh + oh) * g.ow + ow] = acc[0]
                if fused:
                    store(Y, Tb, bits, oh * g.ow + ow, out.plane)

    return Kernel(name, wrap(body, out, "uint32", a_len, w_len), params(fused))


def int_conv(
    name: str, g: Window, in_dtype: str, w_mask: bool, ep: Epilogue | None = None
) -> Kernel:
    """Multi-bit input conv: 2 * (sum of x under +1 weights) - (sum of x under nonzero ones)."""
    out = outputs(g.o, g.oh * g.ow, ep)
    fused, init, put, store = out.fused, out.init, out.put, out.store
    k = g.c * g.kh * g.kw
    words = (k + 31) // 32
    w_plane = g.o * words
    w_len = w_plane * (2 if w_mask else 1)

    @T.macro
    def tap(X, W, plus, total, xi, kk, o):
        xv = T.bind(T.Cast("int32", X[xi]))
        word = T.bind(o * words + kk // 32)
        bit = T.bind(T.Cast("uint32", kk % 32))
        plus[0] = plus[0] + (xv & (0 - T.Cast("int32", (W[word] >> bit) & T.uint32(1))))
        if w_mask:
            total[0] = total[0] + (
                xv & (0 - T.Cast("int32", (W[w_plane + word] >> bit) & T.uint32(1)))
            )
        else:
            total[0] = total[0] + xv

    @T.macro
    def body(X, W, Tb, Y):
        for oh in range(g.oh):
            for ow in range(g.ow):
                if fused:
                    bits = T.alloc_buffer((out.local,), "uint32")
                    init(bits)
                for o in range(g.o):
                    plus = T.alloc_buffer((1,), "int32")
                    total = T.alloc_buffer((1,), "int32")
                    plus[0] = 0
                    total[0] = 0
                    for c in range(g.c):
                        for r in range(g.kh):
                            for s in range(g.kw):
                                ih = T.bind(oh * g.sh - g.pt + r * g.dh)
                                iw = T.bind(ow * g.sw - g.pl + s * g.dw)
                                kk = T.bind((c * g.kh + r) * g.kw + s)
                                if g.bounded:
                                    if 0 <= ih < g.h and 0 <= iw < g.w:
                                        tap(X, W, plus, total, (c * g.h + ih) * g.w + iw, kk, o)
                                else:
                                    tap(X, W, plus, total, (c * g.h + ih) * g.w + iw, kk, o)
                    if fused:
                        put(bits, Tb, o, 2 * plus[0] - total[0])
                    else:
                        Y[(o * g.oh + oh) * g.ow + ow] = 2 * plus[0] - total[0]
                if fused:
                    store(Y, Tb, bits, oh * g.ow + ow, out.plane)

    return Kernel(name, wrap(body, out, in_dtype, g.c * g.h * g.w, w_len), params(fused))
