"""Block-code factorizer: decode a (noisy) product of F sparse block codevectors into F indices.

Every decoder has the signature

    decode(queries [N, B*L] or [N, B, L], codebooks, **options) -> (indices [N, F], iterations [N])

with int64 outputs, decodes every query independently of the others in its batch, and is
deterministic for a given `seed`. Codebooks are a `Codebooks`, an index table [F, M, B]
(one-hot) or dense blocks [F, M, B, L]. Decoders:

- `default`: certified candidate search; exhaustive search's answer at a fraction of its cost;
- `published`: Hersche et al.'s factorizer (threshold, sampling, `linf` similarity);
- `resonator`: the same loop with T = 0 and A = 0;
- `exhaustive`: best product by inner product over all M^F combinations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from . import default, exhaustive, published
from .binding import (
    bind_blocks,
    bind_indices,
    encode,
    product_indices,
    product_vectors,
    unbind_blocks,
    unbind_indices,
)
from .codebooks import Codebooks, dense_to_indices, indices_to_dense, random_gsbc, random_sbc
from .hyperparams import default_max_iters, paper_a_t
from .noise import make_queries, moved, soft

Decoder = Callable[..., tuple[np.ndarray, np.ndarray]]

DECODERS: dict[str, Decoder] = {
    "default": default.decode,
    "published": published.decode,
    "resonator": published.decode_resonator,
    "exhaustive": exhaustive.decode,
}


def decode(
    queries: Any, codebooks: Any, method: str = "default", **options: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Decode queries with the named decoder (see the module docstring for the options)."""
    if method not in DECODERS:
        raise EdgeError(f"unknown decoder {method!r}: use one of {', '.join(DECODERS)}")
    return DECODERS[method](queries, codebooks, **options)


__all__ = [
    "DECODERS",
    "Codebooks",
    "bind_blocks",
    "bind_indices",
    "decode",
    "default_max_iters",
    "dense_to_indices",
    "encode",
    "indices_to_dense",
    "make_queries",
    "moved",
    "paper_a_t",
    "product_indices",
    "product_vectors",
    "random_gsbc",
    "random_sbc",
    "soft",
    "unbind_blocks",
    "unbind_indices",
]
