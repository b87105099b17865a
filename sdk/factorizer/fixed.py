"""Fixed-point block-code factorizer: the integer decoders that C and RTL implement, bit for bit.

Why a second golden model: a microcontroller or an FPGA decodes in integers, and "close to the
float decoder" cannot be checked bit for bit. This module *is* the specification the targets
follow (FACTORIZER.md, "Fixed point"); the float decoders stay the reference for accuracy.
One-hot codebooks only (index tables [F, M, B]).

Numbers (Q = 2^qbits, X = 2^xbits; defaults 12 and 12):

1. Query: integers q [N, B, L] >= 0 (a float query is first made integer by `quantise`:
   blocks normalised to sum 1, then floor(s * Q + 1/2)). Each block is normalised to total
   ~Q by q'[l] = (q[l] * Q) // S (S = the block's sum; a block with S = 0 becomes Q // L
   everywhere), so the decoder accepts any non-negative integer output of a network.
2. Estimates x_f: per block, integers summing to at most X. Start: the mean of the factor's
   codevectors, x[l] = (count[l] * X) // M (count = codevectors hot at l).
3. Unbinding, for factor f: u = q'; for each other factor g in order 1..F:
   u[l] <- (sum_j u[(j + l) mod L] * x_g[j]) >> xbits   (circular correlation, floor shift),
   so every u[l] <= Q.
4. Similarity with codevector m (hot positions h_b):
   dot: sum_b u_b[h_b] (at most B*Q);
   linf: Q - max_b max(Q - u_b[h_b], max over l != h_b of u_b[l]) (at most Q).
5. Activation, with S_max = Q (linf) or B*Q (dot), T_int = floor(T * S_max + 1/2) and
   P_int = ceil(0.9 * S_max) = (9 * S_max + 9) // 10:
   a. act = sim, entries < T_int set to 0 (only when T_int > 0); if that leaves all 0, act = sim;
   b. low = max(act) <= T_int; if A > 0 and low: act = 1 at the A indices drawn by the query's
      LFSR (lfsr.py; all M when A >= M), 0 elsewhere;
   c. pull-up: k = the lowest index of max(act); if act[k] >= P_int and not low, act = act[k]
      at k and 0 elsewhere, and factor f has converged in this iteration.
6. Bundling: c_b[l] = sum of act[m] over codevectors with h_b = l; x_f,b[l] = (c_b[l] * X) //
   sum_l c_b[l]; a block with no mass restarts from step 2's estimate.
7. A query is done at the first iteration where every factor converged; its answer is, per
   factor, the lowest index of max(sim) of that iteration (at max_iters when it never
   converges). Iterations count from 1.

`default` in fixed point is exhaustive search on q' (integer scores sum_b q'_b[pos_b], lowest
flat index on ties), computed here by the certified search, which returns exhaustive search's
answer; iterations = 1. Word widths follow from (F, M, B, L, qbits, xbits): `widths` gives them
and refuses sizes whose worst case needs more than 63 bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from . import lfsr
from .certified import CertifiedSearch
from .codebooks import Codebooks
from .exhaustive import DEFAULT_LIMIT, check_limit
from .hyperparams import default_max_iters, paper_a_t
from .inputs import as_codebooks, as_queries, choice, no_extra, positive_int

QBITS = 12
XBITS = 12
MAX_BITS = 63
_FFT_EXACT = 1 << 50  # float64 FFT correlations round back to the exact integer below this


@dataclass(frozen=True)
class Widths:
    """Unsigned bits each quantity needs in the worst case (the targets size words from it)."""

    query: int  # a normalised query entry or unbound entry, <= Q
    estimate: int  # an estimate entry, <= X
    correlation: int  # one correlation sum before its shift, <= Q * X
    similarity: int  # <= B * Q
    bundle: int  # a bundled count, <= M * B * Q
    normalise: int  # bundle * X before the divide

    @property
    def largest(self) -> int:
        return max(self.query, self.estimate, self.correlation, self.similarity, self.bundle,
                   self.normalise)


def widths(F: int, M: int, B: int, L: int, qbits: int = QBITS, xbits: int = XBITS) -> Widths:
    """Worst-case widths for a problem size; EdgeError when one exceeds 63 bits."""
    q, x = 1 << qbits, 1 << xbits

    def bits(v: int) -> int:
        return int(v).bit_length()

    w = Widths(query=bits(q), estimate=bits(x), correlation=bits(q * x), similarity=bits(B * q),
               bundle=bits(M * B * q), normalise=bits(M * B * q * x))
    if w.largest > MAX_BITS:
        raise EdgeError(
            f"fixed-point factorizer: F={F}, M={M}, B={B}, L={L} with qbits={qbits}, "
            f"xbits={xbits} needs {w.largest}-bit words (limit {MAX_BITS}); lower qbits/xbits"
        )
    return w


def quantise(queries: Any, cb: Codebooks, qbits: int = QBITS) -> np.ndarray:
    """Float queries -> integer queries [N, B, L]: blocks to sum 1, then floor(s * Q + 1/2)."""
    s = as_queries(queries, cb)
    return np.floor(s * (1 << qbits) + 0.5).astype(np.int64)


def as_int_queries(queries: Any, cb: Codebooks) -> np.ndarray:
    """Integer queries [N, B*L] or [N, B, L] (any non-negative integers) -> int64 [N, B, L]."""
    q = np.asarray(queries)
    _F, _M, B, L = cb.shape
    if not np.issubdtype(q.dtype, np.integer) and (
            not np.all(np.isfinite(q)) or not np.array_equal(q, np.round(q))):
        raise EdgeError("fixed-point factorizer: queries must be integers (use quantise)")
    q = q.astype(np.int64)
    if q.ndim == 2 and q.shape[1] == B * L:
        q = q.reshape(q.shape[0], B, L)
    if q.ndim != 3 or q.shape[1:] != (B, L):
        raise EdgeError(f"fixed-point factorizer: queries of shape {q.shape} do not match "
                        f"B={B}, L={L}")
    if (q < 0).any():
        raise EdgeError("fixed-point factorizer: queries must be non-negative")
    if q.size and int(q.max()) >= 1 << 31:
        raise EdgeError("fixed-point factorizer: query entries must be < 2^31")
    return q


def normalise_queries(q: np.ndarray, qbits: int = QBITS) -> np.ndarray:
    """Step 1: every block to total ~Q by (q * Q) // S; empty blocks to Q // L everywhere."""
    Q = 1 << qbits
    L = q.shape[-1]
    S = q.sum(axis=-1, keepdims=True)
    safe = np.where(S > 0, S, 1)
    return np.where(S > 0, (q * Q) // safe, Q // L)


def initial_estimates(cb: Codebooks, xbits: int = XBITS) -> np.ndarray:
    """Step 2: [F, B, L] integer means of each factor's codevectors."""
    F, M, B, L = cb.shape
    count = np.zeros((F, B, L), dtype=np.int64)
    for f in range(F):
        for b in range(B):
            count[f, b] = np.bincount(cb.indices[f, :, b], minlength=L)
    return (count << xbits) // M


def correlate(u: np.ndarray, x: np.ndarray, xbits: int) -> np.ndarray:
    """Step 3: (sum_j u[(j + l) mod L] * x[j]) >> xbits per block, exactly in integers."""
    L = u.shape[-1]
    bound = int(u.max(initial=0)) * int(x.max(initial=0)) * L
    if bound >= _FFT_EXACT:
        raise EdgeError("fixed-point factorizer: correlation out of exact range")
    full = np.fft.irfft(np.fft.rfft(u) * np.conj(np.fft.rfft(x)), n=L)
    return np.rint(full).astype(np.int64) >> xbits


def similarity(u: np.ndarray, idx_f: np.ndarray, kind: str, qbits: int) -> np.ndarray:
    """Step 4 for unbound u [n, B, L] and hot positions idx_f [M, B] -> int64 [n, M]."""
    B = u.shape[1]
    hot = u[:, np.arange(B)[None, :], idx_f]  # [n, M, B]
    if kind == "dot":
        return hot.sum(axis=-1)
    Q = 1 << qbits
    srt = np.sort(u, axis=-1)
    top1, top2 = srt[..., -1], srt[..., -2]  # [n, B], multiplicity kept
    excl = np.where(hot == top1[:, None, :], top2[:, None, :], top1[:, None, :])
    return Q - np.maximum(Q - hot, excl).max(axis=-1)


def bundle(act: np.ndarray, idx_f: np.ndarray, L: int) -> np.ndarray:
    """Step 6's counts: c [n, B, L] = sum of act[:, m] at each codevector's hot positions."""
    n = act.shape[0]
    B = idx_f.shape[1]
    c = np.zeros((n, B * L), dtype=np.int64)
    cols = (np.arange(B)[None, :] * L + idx_f).reshape(-1)  # [M*B]
    np.add.at(c, (slice(None), cols), np.repeat(act, B, axis=1))
    return c.reshape(n, B, L)


def _normalise_estimates(c: np.ndarray, fallback: np.ndarray, xbits: int) -> np.ndarray:
    S = c.sum(axis=-1, keepdims=True)
    return np.where(S > 0, (c << xbits) // np.where(S > 0, S, 1), fallback)


def levels(kind: str, B: int, qbits: int, T: float) -> tuple[int, int]:
    """Step 5's integer levels (T_int, P_int) for a similarity whose largest value is S_max."""
    smax = (1 << qbits) * (B if kind == "dot" else 1)
    return int(np.floor(T * smax + 0.5)), (9 * smax + 9) // 10


@dataclass(frozen=True)
class Settings:
    """Everything the fixed-point published loop depends on, validated once."""

    kind: str
    T: float
    A: int
    max_iters: int
    seed: int
    qbits: int
    xbits: int


def published_loop(q: np.ndarray, cb: Codebooks, st: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-7 on integer queries q [N, B, L] -> (indices [N, F], iterations [N])."""
    N = q.shape[0]
    F, M, B, L = cb.shape
    t_int, p_int = levels(st.kind, B, st.qbits, st.T)
    init = initial_estimates(cb, st.xbits)
    out_idx = np.zeros((N, F), dtype=np.int64)
    out_it = np.full(N, st.max_iters, dtype=np.int64)
    if N == 0:
        return out_idx, out_it
    qn = normalise_queries(q, st.qbits)
    x = np.broadcast_to(init, (N, F, B, L)).copy()
    state = np.full(N, lfsr.start(st.seed), dtype=np.uint64)
    perm = np.broadcast_to(np.arange(M, dtype=np.int64), (N, M)).copy()
    live = np.arange(N)
    rows = np.arange(N)
    for it in range(1, st.max_iters + 1):
        n = live.size
        sims = np.empty((n, F, M), dtype=np.int64)
        conv = np.ones(n, dtype=bool)
        for f in range(F):
            u = qn[live]
            for g in range(F):
                if g != f:
                    u = correlate(u, x[live, g], st.xbits)
            sim = similarity(u, cb.indices[f], st.kind, st.qbits)
            act = sim.copy()
            if t_int > 0:
                act[act < t_int] = 0
                empty = ~act.any(axis=1)
                act[empty] = sim[empty]
            low = act.max(axis=1) <= t_int
            if st.A > 0 and low.any():
                need = np.nonzero(low)[0]
                act[need] = 0
                if st.A >= M:
                    act[need] = 1
                else:
                    drawn = lfsr.draw(state, perm, live[need], st.A)
                    act[need[:, None], drawn] = 1
            top = np.argmax(act, axis=1)
            top_val = act[rows[:n], top]
            pulled = (top_val >= p_int) & ~low
            if pulled.any():
                r = np.nonzero(pulled)[0]
                act[r] = 0
                act[r, top[r]] = top_val[r]
            conv &= pulled
            sims[:, f] = sim
            x[live, f] = _normalise_estimates(bundle(act, cb.indices[f], L), init[f], st.xbits)
        done = conv if it < st.max_iters else np.ones(n, dtype=bool)
        if done.any():
            out_idx[live[done]] = np.argmax(sims[done], axis=-1)
            out_it[live[done & conv]] = it
            live = live[~done]
        if live.size == 0:
            break
    return out_idx, out_it


def _onehot(codebooks: Any, shape: tuple[int, ...]) -> Codebooks:
    cb = as_codebooks(codebooks, shape)
    if not cb.is_onehot:
        raise EdgeError("the fixed-point factorizer takes one-hot codebooks (index tables)")
    return cb


def decode_published(
    queries: Any,
    codebooks: Any,
    *,
    similarity: str = "linf",
    A: int | None = None,
    T: float | None = None,
    max_iters: int | None = None,
    seed: int = 0,
    qbits: int = QBITS,
    xbits: int = XBITS,
    **options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """The published decoder in fixed point (module docstring); integer queries [N, B*L]."""
    no_extra(options, "published (fixed point)")
    q0 = np.asarray(queries)
    cb = _onehot(codebooks, q0.shape)
    q = as_int_queries(q0, cb)
    st = settings(cb, similarity=similarity, A=A, T=T, max_iters=max_iters, seed=seed,
                  qbits=qbits, xbits=xbits)
    return published_loop(q, cb, st)


def settings(cb: Codebooks, *, similarity: str = "linf", A: int | None = None,
             T: float | None = None, max_iters: int | None = None, seed: int = 0,
             qbits: int = QBITS, xbits: int = XBITS) -> Settings:
    """The published loop's options validated and defaulted for codebooks `cb` (the paper's
    A and T, default_max_iters), as every target that follows this spec needs them."""
    F, M, B, L = cb.shape
    qbits, xbits = positive_int("qbits", qbits), positive_int("xbits", xbits)
    widths(F, M, B, L, qbits, xbits)
    kind = choice("similarity", similarity, ("linf", "dot"))
    a_def, t_def = paper_a_t(B * L, F, B, M)
    A = a_def if A is None else positive_int("A", A, 0)
    T = t_def if T is None else float(T)
    if not T >= 0:
        raise EdgeError(f"T must be a number >= 0, got {T!r}")
    iters = default_max_iters(M, F) if max_iters is None else positive_int("max_iters", max_iters)
    return Settings(kind, T, A, iters, positive_int("seed", seed, 0), qbits, xbits)


def decode_resonator(queries: Any, codebooks: Any, *, similarity: str = "linf",
                     max_iters: int | None = None, seed: int = 0, qbits: int = QBITS,
                     xbits: int = XBITS, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """The published loop with T = 0 and A = 0, in fixed point."""
    no_extra(options, "resonator (fixed point)")
    return decode_published(queries, codebooks, similarity=similarity, A=0, T=0.0,
                            max_iters=max_iters, seed=seed, qbits=qbits, xbits=xbits)


def decode_default(queries: Any, codebooks: Any, *, limit: int = DEFAULT_LIMIT,
                   seed: int = 0, qbits: int = QBITS, xbits: int = XBITS,
                   **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive search's answer on the normalised integer query (lowest index on ties)."""
    no_extra(options, "default (fixed point)")
    positive_int("seed", seed, 0)
    q0 = np.asarray(queries)
    cb = _onehot(codebooks, q0.shape)
    q = as_int_queries(q0, cb)
    F, M, B, L = cb.shape
    qbits = positive_int("qbits", qbits)
    widths(F, M, B, L, qbits, positive_int("xbits", xbits))
    check_limit(cb, positive_int("limit", limit))
    s = normalise_queries(q, qbits).astype(np.float64)  # integers: every sum below is exact
    idx, _rounds, _ = CertifiedSearch(cb).search(s, limit)
    return idx, np.ones(q.shape[0], dtype=np.int64)


DECODERS = {
    "default": decode_default,
    "published": decode_published,
    "resonator": decode_resonator,
    "exhaustive": decode_default,
}


def decode(queries: Any, codebooks: Any, method: str = "default",
           **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Decode integer queries with the named fixed-point decoder."""
    if method not in DECODERS:
        raise EdgeError(f"unknown decoder {method!r}: use one of {', '.join(DECODERS)}")
    return DECODERS[method](queries, codebooks, **options)
