"""Similarities between unbound estimates [n, B, L] and one factor's codevectors.

One-hot codebooks get gather-based paths costing O(n*M*B) after O(n*B*L) per-block
preprocessing, instead of O(n*M*B*L): that is the point of storing index tables. Sums over
blocks run in a fixed order (block 0, 1, ...) so that the same product scored by two decoders
gives bit-identical floats and ties are broken the same way everywhere.
"""

from __future__ import annotations

import numpy as np

from .codebooks import Codebooks

_CHUNK = 1 << 22  # elements per temporary in dense paths


def sum_blocks(g: np.ndarray) -> np.ndarray:
    """Sum over the last (block) axis in a fixed left-to-right order."""
    out = g[..., 0].copy()
    for b in range(1, g.shape[-1]):
        out += g[..., b]
    return out


def gather_codevectors(u: np.ndarray, idx_f: np.ndarray) -> np.ndarray:
    """u [n, B, L] at the hot positions of codevectors idx_f [M, B] -> [n, M, B]."""
    n, B, L = u.shape
    flat = idx_f + (np.arange(B, dtype=np.int64) * L)[None, :]
    return u.reshape(n, B * L)[:, flat]


def score_positions(s: np.ndarray, pos: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Inner products of queries s [n, B, L] with one-hot products given by hot positions.

    pos [K, B] with rows [K] (the query of each product), or pos [K, B] scored against every
    query when rows is None (-> [n, K]).
    """
    n, B, L = s.shape
    flat = pos + (np.arange(B, dtype=np.int64) * L)
    s2 = s.reshape(n, B * L)
    if rows is None:
        return sum_blocks(s2[:, flat])
    return sum_blocks(s2[rows[:, None], flat])


def dot_onehot(u: np.ndarray, idx_f: np.ndarray) -> np.ndarray:
    """Inner product with one-hot codevectors: a gather-and-add, [n, M]."""
    return sum_blocks(gather_codevectors(u, idx_f))


def linf_onehot(u: np.ndarray, idx_f: np.ndarray) -> np.ndarray:
    """1 - max over (block, position) of |u - c| for one-hot c, [n, M], in O(n*M*B).

    Off the hot position |u - c| = |u|, so per block only the largest |u| and the runner-up
    (for when the largest sits on the hot position) are needed.
    """
    a = np.abs(u)
    pos1 = np.argmax(a, axis=-1)
    top1 = np.take_along_axis(a, pos1[..., None], -1)[..., 0]
    if u.shape[-1] > 1:
        rest = a.copy()
        np.put_along_axis(rest, pos1[..., None], -np.inf, -1)
        top2 = rest.max(axis=-1)
    else:
        top2 = np.full_like(top1, -np.inf)
    g = gather_codevectors(u, idx_f)
    other = np.where(idx_f[None] == pos1[:, None, :], top2[:, None, :], top1[:, None, :])
    dev = np.maximum(np.abs(1.0 - g), other)
    return 1.0 - dev.max(axis=-1)


def dot_dense(u: np.ndarray, cb_f: np.ndarray) -> np.ndarray:
    """Inner product with dense codevectors cb_f [M, B, L] -> [n, M]."""
    return np.einsum("nd,md->nm", u.reshape(u.shape[0], -1), cb_f.reshape(cb_f.shape[0], -1))


def linf_dense(u: np.ndarray, cb_f: np.ndarray) -> np.ndarray:
    """1 - max |u - c| over (block, position) for dense codevectors, chunked over M."""
    n = u.shape[0]
    M = cb_f.shape[0]
    d = u.shape[1] * u.shape[2]
    out = np.empty((n, M))
    step = max(1, _CHUNK // max(1, n * d))
    uf = u.reshape(n, 1, d)
    cf = cb_f.reshape(M, d)
    for lo in range(0, M, step):
        out[:, lo : lo + step] = 1.0 - np.abs(uf - cf[None, lo : lo + step]).max(axis=-1)
    return out


def similarity(u: np.ndarray, cb: Codebooks, f: int, kind: str) -> np.ndarray:
    """`kind` in {'linf', 'dot'} between u [n, B, L] and factor f's codevectors -> [n, M]."""
    if cb.indices is not None:
        idx_f = cb.indices[f]
        return linf_onehot(u, idx_f) if kind == "linf" else dot_onehot(u, idx_f)
    assert cb.dense is not None
    return linf_dense(u, cb.dense[f]) if kind == "linf" else dot_dense(u, cb.dense[f])


def bundle(act: np.ndarray, cb: Codebooks, f: int) -> np.ndarray:
    """Activation-weighted sum of factor f's codevectors, [n, M] -> [n, B, L], unnormalised.

    One-hot: scatter-add of the nonzero activations only (O(nnz*B) <= O(n*M*B)); entries are
    accumulated in codevector order per query, so a row's result never depends on its batch.
    """
    n, _M = act.shape
    _, _, B, L = cb.shape
    if cb.indices is not None:
        rows, cols = np.nonzero(act)
        flat = (rows[:, None] * (B * L) + np.arange(B) * L + cb.indices[f][cols]).ravel()
        w = np.repeat(act[rows, cols], B)
        return np.bincount(flat, weights=w, minlength=n * B * L).reshape(n, B, L)
    assert cb.dense is not None
    return np.einsum("nm,mbl->nbl", act, cb.dense[f])
