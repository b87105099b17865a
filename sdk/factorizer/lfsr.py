"""The fixed-point decoders' random source: a 32-bit Galois LFSR, one per query.

Why an LFSR: C and RTL must draw exactly the numbers the golden model draws, with a few
gates and no multiplier. Specification (FACTORIZER.md, "Fixed point"):

- state: 32 bits, never 0; started for every query from the decoder's `seed` as
  `start(seed) = (seed * 0x9E3779B9 + 0x6D2B79F5) mod 2^32`, replaced by 1 if that is 0;
- step: `out = state & 1; state >>= 1; if out: state ^= TAPS` with TAPS = 0x80200003
  (x^32 + x^22 + x^2 + x + 1, maximal length), and the step's value is the new state;
- a draw of A distinct indices out of M is A steps of a Fisher-Yates shuffle over a
  per-query permutation `perm` (the identity at the start of the query, kept between draws):
  for j in 0..A-1: r = step() mod (M - j); swap perm[j] and perm[j + r]; the draw is
  perm[0..A-1]. (The modulo's bias is part of the specification, not an accident to fix.)
"""

from __future__ import annotations

import numpy as np

TAPS = 0x80200003
GOLDEN = 0x9E3779B9
OFFSET = 0x6D2B79F5
MASK = 0xFFFFFFFF


def start(seed: int) -> int:
    """A query's initial state for decoder seed `seed` (any int >= 0)."""
    state = (int(seed) * GOLDEN + OFFSET) & MASK
    return state or 1


def step(state: np.ndarray) -> np.ndarray:
    """One Galois step of every state in `state` (uint64 array holding 32-bit values)."""
    out = state & np.uint64(1)
    state = state >> np.uint64(1)
    return np.where(out == 1, state ^ np.uint64(TAPS), state)


def draw(state: np.ndarray, perm: np.ndarray, rows: np.ndarray, A: int) -> np.ndarray:
    """Draw A indices for the queries `rows`, advancing their states and permutations in place.

    state: uint64 [N]; perm: int64 [N, M]; returns int64 [len(rows), A].
    """
    M = perm.shape[1]
    s = state[rows]
    p = perm[rows]
    ar = np.arange(rows.size)
    for j in range(A):
        s = step(s)
        r = (s % np.uint64(M - j)).astype(np.int64)
        other = j + r
        pj, po = p[ar, j].copy(), p[ar, other].copy()
        p[ar, j], p[ar, other] = po, pj
    state[rows] = s
    perm[rows] = p
    return p[:, :A].copy()
