"""Dense kernels in TVMScript: binary/ternary activations (XNOR-popcount) and multi-bit inputs.

Operands (see the package docstring for the layouts):

- `a`: packed activations, `words` uint32 per plane, sign plane then (if `a_mask`) mask plane;
- `w`: packed weights [rows][words], sign plane then (if `w_mask`) mask plane [rows][words];
- `y`: int32 accumulators [rows]; or, with a fused threshold (`ep`, kernels_threshold.py),
  the table `t` comes before `y` and `y` receives packed bits [ceil(rows/32)] (+ mask plane).

Pad bits are 0 in every operand, so they XOR (and AND) to 0 and never count.

Speed (DESIGN.md, "Cortex-M backend"): wide binary x binary layers go to the transposed kernel
(kernels_dense_t.py, ~0.14 instructions per MAC at 1024 x 1024); this one serves the rest and
counts each row in straight-line chunks of 32 words (popsum.xor_popcount_expr):
a greedy carry-save counter, then one shared SWAR count of the remaining level words. ~0.32
instructions per binary MAC on a Cortex-M4 at 1024 x 1024 (0.36 with the 8-word Harley-Seal
block loop the conv kernels use). Several rows per pass sharing the activation words measured
slower: gcc keeps the activations in stack slots either way and spills the extra CSA state.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .kernel_io import outputs, params, wrap
from .kernels_threshold import Epilogue
from .popsum import DENSE_CHUNK, xor_popcount_expr
from .tir_to_c import Kernel


def binary_dense(
    name: str, rows: int, words: int, k: int, a_mask: bool, w_mask: bool,
    ep: Epilogue | None = None,
) -> Kernel:
    """y[o] = sum_k a[k] * w[o, k] for ±1 / {-1, 0, +1} operands; `k` = real (unpadded) K.

    Binary x binary: k - 2 * popcount(a ^ w), counted per chunk of DENSE_CHUNK words by one
    straight-line carry-save expression (the popcount mode does not apply: its final count is
    SWAR shared between level words, cheaper than one popcount per word). With a mask m
    (ternary weights and/or activations): popcount(m) - 2 * popcount(m & (a ^ w)).
    """
    out = outputs(rows, 1, ep)
    fused, init, put, store, local = out.fused, out.init, out.put, out.store, out.local
    masked = a_mask or w_mask
    chunks = words // DENSE_CHUNK
    tail0 = chunks * DENSE_CHUNK
    tail = words - tail0
    w_plane = rows * words

    @T.macro
    def body(A, W, Tb, Y):
        if fused:
            bits = T.alloc_buffer((local,), "uint32")
            init(bits)
        for o in range(rows):
            acc = T.alloc_buffer((1,), "int32")
            if masked:
                m = T.alloc_buffer((1,), "uint32")
                acc[0] = 0
                for j in range(words):
                    if a_mask and w_mask:
                        m[0] = A[words + j] & W[w_plane + o * words + j]
                    elif a_mask:
                        m[0] = A[words + j]
                    else:
                        m[0] = W[w_plane + o * words + j]
                    acc[0] = (
                        acc[0]
                        + T.Cast("int32", T.popcount(m[0]))
                        - 2 * T.Cast("int32", T.popcount(m[0] & (A[j] ^ W[o * words + j])))
                    )
            else:
                count = T.alloc_buffer((1,), "int32")
                count[0] = 0
                if chunks == 1:
                    count[0] = xor_popcount_expr(A, 0, W, o * words, DENSE_CHUNK)
                else:
                    for c in range(chunks):
                        count[0] = count[0] + xor_popcount_expr(
                            A, c * DENSE_CHUNK, W, o * words + c * DENSE_CHUNK, DENSE_CHUNK)
                if tail > 0:
                    count[0] = count[0] + xor_popcount_expr(A, tail0, W, o * words + tail0, tail)
                acc[0] = k - 2 * count[0]
            if fused:
                put(bits, Tb, o, acc[0])
            else:
                Y[o] = acc[0]
        if fused:
            store(Y, Tb, bits, 0, out.plane)

    a_len = words * (2 if a_mask else 1)
    w_len = w_plane * (2 if w_mask else 1)
    return Kernel(name, wrap(body, out, "uint32", a_len, w_len), params(fused))


def int_dense(
    name: str, rows: int, k: int, in_dtype: str, w_mask: bool, ep: Epilogue | None = None
) -> Kernel:
    """Multi-bit integer input x[k] (int8/16/32, C order) times packed ±1 / ternary weights.

    With p = sum of x where the weight is +1 and n = sum of x where it is nonzero, the dot
    product is 2p - n (n = sum of all x for binary weights, computed once). Each weight bit
    becomes an all-ones/zero mask (0 - bit) that selects x: add/and only, no multiply.
    """
    out = outputs(rows, 1, ep)
    fused, init, put, store, local = out.fused, out.init, out.put, out.store, out.local
    words = (k + 31) // 32
    full = k // 32
    tail = k % 32
    w_plane = rows * words

    @T.macro
    def select_sum(acc, W, base, X, first, nbits):
        bits = T.bind(W[base])
        for t in T.unroll(nbits):
            acc[0] = acc[0] + (
                T.Cast("int32", X[first + t])
                & (0 - T.Cast("int32", (bits >> T.uint32(t)) & T.uint32(1)))
            )

    @T.macro
    def body(X, W, Tb, Y):
        if fused:
            out_bits = T.alloc_buffer((local,), "uint32")
            init(out_bits)
        total = T.alloc_buffer((1,), "int32")
        plus = T.alloc_buffer((1,), "int32")
        if not w_mask:
            total[0] = 0
            for i in range(k):
                total[0] = total[0] + T.Cast("int32", X[i])
        for o in range(rows):
            plus[0] = 0
            if w_mask:
                total[0] = 0
            for j in range(full):
                select_sum(plus, W, o * words + j, X, j * 32, 32)
                if w_mask:
                    select_sum(total, W, w_plane + o * words + j, X, j * 32, 32)
            if tail > 0:
                select_sum(plus, W, o * words + full, X, full * 32, tail)
                if w_mask:
                    select_sum(total, W, w_plane + o * words + full, X, full * 32, tail)
            if fused:
                put(out_bits, Tb, o, 2 * plus[0] - total[0])
            else:
                Y[o] = 2 * plus[0] - total[0]
        if fused:
            store(Y, Tb, out_bits, 0, out.plane)

    w_len = w_plane * (2 if w_mask else 1)
    return Kernel(name, wrap(body, out, in_dtype, k, w_len), params(fused))
