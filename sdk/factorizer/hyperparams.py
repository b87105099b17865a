"""Default A (sampling width) and T (activation threshold) for the published decoder.

The paper tuned A and T per (D, F, B, M); a user's size is rarely tabulated, so take the
nearest tabulated (D, F, B) and interpolate in log M between the bracketing rows (clamped at
the ends). "Nearest" prefers the same F, then the closest B, then the closest D, in log2
steps: F changes the dynamics most, D least.
"""

from __future__ import annotations

import math

from ._paper_table import TABLES


def nearest_table(D: int, F: int, B: int) -> tuple[int, int, int]:
    """Key (D, F, B) of the tabulated size closest to the given one."""

    def distance(key: tuple[int, int, int]) -> tuple[float, float, float, tuple[int, int, int]]:
        d, f, b = key
        return (abs(f - F), abs(math.log2(b) - math.log2(B)), abs(math.log2(d) - math.log2(D)), key)

    return min(TABLES, key=distance)


def paper_a_t(D: int, F: int, B: int, M: int) -> tuple[int, float]:
    """(A, T) for a size: nearest table, linear interpolation in log M, A rounded."""
    rows = TABLES[nearest_table(D, F, B)]
    ms = sorted(rows)
    if M <= ms[0]:
        return rows[ms[0]]
    if M >= ms[-1]:
        return rows[ms[-1]]
    hi = next(i for i, m in enumerate(ms) if m >= M)
    m0, m1 = ms[hi - 1], ms[hi]
    if m1 == M:
        return rows[m1]
    w = (math.log(M) - math.log(m0)) / (math.log(m1) - math.log(m0))
    (a0, t0), (a1, t1) = rows[m0], rows[m1]
    return round(a0 + w * (a1 - a0)), t0 + w * (t1 - t0)


def default_max_iters(M: int, F: int) -> int:
    """M^(F-1) / F, where the iterative search costs as much as exhaustive search (>= 1)."""
    return max(1, int(M) ** (int(F) - 1) // int(F))
