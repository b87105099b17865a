"""TIR macro: count += sum over `words` of popcount((a ^ w) [& m]), the XNOR-popcount core.

Shared by the dense and conv kernels. Blocks of 8 words go through Harley-Seal carry-save
adders (DESIGN.md, "Cortex-M backend"): 7 CSAs (5 bitwise ops each) fold 8 words into
ones/twos/fours/eights, and only `eights` is popcounted per block; ones/twos/fours are
popcounted once at the end. Leftover words (fewer than 8) take one popcount each. On a
Cortex-M4 this is ~0.36 instructions per binary MAC at K = 1024 against ~0.54 for one SWAR
popcount per word.

The optional mask operand `m` (ANDed into every word) zeroes padded conv taps.
"""

from __future__ import annotations

from tvm.script import tirx as T

HS_BLOCK = 8


def xor_popsum(words: int, masked: bool):
    """Macro `(count, A, a0, W, w0, M, m0)`: count[0] += popcount sum over `words` words.

    Operand j is (A[a0 + j] ^ W[w0 + j]), ANDed with M[m0 + j] when `masked` (else M unused).
    The carry-save adders are written out (not nested macros): TVMScript's macro expansion
    walks the Python stack on every call, which made parsing several times slower.
    A CSA of (a, b, c) into (high, low) is u = a ^ b; high = (a & b) | (u & c); low = u ^ c.
    """
    blocks = words // HS_BLOCK
    tail0 = blocks * HS_BLOCK

    @T.macro
    def popsum(count, A, a0, W, w0, M, m0):
        if blocks > 0:
            ones = T.alloc_buffer((1,), "uint32")
            twos = T.alloc_buffer((1,), "uint32")
            fours = T.alloc_buffer((1,), "uint32")
            twos_a = T.alloc_buffer((1,), "uint32")
            twos_b = T.alloc_buffer((1,), "uint32")
            fours_a = T.alloc_buffer((1,), "uint32")
            fours_b = T.alloc_buffer((1,), "uint32")
            x = T.alloc_buffer((HS_BLOCK,), "uint32")
            eights_total = T.alloc_buffer((1,), "int32")
            ones[0] = T.uint32(0)
            twos[0] = T.uint32(0)
            fours[0] = T.uint32(0)
            eights_total[0] = 0
            for blk in range(blocks):
                for j in T.unroll(HS_BLOCK):
                    if masked:
                        x[j] = (A[a0 + blk * HS_BLOCK + j] ^ W[w0 + blk * HS_BLOCK + j]) & M[
                            m0 + blk * HS_BLOCK + j]
                    else:
                        x[j] = A[a0 + blk * HS_BLOCK + j] ^ W[w0 + blk * HS_BLOCK + j]
                # (twos_a, ones) = CSA(ones, x0, x1); (twos_b, ones) = CSA(ones, x2, x3)
                u0 = T.bind(ones[0] ^ x[0])
                twos_a[0] = (ones[0] & x[0]) | (u0 & x[1])
                ones[0] = u0 ^ x[1]
                u1 = T.bind(ones[0] ^ x[2])
                twos_b[0] = (ones[0] & x[2]) | (u1 & x[3])
                ones[0] = u1 ^ x[3]
                # (fours_a, twos) = CSA(twos, twos_a, twos_b)
                u2 = T.bind(twos[0] ^ twos_a[0])
                fours_a[0] = (twos[0] & twos_a[0]) | (u2 & twos_b[0])
                twos[0] = u2 ^ twos_b[0]
                # the same for x4..x7 -> fours_b
                u3 = T.bind(ones[0] ^ x[4])
                twos_a[0] = (ones[0] & x[4]) | (u3 & x[5])
                ones[0] = u3 ^ x[5]
                u4 = T.bind(ones[0] ^ x[6])
                twos_b[0] = (ones[0] & x[6]) | (u4 & x[7])
                ones[0] = u4 ^ x[7]
                u5 = T.bind(twos[0] ^ twos_a[0])
                fours_b[0] = (twos[0] & twos_a[0]) | (u5 & twos_b[0])
                twos[0] = u5 ^ twos_b[0]
                # (eights, fours) = CSA(fours, fours_a, fours_b); only eights is counted here
                u6 = T.bind(fours[0] ^ fours_a[0])
                eights = T.bind((fours[0] & fours_a[0]) | (u6 & fours_b[0]))
                fours[0] = u6 ^ fours_b[0]
                eights_total[0] = eights_total[0] + T.Cast("int32", T.popcount(eights))
            count[0] = (
                count[0]
                + eights_total[0] * 8
                + T.Cast("int32", T.popcount(fours[0])) * 4
                + T.Cast("int32", T.popcount(twos[0])) * 2
                + T.Cast("int32", T.popcount(ones[0]))
            )
        for j in range(tail0, words):
            if masked:
                count[0] = count[0] + T.Cast(
                    "int32", T.popcount((A[a0 + j] ^ W[w0 + j]) & M[m0 + j]))
            else:
                count[0] = count[0] + T.Cast("int32", T.popcount(A[a0 + j] ^ W[w0 + j]))

    return popsum
