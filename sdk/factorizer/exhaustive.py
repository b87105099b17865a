"""Exhaustive search: the best product by inner product over all M^F combinations.

The accuracy ceiling every other decoder is measured against. Products are enumerated in
lexicographic order (factor 1 slowest) in chunks that keep temporaries near a fixed size; ties
go to the lowest flat index m_1*M^(F-1) + ... + m_F, as `np.argmax` and fixed point do.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from .binding import product_vectors
from .codebooks import Codebooks
from .inputs import as_codebooks, as_queries, no_extra, positive_int
from .similarity import score_positions

DEFAULT_LIMIT = 10**8
_CHUNK = 1 << 22  # elements per temporary


def unravel(flat: np.ndarray, F: int, M: int) -> np.ndarray:
    """Flat product indices [N] -> factor indices [N, F] (factor 1 most significant)."""
    out = np.empty((flat.shape[0], F), dtype=np.int64)
    rest = flat.astype(np.int64)
    for f in range(F - 1, -1, -1):
        out[:, f] = rest % M
        rest = rest // M
    return out


def prefix_positions(indices: np.ndarray, lo: int, hi: int, L: int) -> np.ndarray:
    """Summed hot positions [hi-lo, B] of prefix combos lo..hi-1 of all factors but the last."""
    F, M, B = indices.shape
    combos = unravel(np.arange(lo, hi, dtype=np.int64), F - 1, M)
    pos = np.zeros((hi - lo, B), dtype=np.int64)
    for f in range(F - 1):
        pos += indices[f, combos[:, f]]
    return pos


def _scores_chunks(s: np.ndarray, cb: Codebooks):
    """Yield (first flat index, scores [n, K]) over all products, chunk by chunk."""
    n = s.shape[0]
    F, M, B, L = cb.shape
    total = M**F
    if cb.indices is not None:
        last = cb.indices[F - 1]
        n_prefix = M ** (F - 1)
        step = max(1, _CHUNK // max(1, n * M * B))
        for lo in range(0, n_prefix, step):
            hi = min(n_prefix, lo + step)
            pre = prefix_positions(cb.indices, lo, hi, L) if F > 1 else np.zeros((1, B), np.int64)
            pos = np.mod(pre[:, None, :] + last[None, :, :], L).reshape(-1, B)
            yield lo * M, score_positions(s, pos)
        return
    assert cb.dense is not None
    step = max(1, _CHUNK // max(1, (n + 2) * B * L))
    sf = s.reshape(n, -1)
    for lo in range(0, total, step):
        hi = min(total, lo + step)
        prods = product_vectors(cb.dense, unravel(np.arange(lo, hi), F, M))
        yield lo, np.einsum("nd,kd->nk", sf, prods.reshape(hi - lo, -1))


def best_products(s: np.ndarray, cb: Codebooks) -> tuple[np.ndarray, np.ndarray]:
    """(flat index [n] of the best product, its score [n]) for normalised queries s [n, B, L]."""
    n = s.shape[0]
    _F, M, B, L = cb.shape
    best = np.full(n, -np.inf)
    arg = np.zeros(n, dtype=np.int64)
    per_query = M * B if cb.is_onehot else 8 * B * L
    q_step = max(1, _CHUNK // per_query)
    for q0 in range(0, n, q_step):
        rows = slice(q0, min(n, q0 + q_step))
        sub = s[rows]
        b_sub, a_sub = best[rows], arg[rows]
        for start, sc in _scores_chunks(sub, cb):
            k = np.argmax(sc, axis=1)
            v = sc[np.arange(sub.shape[0]), k]
            better = v > b_sub
            b_sub[better] = v[better]
            a_sub[better] = start + k[better]
    return arg, best


def check_limit(cb: Codebooks, limit: int) -> None:
    """Refuse sizes whose enumeration would take too long, in one line."""
    if cb.products > limit:
        raise EdgeError(
            f"exhaustive search over M^F = {cb.M}^{cb.F} = {cb.products:.3g} products exceeds "
            f"the limit {limit:.3g}; raise limit= or use another decoder"
        )


def decode(
    queries: Any, codebooks: Any, *, limit: int = DEFAULT_LIMIT, **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Best product by inner product over all M^F combinations; iterations are all 1."""
    no_extra(options, "exhaustive")
    q = np.asarray(queries)
    cb = as_codebooks(codebooks, q.shape)
    s = as_queries(q, cb)
    check_limit(cb, positive_int("limit", limit))
    arg, _ = best_products(s, cb)
    return unravel(arg, cb.F, cb.M), np.ones(s.shape[0], dtype=np.int64)
