"""Codebooks: one-hot sparse block codes (SBC) as index tables, general GSBC blocks as dense arrays.

A one-hot codevector is fully described by its B hot positions, so the factorizer keeps one-hot
codebooks as an index table [F, M, B] (what C and RTL store, log2(L) bits an entry) and only
falls back to dense [F, M, B, L] blocks for generalised codes. `Codebooks` holds exactly one of
the two forms, validated once, so decoders never re-check shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import EdgeError


@dataclass(frozen=True, eq=False)
class Codebooks:
    """F codebooks of M codevectors, each B blocks of length L.

    `indices` ([F, M, B] int64, entries 0..L-1) is set for one-hot codebooks, `dense`
    ([F, M, B, L] float64, every block normalised to sum 1) for general ones; never both.
    Build with `from_indices`, `from_dense`, `random_sbc` or `random_gsbc`.
    """

    L: int
    indices: np.ndarray | None = None
    dense: np.ndarray | None = None

    @property
    def is_onehot(self) -> bool:
        """Whether the index-table fast paths apply."""
        return self.indices is not None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(F, M, B, L)."""
        table = self.indices if self.indices is not None else self.dense
        assert table is not None
        f, m, b = table.shape[:3]
        return int(f), int(m), int(b), int(self.L)

    @property
    def F(self) -> int:
        """Number of factors."""
        return self.shape[0]

    @property
    def M(self) -> int:
        """Codevectors per factor."""
        return self.shape[1]

    @property
    def B(self) -> int:
        """Blocks per vector."""
        return self.shape[2]

    @property
    def products(self) -> int:
        """M^F, the number of combinations (exact Python int, may exceed int64)."""
        return int(self.M) ** int(self.F)

    def as_dense(self) -> np.ndarray:
        """[F, M, B, L] float64 blocks (one-hot codebooks expanded)."""
        if self.dense is not None:
            return self.dense
        assert self.indices is not None
        return indices_to_dense(self.indices, self.L).reshape(*self.indices.shape, self.L)

    @staticmethod
    def from_indices(indices: np.ndarray, L: int) -> Codebooks:
        """One-hot codebooks from an index table [F, M, B] with entries in 0..L-1."""
        idx = np.asarray(indices)
        if idx.ndim != 3 or min(idx.shape) < 1:
            raise EdgeError(f"codebook index table must be [F, M, B], got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise EdgeError(f"codebook index table must hold integers, got {idx.dtype}")
        if int(L) < 1:
            raise EdgeError(f"block length L must be >= 1, got {L}")
        if idx.min() < 0 or idx.max() >= L:
            raise EdgeError(
                f"codebook indices must lie in 0..{L - 1}, got {idx.min()}..{idx.max()}"
            )
        _check_product_count(idx.shape[0], idx.shape[1])
        return Codebooks(L=int(L), indices=np.ascontiguousarray(idx, dtype=np.int64))

    @staticmethod
    def from_dense(dense: np.ndarray, B: int | None = None) -> Codebooks:
        """Codebooks from dense [F, M, B, L] (or [F, M, B*L] with B given) blocks.

        One-hot blocks (exactly one positive entry each) become an index table, so the caller
        gets the fast paths without asking; other blocks are normalised to sum 1.
        """
        arr = np.asarray(dense, dtype=np.float64)
        if arr.ndim == 3:
            if B is None:
                raise EdgeError(
                    f"dense codebooks of shape {arr.shape} need B: pass [F, M, B, L] or B="
                )
            if B < 1 or arr.shape[2] % B:
                raise EdgeError(
                    f"codebook width {arr.shape[2]} is not a multiple of B={B} blocks"
                )
            arr = arr.reshape(arr.shape[0], arr.shape[1], B, arr.shape[2] // B)
        if arr.ndim != 4 or min(arr.shape) < 1:
            raise EdgeError(f"dense codebooks must be [F, M, B, L], got shape {arr.shape}")
        if B is not None and arr.shape[2] != B:
            raise EdgeError(f"codebooks have {arr.shape[2]} blocks, expected B={B}")
        if not np.all(np.isfinite(arr)):
            raise EdgeError("codebooks contain non-finite entries")
        if (arr < 0).any():
            raise EdgeError("codebooks must be non-negative (GSBC blocks), found a negative entry")
        sums = arr.sum(axis=-1)
        if (sums <= 0).any():
            raise EdgeError("every codebook block needs a positive entry, found an all-zero block")
        _check_product_count(arr.shape[0], arr.shape[1])
        idx = dense_to_indices(arr)
        if idx is not None:
            return Codebooks(L=int(arr.shape[3]), indices=idx)
        return Codebooks(L=int(arr.shape[3]), dense=np.ascontiguousarray(arr / sums[..., None]))


def _check_product_count(F: int, M: int) -> None:
    """Flat product indices are int64: refuse M^F beyond it rather than overflow silently."""
    if int(M) ** int(F) > np.iinfo(np.int64).max:
        raise EdgeError(f"M^F = {M}^{F} exceeds int64; use fewer or smaller codebooks")


def random_sbc(F: int, M: int, B: int, L: int, seed: int = 0) -> Codebooks:
    """Random one-hot codebooks (uniform hot positions), reproducible from `seed`."""
    for name, v in (("F", F), ("M", M), ("B", B), ("L", L)):
        if int(v) < 1:
            raise EdgeError(f"{name} must be >= 1, got {v}")
    rng = np.random.default_rng(seed)
    return Codebooks.from_indices(rng.integers(0, L, size=(F, M, B), dtype=np.int64), L)


def random_gsbc(
    F: int, M: int, B: int, L: int, seed: int = 0, spread: float = 0.5
) -> Codebooks:
    """Random general (non one-hot) codebooks: a hot position plus `spread` of uniform mass.

    Each block is (1 - spread) * one-hot + spread * (random non-negative, summing to 1), so
    the codes stay decodable while exercising every general-block path.
    """
    if not 0.0 < spread <= 1.0:
        raise EdgeError(f"spread must be in (0, 1], got {spread}")
    rng = np.random.default_rng(seed)
    hot = rng.integers(0, L, size=(F, M, B))
    dense = spread * rng.dirichlet(np.ones(L), size=(F, M, B))
    np.put_along_axis(
        dense, hot[..., None], np.take_along_axis(dense, hot[..., None], -1) + 1 - spread, -1
    )
    return Codebooks(L=int(L), dense=dense / dense.sum(-1, keepdims=True))


def indices_to_dense(indices: np.ndarray, L: int) -> np.ndarray:
    """Index table [..., B] -> one-hot float64 [..., B*L]."""
    idx = np.asarray(indices, dtype=np.int64)
    out = np.zeros((*idx.shape, L), dtype=np.float64)
    np.put_along_axis(out, idx[..., None], 1.0, axis=-1)
    return out.reshape(*idx.shape[:-1], idx.shape[-1] * L)


def dense_to_indices(dense: np.ndarray, B: int | None = None) -> np.ndarray | None:
    """Dense [F, M, B, L] (or [..., B*L] with B) -> index table, or None if any block is not
    one-hot (exactly one positive entry; its scale is irrelevant once blocks are normalised)."""
    arr = np.asarray(dense)
    if B is not None:
        arr = arr.reshape(*arr.shape[:-1], B, arr.shape[-1] // B)
    nonzero = np.count_nonzero(arr, axis=-1)
    if not np.all(nonzero == 1) or (arr < 0).any():
        return None
    return np.argmax(arr, axis=-1).astype(np.int64)
