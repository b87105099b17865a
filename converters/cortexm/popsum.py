"""The XNOR-popcount core: sum over `words` of popcount((a ^ w) [& m]).

`xor_popsum` (TIR macro, the conv kernels): blocks of 8 words go through Harley-Seal carry-save
adders (DESIGN.md, "Cortex-M backend"): 7 CSAs (5 bitwise ops each) fold 8 words into
ones/twos/fours/eights, and only `eights` is popcounted per block; ones/twos/fours are
popcounted once at the end. Leftover words (fewer than 8) take one popcount each. On a
Cortex-M4 this is ~0.36 instructions per binary MAC at K = 1024 against ~0.54 for one SWAR
popcount per word.

The optional mask operand `m` (ANDed into every word) zeroes padded conv taps.

`xor_popcount_expr` (binary x binary dense): one straight-line expression per chunk of up to
32 words, ~0.32 instructions per binary MAC at K = 1024 (see its docstring).
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


# ---------------------------------------------------------------------------- dense rows
# Words per straight-line chunk of `xor_popcount_expr` (binary dense): every word of a chunk
# is loaded at a constant offset and the carry-save tree is fully unrolled, so no per-block
# loop state, branch or index arithmetic survives; longer rows loop over chunks.
DENSE_CHUNK = 32


def xor_popcount_expr(A, a0, W, w0, n: int):
    """int32 PrimExpr: sum over j < n of popcount(A[a0 + j] ^ W[w0 + j]), one straight line.

    Built in Python (not TVMScript) as nested Let bindings, which the C generator prints as
    one local per step. The words go through a greedy carry-save counter: each weight level
    keeps its running sum word and folds every two new words in with one CSA (5 bitwise ops),
    sending the carry one level up, so the n words cost about n - log2(n) CSAs; only the
    remaining ~log2(n) level words (weights 1, 2, 4, ...) are popcounted, once per chunk.
    """
    from tvm import tirx

    binds = []

    def bind(value):
        var = tirx.Var(f"hs{len(binds)}", "uint32")
        binds.append((var, value))
        return var

    levels: list[list] = []

    def add(level: int, x) -> None:
        while len(levels) <= level:
            levels.append([])
        words = levels[level]
        words.append(x)
        if len(words) == 3:
            s, b, c = words
            u = bind(s ^ b)
            high = bind((s & b) | (u & c))
            levels[level] = [bind(u ^ c)]
            add(level + 1, high)

    for j in range(n):
        add(0, bind(A[a0 + j] ^ W[w0 + j]))
    total = _weighted_popcount(bind, [(x, level) for level, ws in enumerate(levels) for x in ws])
    for var, value in reversed(binds):
        total = tirx.Let(var, value, total)
    return total


def _weighted_popcount(bind, terms):
    """int32 sum of popcount(x) << level over `terms` [(x, level)], sharing SWAR steps.

    Each word is reduced to 4-bit counts (<= 4); words of nearby levels are added there as
    long as a nibble stays <= 15, and each such group pays the byte step and the horizontal
    (multiply) sum once, instead of every word paying a whole popcount.
    """
    from tvm import tirx

    def u32(v):
        return tirx.const(v, "uint32")

    def nibbles(x):
        b = bind(x - ((x >> u32(1)) & u32(0x55555555)))
        return bind((b & u32(0x33333333)) + ((b >> u32(2)) & u32(0x33333333)))

    groups = []  # [base level, nibble max, expr]
    for x, level in sorted(terms, key=lambda t: t[1]):
        g = groups[-1] if groups else None
        if g is not None and g[1] + (4 << (level - g[0])) <= 15:
            g[1] += 4 << (level - g[0])
            g[2] = g[2] + (nibbles(x) << u32(level - g[0])) if level > g[0] else g[2] + nibbles(x)
        else:
            groups.append([level, 4, nibbles(x)])
    total = tirx.const(0, "int32")
    for base, _, expr in groups:
        g = bind(expr)
        # nibbles may exceed 7 here, so mask before adding (bytes <= 30, their sum <= 120)
        bytes_ = bind((g & u32(0x0F0F0F0F)) + ((g >> u32(4)) & u32(0x0F0F0F0F)))
        term = tirx.Cast("int32", (bytes_ * u32(0x01010101)) >> u32(24))
        total = total + (term * (1 << base) if base else term)
    return total
