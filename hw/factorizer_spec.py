"""What a factorizer block is built from: sizes, integer levels and ROM words, validated once.

Why a separate spec: the Amaranth blocks, the cocotb bench and the tests must agree on the
settings the golden model (`edge_sdk.factorizer.fixed`) applies by default (A, T, max_iters from
the paper table, T_int/P_int from `fixed.levels`) and on how results are packed in the output
word; deriving them here, from the same functions the golden model calls, keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed
from edge_sdk.factorizer.hyperparams import default_max_iters, paper_a_t

QUERY_BITS = 32  # input beat: one raw query entry (< 2^31, as fixed.as_int_queries requires)


def _bits(v: int) -> int:
    return max(1, int(v).bit_length())


@dataclass(frozen=True)
class FactorizerSpec:
    """One decoder instance: codebook index table, fixed-point settings and parallelism."""

    indices: tuple  # [F][M][B] hot positions
    F: int
    M: int
    B: int
    L: int
    method: str  # "published" or "default"
    kind: str = "linf"
    A: int = 0
    t_int: int = 0
    p_int: int = 0
    max_iters: int = 1
    seed: int = 0
    qbits: int = fixed.QBITS
    xbits: int = fixed.XBITS
    lanes: int = 4  # codevectors per cycle (similarity, bundling) / products per cycle (search)
    corr_lanes: int = 8  # unbound entries u[l] computed per cycle (published; divides L)

    @property
    def groups(self) -> int:
        """ROM words per factor: codevectors in groups of `lanes`."""
        return -(-self.M // self.lanes)

    @property
    def pos_bits(self) -> int:
        return _bits(self.L - 1)

    @property
    def index_bits(self) -> int:
        return _bits(self.M - 1)

    @property
    def iter_bits(self) -> int:
        return _bits(self.max_iters)

    @property
    def out_bits(self) -> int:
        return self.F * self.index_bits + self.iter_bits

    @property
    def widths(self) -> fixed.Widths:
        return fixed.widths(self.F, self.M, self.B, self.L, self.qbits, self.xbits)

    def rom_words(self, factors: range | None = None) -> list[int]:
        """Codebook ROM: word (f, group) holds lanes x B positions, lane-major, block-minor."""
        pb, words = self.pos_bits, []
        for f in factors if factors is not None else range(self.F):
            for grp in range(self.groups):
                w = 0
                for p in range(self.lanes):
                    m = grp * self.lanes + p
                    if m < self.M:
                        for b in range(self.B):
                            w |= int(self.indices[f][m][b]) << ((p * self.B + b) * pb)
                words.append(w)
        return words

    def unpack(self, word: int) -> tuple[list[int], int]:
        """Output beat -> (F indices, iterations)."""
        ib = self.index_bits
        idx = [(word >> (f * ib)) & ((1 << ib) - 1) for f in range(self.F)]
        return idx, word >> (self.F * ib)


def _table(indices) -> tuple[np.ndarray, tuple]:
    arr = np.asarray(getattr(indices, "indices", indices), dtype=np.int64)
    if arr.ndim != 3 or arr.size == 0:
        raise EdgeError(f"factorizer block: index table must be [F, M, B], got {arr.shape}")
    return arr, tuple(tuple(tuple(int(v) for v in cv) for cv in fac) for fac in arr)


def _lanes(lanes: int) -> int:
    if int(lanes) < 1:
        raise EdgeError(f"factorizer block: lanes must be >= 1, got {lanes}")
    return int(lanes)


def published_spec(indices, L: int, *, similarity: str = "linf", A: int | None = None,
                   T: float | None = None, max_iters: int | None = None, seed: int = 0,
                   qbits: int = fixed.QBITS, xbits: int = fixed.XBITS,
                   lanes: int = 4, corr_lanes: int = 8) -> FactorizerSpec:
    """Spec of the `published` decoder with fixed.decode_published's defaults.

    corr_lanes (clamped to L) must be a power of two, and L too: u is stored corr_lanes
    entries per RAM word, and block/position fields are address bit slices.
    """
    arr, table = _table(indices)
    F, M, B = arr.shape
    if F < 2:
        raise EdgeError(f"factorizer block: the published decoder needs F >= 2, got F={F}")
    if similarity not in ("linf", "dot"):
        raise EdgeError(f"factorizer block: similarity must be linf or dot, got {similarity!r}")
    fixed.widths(F, M, B, L, qbits, xbits)
    a_def, t_def = paper_a_t(B * L, F, B, M)
    A = a_def if A is None else int(A)
    T = t_def if T is None else float(T)
    t_int, p_int = fixed.levels(similarity, B, qbits, T)
    iters = default_max_iters(M, F) if max_iters is None else int(max_iters)
    cl = min(_lanes(corr_lanes), L)
    for name, v in (("L", L), ("corr_lanes", cl)):
        if v & (v - 1):
            raise EdgeError(f"factorizer block: {name}={v} must be a power of two")
    return FactorizerSpec(table, F, M, B, L, "published", similarity, A, t_int, p_int, iters,
                          int(seed), qbits, xbits, _lanes(lanes), cl)


def default_spec(indices, L: int, *, qbits: int = fixed.QBITS, lanes: int = 4) -> FactorizerSpec:
    """Spec of the `default` decoder: exhaustive integer search, iterations always 1."""
    arr, table = _table(indices)
    F, M, B = arr.shape
    fixed.widths(F, M, B, L, qbits, fixed.XBITS)
    return FactorizerSpec(table, F, M, B, L, "default", max_iters=1, qbits=qbits,
                          lanes=_lanes(lanes))
