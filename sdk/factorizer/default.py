"""The decoder users get when they choose nothing: exhaustive search's answer, cheaply.

One-hot codebooks use certified candidate search (`certified.py`): the answer equals exhaustive
search's (same scores, same tie-break) whenever it is certified, which clean and mildly noisy
queries are at the first round, and it falls back to exhaustive search by cost. General (GSBC)
codebooks have no index to search, so they get exhaustive search within its limit and the
published iterative decoder beyond it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import published
from .certified import CertifiedSearch
from .exhaustive import DEFAULT_LIMIT, best_products, unravel
from .inputs import as_codebooks, as_queries, no_extra, positive_int


def decode(
    queries: Any,
    codebooks: Any,
    *,
    limit: int = DEFAULT_LIMIT,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Best product by inner product, certified or by exhaustive fallback.

    `iterations` counts search rounds (width 1, 2, 4, ... then exhaustive search). `limit` is
    the largest M^F exhaustive search may enumerate; `seed` only matters for general codebooks
    beyond that limit (published fallback).
    """
    no_extra(options, "default")
    q = np.asarray(queries)
    cb = as_codebooks(codebooks, q.shape)
    s = as_queries(q, cb)
    limit = positive_int("limit", limit)
    seed = positive_int("seed", seed, 0)
    if cb.is_onehot:
        idx, rounds, _ = CertifiedSearch(cb).search(s, limit)
        return idx, rounds
    if cb.products <= limit:
        arg, _ = best_products(s, cb)
        return unravel(arg, cb.F, cb.M), np.ones(s.shape[0], dtype=np.int64)
    return published.decode(s, cb, seed=seed)
