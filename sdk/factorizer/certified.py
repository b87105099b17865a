"""Certified candidate search: exhaustive search's answer without enumerating M^F products.

Idea (one-hot codebooks). Let R_b be the r positions of block b where the query is largest.
Every product whose hot positions fall in R_b1 and R_b2 for some pair of blocks (b1, b2) is
found by enumerating the first factors (e) and looking the rest (c) up in a `PairIndex` keyed
by the two positions the product must have there: about M^F * pairs * r^2 / L^2 candidates
instead of M^F. Each candidate is scored exactly as exhaustive search scores it. A product NOT
found has at most one block inside its R_b, so its score is at most

    U = sum_b t_b + max_b (max_b - t_b),   t_b = largest value of block b outside R_b.

When the best candidate beats U the answer is certified: it is the best product overall, with
exhaustive search's tie-break (lowest flat index), because every product that could tie it is
among the candidates. Otherwise r doubles; when the next round would cost more than a fraction
of exhaustive search, the query goes to exhaustive search (when within its limit) or keeps its
best, uncertified, candidate. Clean and mildly noisy queries certify at r = 1.
"""

from __future__ import annotations

import numpy as np

from .codebooks import Codebooks
from .exhaustive import best_products, unravel
from .pairindex import PairIndex, expand
from .similarity import score_positions

TABLE_LIMIT = 1 << 23  # pairs * indexed partial products
_CHUNK = 1 << 21  # elements per temporary
_LOOKUP_COST = 4.0  # relative cost of one key lookup vs one block gather of exhaustive search
_CANDIDATE_COST = 12.0  # per candidate, besides its B gathers (expand, sort, bookkeeping)
_TOL = 1e-9


def combo_positions(indices: np.ndarray, factors: range, L: int) -> np.ndarray:
    """Summed hot positions [M^k, B] of all combos (lexicographic) of the given factors."""
    _, _M, B = indices.shape
    pos = np.zeros((1, B), dtype=np.int64)
    for f in factors:
        pos = np.mod(pos[:, None, :] + indices[f][None, :, :], L).reshape(-1, B)
    return pos


class CertifiedSearch:
    """Per-codebook state (split, pair index) reused across queries and rounds."""

    def __init__(self, cb: Codebooks):
        assert cb.indices is not None
        F, M, B, L = cb.shape
        self.cb = cb
        self.pairs = [(a, b) for a in range(B) for b in range(a + 1, B)] or [(0, 0)]
        P = len(self.pairs)
        t = 1
        while t + 1 <= F - 1 and P * M ** (t + 1) <= TABLE_LIMIT:
            t += 1
        self.n_enum = F - t
        self.n_table = M**t
        self.shift = combo_positions(cb.indices, range(F - t), L)  # [M^(F-t), B]
        self.index = PairIndex.build(combo_positions(cb.indices, range(F - t, F), L), L, self.pairs)

    def round_cost(self, r: int) -> float:
        """Estimated work per query of a round at width r, in exhaustive-gather units."""
        F, M, B, L = self.cb.shape
        P = len(self.pairs)
        lookups = self.shift.shape[0] * P * r * r
        cands = P * r * r * float(M) ** F / (L * L)
        return _LOOKUP_COST * lookups + (B + _CANDIDATE_COST) * cands

    def exhaustive_cost(self) -> float:
        """Work per query of exhaustive search."""
        return float(self.cb.products) * self.cb.B

    def bound(self, s: np.ndarray, r: int) -> np.ndarray:
        """U per query: the best score any product outside the round-r candidates can reach."""
        n, B, L = s.shape
        if r >= L:
            return np.full(n, -np.inf)
        desc = -np.sort(-s, axis=-1)
        top, out = desc[..., 0], desc[..., r]
        if B == 1:
            return out[:, 0]
        return out.sum(axis=1) + (top - out).max(axis=1)

    def round(self, s: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Best candidate (flat index, score) per query among products found at width r."""
        n, B, L = s.shape
        r = min(r, L)
        top_r = np.argsort(-s, axis=-1, kind="stable")[..., :r]  # [n, B, r]
        n_e = self.shift.shape[0]
        per_q = n_e * r * r * (2 + B * max(1, self.n_table // (L * L)))
        q_step = max(1, _CHUNK // per_q)
        best = np.full(n, -np.inf)
        flat_best = np.full(n, np.iinfo(np.int64).max)
        for q0 in range(0, n, q_step):
            q1 = min(n, q0 + q_step)
            for p, (b1, b2) in enumerate(self.pairs):
                k1 = np.mod(top_r[q0:q1, b1][:, None, :] - self.shift[None, :, b1, None], L)
                k2 = np.mod(top_r[q0:q1, b2][:, None, :] - self.shift[None, :, b2, None], L)
                key = k1[..., :, None] * L + k2[..., None, :]  # [nq, n_e, r, r]
                lo, hi = self.index.ranges(p, key)
                owner, where = expand(lo, hi)
                if owner.size == 0:
                    continue
                rows = owner // (n_e * r * r) + q0
                e = (owner // (r * r)) % n_e
                c = self.index.order[p][where]
                pos = np.mod(self.shift[e] + self.index.pos[c], L)
                score = score_positions(s, pos, rows=rows)
                flat = e * self.n_table + c
                _merge(best, flat_best, rows, score, flat)
        return flat_best, best

    def search(
        self, s: np.ndarray, exhaustive_limit: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indices [n, F], rounds [n], certified [n]) for normalised queries s [n, B, L]."""
        n, B, L = s.shape
        F, M = self.cb.F, self.cb.M
        flat = np.zeros(n, dtype=np.int64)
        rounds = np.zeros(n, dtype=np.int64)
        certified = np.zeros(n, dtype=bool)
        todo = np.arange(n)
        r = 1
        exh = self.exhaustive_cost()
        while todo.size:
            if self.round_cost(r) > exh / 2 and self.cb.products <= exhaustive_limit:
                arg, _ = best_products(s[todo], self.cb)
                flat[todo], certified[todo] = arg, True
                rounds[todo] += 1
                break
            sub = s[todo]
            f_best, v_best = self.round(sub, r)
            rounds[todo] += 1
            ok = v_best > self.bound(sub, r) + _TOL * B
            found = np.isfinite(v_best)
            flat[todo[found]] = f_best[found]
            certified[todo[ok]] = True
            todo = todo[~ok]
            if r >= L or (todo.size and self.round_cost(2 * r) > exh * 4):
                break  # beyond exhaustive's limit: keep the best candidate found
            r *= 2
        return unravel(flat, F, M), rounds, certified


def _merge(
    best: np.ndarray, flat_best: np.ndarray, rows: np.ndarray, score: np.ndarray, flat: np.ndarray
) -> None:
    """Fold candidates into the per-query best: higher score, then lower flat index."""
    order = np.lexsort((flat, -score, rows))
    rows, score, flat = rows[order], score[order], flat[order]
    first = np.ones(rows.size, dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    rows, score, flat = rows[first], score[first], flat[first]
    better = (score > best[rows]) | ((score == best[rows]) & (flat < flat_best[rows]))
    best[rows[better]] = score[better]
    flat_best[rows[better]] = flat[better]
