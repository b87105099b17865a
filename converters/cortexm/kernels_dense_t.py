"""Binary x binary dense over transposed weights, summing only the rarer half of the inputs.

Why: the row-major XNOR kernel (kernels_dense.binary_dense) pays, per 32 MACs, two loads, an
XOR and about one carry-save adder (5 ops): ~8 instructions is its floor (0.25 per MAC on a
Cortex-M4, 0.32 measured). Here the weights are stored transposed, word [rb][i] holding the
bits of input i for output rows 32*rb .. 32*rb+31, and the rows are counted bit-sliced: adding
input i to 32 row counters at once is one carry-save step on the word. Only the inputs of the
rarer activation value are visited (at most half of them), because the other half follows from
a per-row constant:

    with n1 the number of +1 activations, S1[r] / S0[r] the weight bits of row r summed over
    the +1 / -1 inputs and Tw[r] = S1[r] + S0[r] (the row's weight popcount, in flash),
    mismatches[r] = n1 - S1 + S0, so y[r] = K - 2 * mismatches[r]
                  = (K - 2*n1) + 4*S1 - 2*Tw   (visiting the +1 inputs)
                  = (K - 2*n1) - 4*S0 + 2*Tw   (visiting the -1 inputs).

Pad bits (activation 0 = "-1", weights 0) may be visited in the second form: their weight
words are 0, so they add nothing. Cost per visited input and 32 rows: an index load, a word
load and a carry-save step (~9 instructions as gcc 12 schedules blocks of 16), plus building
the visit list (~4 per input bit) and a per-row bit-slice extraction (~25): 0.14 instructions
per MAC on a Cortex-M4 at 1024 x 1024 for random inputs, 0.16 for balanced ones (bench/).
The visit list lives on the stack, 4 * (K'/2 + 16) bytes; plan.transposed_pays bounds K'.

Operands: `a` packed activations [words]; `w` = transposed words [RB][words*32 + 1] (entry
words*32 of each block is 0: the visit list is padded with it to whole blocks), then Tw as
int32 [RB*32];
`y` int32 [rows] or, with a fused threshold, bits (kernel_io / kernels_threshold).
"""

from __future__ import annotations

import numpy as np
from tvm.script import tirx as T

from .kernel_io import outputs, params, wrap
from .kernels_threshold import Epilogue
from .tir_to_c import Kernel

BLOCK = 16  # inputs per Harley-Seal block (15 carry-save adders, one carry into the levels)


def transposed_weights(values: np.ndarray, positions: np.ndarray, words: int) -> np.ndarray:
    """int8 ±1 [rows, K] -> the `w` operand: transposed bit words, a zero entry, Tw.

    `positions[i]` is the packed activation bit that column i reads (layout.packed_positions).
    """
    rows, _ = values.shape
    rb = (rows + 31) // 32
    bits = np.zeros((rb * 32, words * 32 + 1), dtype=np.uint64)
    bits[:rows, positions] = values > 0
    weights = (bits.reshape(rb, 32, words * 32 + 1) << np.arange(32, dtype=np.uint64)[:, None]
               ).sum(1)
    tw = np.zeros(rb * 32, dtype=np.int64)
    tw[:rows] = (values > 0).sum(1)
    return np.concatenate([weights.astype(np.uint32).ravel(), tw.astype(np.uint32)])


def binary_dense_t(
    name: str, rows: int, words: int, k: int, ep: Epilogue | None = None
) -> Kernel:
    """y[o] = sum_k a[k] * w[o, k] for ±1 operands, over transposed weights (module docstring).

    `words` packed activation words, `k` real inputs (pads are bits that no column reads).
    """
    out = outputs(rows, 1, ep)
    fused, init, put, store, local = out.fused, out.init, out.put, out.store, out.local
    rb_n = (rows + 31) // 32
    full_rb = rows // 32
    tail_rows = rows % 32
    kp = words * 32
    cap = kp // 2 + BLOCK  # visited inputs <= kp / 2, padded up to a whole block
    nlev = max(5, int(cap).bit_length())  # counts < 2**nlev
    zero_entry = kp
    tw_off = (kp + 1) * rb_n
    w_len = tw_off + rb_n * 32

    @T.macro
    def csa(high, low, b, c):
        # (high, low) = carry-save sum of low[0], b, c
        a = T.bind(low[0])
        u = T.bind(a ^ b)
        high[0] = (a & b) | (u & c)
        low[0] = u ^ c

    @T.macro
    def pair(high, ones, W, lst, i):
        csa(high, ones, W[lst[i]], W[lst[i + 1]])

    @T.macro
    def count(Wall, lst, nb, rb, ones, twos, fours, eights, hi):
        ta = T.alloc_buffer((1,), "uint32")
        tb = T.alloc_buffer((1,), "uint32")
        fa = T.alloc_buffer((1,), "uint32")
        fb = T.alloc_buffer((1,), "uint32")
        ea = T.alloc_buffer((1,), "uint32")
        eb = T.alloc_buffer((1,), "uint32")
        sixteens = T.alloc_buffer((1,), "uint32")
        carry = T.alloc_buffer((1,), "uint32")
        ones[0] = T.uint32(0)
        twos[0] = T.uint32(0)
        fours[0] = T.uint32(0)
        eights[0] = T.uint32(0)
        for j in range(nlev - 4):
            hi[j] = T.uint32(0)
        # this row block's words through their own pointer, so each visit is one indexed load
        base = T.bind(T.address_of(Wall[rb * (kp + 1)]))
        W = T.decl_buffer((kp + 1,), "uint32", data=base)
        for blk in range(nb):
            i = T.bind(blk * BLOCK)
            pair(ta, ones, W, lst, i)
            pair(tb, ones, W, lst, i + 2)
            csa(fa, twos, ta[0], tb[0])
            pair(ta, ones, W, lst, i + 4)
            pair(tb, ones, W, lst, i + 6)
            csa(fb, twos, ta[0], tb[0])
            csa(ea, fours, fa[0], fb[0])
            pair(ta, ones, W, lst, i + 8)
            pair(tb, ones, W, lst, i + 10)
            csa(fa, twos, ta[0], tb[0])
            pair(ta, ones, W, lst, i + 12)
            pair(tb, ones, W, lst, i + 14)
            csa(fb, twos, ta[0], tb[0])
            csa(eb, fours, fa[0], fb[0])
            csa(sixteens, eights, ea[0], eb[0])
            carry[0] = sixteens[0]
            for j in T.unroll(nlev - 4):
                c = T.bind(carry[0])
                carry[0] = hi[j] & c
                hi[j] = hi[j] ^ c

    @T.macro
    def emit_rows(W, Tb, Y, bits, rb, nr, ones, twos, fours, eights, hi, base, sgn):
        # row r of the block: S = its bit-sliced count, y = base + sgn * (4 S - 2 Tw)
        for r in T.unroll(nr):
            sh = T.bind(T.Cast("uint32", r))
            cnt = T.alloc_buffer((1,), "int32")
            cnt[0] = (
                T.Cast("int32", (ones[0] >> sh) & T.uint32(1))
                + T.Cast("int32", ((twos[0] >> sh) & T.uint32(1)) << T.uint32(1))
                + T.Cast("int32", ((fours[0] >> sh) & T.uint32(1)) << T.uint32(2))
                + T.Cast("int32", ((eights[0] >> sh) & T.uint32(1)) << T.uint32(3))
            )
            for j in T.unroll(nlev - 4):
                cnt[0] = cnt[0] + T.Cast("int32", ((hi[j] >> sh) & T.uint32(1)) << T.uint32(j + 4))
            o = T.bind(rb * 32 + r)
            acc = T.bind(base + sgn * (4 * cnt[0] - 2 * T.Cast("int32", W[tw_off + o])))
            if fused:
                put(bits, Tb, o, acc)
            else:
                Y[o] = acc

    @T.macro
    def body(A, W, Tb, Y):
        if fused:
            bits = T.alloc_buffer((local,), "uint32")
            init(bits)
        lst = T.alloc_buffer((cap,), "int32")
        n1 = T.alloc_buffer((1,), "int32")
        n = T.alloc_buffer((1,), "int32")
        n1[0] = 0
        for j in range(words):
            n1[0] = n1[0] + T.Cast("int32", T.popcount(A[j]))
        minus = T.bind(T.Cast("int32", n1[0] * 2 > kp))  # 1: visit the -1 inputs
        flip = T.bind(T.uint32(0) - T.Cast("uint32", minus))
        sgn = T.bind(1 - 2 * minus)
        base = T.bind(k - 2 * n1[0])
        n[0] = 0
        for j in range(words):
            visit = T.bind(A[j] ^ flip)
            for t in T.unroll(32):
                lst[n[0]] = j * 32 + t
                n[0] = n[0] + T.Cast("int32", (visit >> T.uint32(t)) & T.uint32(1))
        for t in T.unroll(BLOCK - 1):
            lst[n[0] + t] = zero_entry
        nb = T.bind((n[0] + (BLOCK - 1)) // BLOCK)
        ones = T.alloc_buffer((1,), "uint32")
        twos = T.alloc_buffer((1,), "uint32")
        fours = T.alloc_buffer((1,), "uint32")
        eights = T.alloc_buffer((1,), "uint32")
        hi = T.alloc_buffer((nlev - 4,), "uint32")
        for rb in range(full_rb):
            count(W, lst, nb, rb, ones, twos, fours, eights, hi)
            emit_rows(W, Tb, Y, bits if fused else W, rb, 32, ones, twos, fours, eights, hi,
                      base, sgn)
        if tail_rows > 0:
            count(W, lst, nb, full_rb, ones, twos, fours, eights, hi)
            emit_rows(W, Tb, Y, bits if fused else W, full_rb, tail_rows, ones, twos, fours,
                      eights, hi, base, sgn)
        if fused:
            store(Y, Tb, bits, 0, out.plane)

    return Kernel(name, wrap(body, out, "uint32", words, w_len), params(fused))
