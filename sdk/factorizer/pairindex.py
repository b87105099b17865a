"""An index of partial products keyed by their hot positions in two blocks.

For one-hot codes the product of combos (e, c) has hot position (shift_e[b] + pos_c[b]) mod L.
Fixing the positions a query shows in blocks b1 and b2 and the enumerated part e therefore
fixes pos_c at (b1, b2): a lookup key. Each pair of blocks gets a sorted key array (and, when
L^2 is small, a bucket-start table for O(1) lookups), built once per decode call. This is what
lets the default decoder look at ~M^F / L^2 candidate products instead of all M^F.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_DIRECT_KEYS = 1 << 22  # use bucket-start tables while pairs * L^2 stays below this


@dataclass
class PairIndex:
    """Sorted keys pos[c, b1] * L + pos[c, b2] of partial products, for every block pair."""

    pos: np.ndarray  # [C, B] hot positions of the indexed partial products
    L: int
    pairs: list[tuple[int, int]]
    order: list[np.ndarray] = field(default_factory=list)  # per pair: argsort of keys
    keys: list[np.ndarray] = field(default_factory=list)  # per pair: sorted keys
    starts: list[np.ndarray] = field(default_factory=list)  # per pair: bucket starts [L^2+1]

    @staticmethod
    def build(pos: np.ndarray, L: int, pairs: list[tuple[int, int]]) -> PairIndex:
        """Index partial products with hot positions pos [C, B] under every pair of blocks."""
        idx = PairIndex(pos=pos, L=L, pairs=pairs)
        direct = len(pairs) * (L * L + 1) <= _DIRECT_KEYS
        for b1, b2 in pairs:
            key = pos[:, b1] * L + pos[:, b2]
            order = np.argsort(key, kind="stable")
            idx.order.append(order)
            idx.keys.append(key[order])
            if direct:
                counts = np.bincount(key, minlength=L * L)
                idx.starts.append(np.concatenate(([0], np.cumsum(counts))))
        return idx

    def ranges(self, p: int, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lo, hi) ranges into `order[p]` of the partial products with this key."""
        if self.starts:
            st = self.starts[p]
            return st[key], st[key + 1]
        k = self.keys[p]
        return np.searchsorted(k, key, "left"), np.searchsorted(k, key, "right")


def expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranges [lo, hi) -> (owner of each element, element position), flattened."""
    counts = (hi - lo).ravel()
    owner = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    offset = np.arange(owner.size) - first[owner]
    return owner, lo.ravel()[owner] + offset
