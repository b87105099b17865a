"""The published block-code factorizer (Hersche et al.), and the plain resonator (T = 0, A = 0).

Step by step as FACTORIZER.md states it, with one deliberate difference from the authors'
batch code: every query is decoded independently. Each query owns a random stream started
from `seed` that advances by one draw at every (iteration, factor) step whether or not the
query resamples; since all streams start from the same seed, the draw of a step is the same
for every query, so one shared generator serves the whole batch and "the same draw for every
resampled query in that step" still holds. A query's answer and iteration count are fixed at
the iteration where all its factors converge; it then leaves the batch, so its answer can never
depend on which other queries share the call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from .codebooks import Codebooks
from .hyperparams import default_max_iters, paper_a_t
from .inputs import as_codebooks, as_queries, choice, no_extra, positive_int
from .similarity import bundle, similarity

PULLUP = 0.9


def initial_estimates(cb: Codebooks) -> np.ndarray:
    """Mean of every factor's codevectors, blocks normalised to sum 1: [F, B, L]."""
    F, M, _B, _L = cb.shape
    init = np.stack([bundle(np.ones((1, M)), cb, f)[0] for f in range(F)])
    return init / init.sum(axis=-1, keepdims=True)


def _activate(
    sim: np.ndarray, T: float, A: int, draw: np.ndarray | None, pullup: float
) -> tuple[np.ndarray, np.ndarray]:
    """Steps c-f for one factor: threshold, conditional sampling, pull-up -> (act, converged)."""
    act = sim.copy()
    if T > 0:
        act[act < T] = 0.0
        empty = ~act.any(axis=1)
        act[empty] = sim[empty]
    low = act.max(axis=1) <= T
    if A > 0 and low.any():
        sampled = np.zeros(sim.shape[1])
        if draw is None:
            sampled[:] = A
        else:
            sampled[draw] = A
        act[low] = sampled
    top = np.argmax(act, axis=1)
    top_val = act[np.arange(act.shape[0]), top]
    pulled = (top_val >= pullup) & ~low
    if pulled.any():
        rows = np.nonzero(pulled)[0]
        act[rows] = 0.0
        act[rows, top[rows]] = top_val[rows]
    return act, pulled


def _normalise(x: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Blocks to sum 1; a block with no mass (every activation 0) restarts from `fallback`."""
    sums = x.sum(axis=-1, keepdims=True)
    ok = sums > 0
    return np.where(ok, x / np.where(ok, sums, 1.0), fallback)


def iterate(
    s: np.ndarray,
    cb: Codebooks,
    *,
    similarity_kind: str,
    T: float,
    A: int,
    max_iters: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The published loop on normalised queries s [N, B, L] -> (indices [N, F], iterations [N])."""
    N = s.shape[0]
    F, M, B, L = cb.shape
    pullup = PULLUP * (B if similarity_kind == "dot" else 1)
    init = initial_estimates(cb)
    out_idx = np.zeros((N, F), dtype=np.int64)
    out_it = np.full(N, max_iters, dtype=np.int64)
    if N == 0:
        return out_idx, out_it
    rng = np.random.default_rng(seed)
    draws = 0 < A < M
    live = np.arange(N)
    s_spec = np.fft.rfft(s)
    x_spec = np.broadcast_to(np.fft.rfft(init), (N, *init.shape[:-1], L // 2 + 1)).copy()
    for it in range(1, max_iters + 1):
        sims = np.empty((live.size, F, M))
        conv = np.ones(live.size, dtype=bool)
        for f in range(F):
            spec = s_spec.copy()
            for g in range(F):
                if g != f:
                    spec *= np.conj(x_spec[:, g])
            u = np.fft.irfft(spec, n=L)
            sim = similarity(u, cb, f, similarity_kind)
            draw = rng.choice(M, A, replace=False) if draws else None
            act, pulled = _activate(sim, T, A, draw, pullup)
            conv &= pulled
            sims[:, f] = sim
            x_spec[:, f] = np.fft.rfft(_normalise(bundle(act, cb, f), init[f]))
        done = conv if it < max_iters else np.ones(live.size, dtype=bool)
        if done.any():
            out_idx[live[done]] = np.argmax(np.abs(sims[done]), axis=-1)
            out_it[live[done & conv]] = it
            keep = ~done
            live, s_spec, x_spec = live[keep], s_spec[keep], x_spec[keep]
        if live.size == 0:
            break
    return out_idx, out_it


def decode(
    queries: Any,
    codebooks: Any,
    *,
    similarity: str = "linf",
    A: int | None = None,
    T: float | None = None,
    max_iters: int | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's factorizer: `linf` or `dot` similarity, threshold T, sampling width A.

    A and T default to the paper's tuned values for the nearest tabulated (D, F, B),
    interpolated in log M; max_iters defaults to M^(F-1)/F.
    """
    no_extra(options, "published")
    q = np.asarray(queries)
    cb = as_codebooks(codebooks, q.shape)
    s = as_queries(q, cb)
    F, M, B, L = cb.shape
    kind = choice("similarity", similarity, ("linf", "dot"))
    a_def, t_def = paper_a_t(B * L, F, B, M)
    A = a_def if A is None else positive_int("A", A, 0)
    if T is None:
        T = t_def
    elif isinstance(T, bool) or not isinstance(T, (int, float, np.floating)) or not T >= 0:
        raise EdgeError(f"T must be a number >= 0, got {T!r}")
    iters = default_max_iters(M, F) if max_iters is None else positive_int("max_iters", max_iters)
    seed = positive_int("seed", seed, 0)
    return iterate(s, cb, similarity_kind=kind, T=float(T), A=A, max_iters=iters, seed=seed)


def decode_resonator(
    queries: Any,
    codebooks: Any,
    *,
    similarity: str = "linf",
    max_iters: int | None = None,
    seed: int = 0,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The same loop without threshold or sampling (T = 0, A = 0): a plain resonator."""
    no_extra(options, "resonator")
    return decode(
        queries, codebooks, similarity=similarity, A=0, T=0.0, max_iters=max_iters, seed=seed
    )
