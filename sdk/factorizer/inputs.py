"""Turn what a user passes (queries, codebooks, options) into validated arrays, once.

Every decoder starts here so shape and value errors read the same whichever decoder the user
picked, and decoders can assume [N, B, L] float64 queries whose blocks sum to 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from .codebooks import Codebooks


def as_codebooks(codebooks: Any, queries_shape: tuple[int, ...]) -> Codebooks:
    """Accept `Codebooks`, an index table [F, M, B] (int), or dense [F, M, B, L] / [F, M, B*L].

    B and L missing from the codebook form come from the query shape ([N, B, L] gives both;
    [N, B*L] gives B*L, from which L = width / B).
    """
    if isinstance(codebooks, Codebooks):
        return codebooks
    arr = np.asarray(codebooks)
    width = int(np.prod(queries_shape[1:])) if len(queries_shape) >= 2 else 0
    if arr.ndim == 3 and np.issubdtype(arr.dtype, np.integer):
        B = arr.shape[2]
        if B < 1 or width % B:
            raise EdgeError(
                f"query width {width} is not a multiple of the codebooks' B={B} blocks"
            )
        return Codebooks.from_indices(arr, width // B)
    if arr.ndim == 3:
        B = queries_shape[1] if len(queries_shape) == 3 else None
        return Codebooks.from_dense(arr, B)
    if arr.ndim == 4:
        return Codebooks.from_dense(arr)
    raise EdgeError(
        f"codebooks must be [F, M, B] indices or [F, M, B, L] blocks, got shape {arr.shape}"
    )


def as_queries(queries: Any, cb: Codebooks) -> np.ndarray:
    """Queries [N, B*L] or [N, B, L] -> float64 [N, B, L], blocks normalised to sum 1.

    Negative or non-finite entries are refused (GSBC blocks are non-negative; a network's
    output must go through e.g. a Softmax first); an all-zero block carries no evidence and
    becomes uniform.
    """
    q = np.asarray(queries, dtype=np.float64)
    _F, _M, B, L = cb.shape
    if q.ndim == 3:
        if q.shape[1:] != (B, L):
            raise EdgeError(f"queries have blocks {q.shape[1:]}, codebooks need (B, L) = {(B, L)}")
    elif q.ndim == 2:
        if q.shape[1] != B * L:
            raise EdgeError(f"query width {q.shape[1]} != B*L = {B}*{L} = {B * L}")
        q = q.reshape(q.shape[0], B, L)
    else:
        raise EdgeError(f"queries must be [N, B*L] or [N, B, L], got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise EdgeError("queries contain non-finite entries")
    if (q < 0).any():
        raise EdgeError("queries must be non-negative blocks (apply a block-wise softmax first)")
    sums = q.sum(axis=-1, keepdims=True)
    return np.where(sums > 0, q / np.where(sums > 0, sums, 1.0), 1.0 / L)


def choice(name: str, value: Any, allowed: tuple[Any, ...]) -> Any:
    """An option restricted to a few values, or a one-line EdgeError naming them."""
    if value not in allowed:
        raise EdgeError(f"unknown {name} {value!r}: use one of {', '.join(map(repr, allowed))}")
    return value


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer option >= minimum, or a one-line EdgeError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise EdgeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def no_extra(options: dict[str, Any], decoder: str) -> None:
    """Refuse option names a decoder does not know, so typos do not pass silently."""
    if options:
        raise EdgeError(f"unknown option(s) for decoder {decoder!r}: {', '.join(sorted(options))}")
