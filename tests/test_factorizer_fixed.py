"""The fixed-point factorizer (edge_sdk.factorizer.fixed) against an independent reading of its
specification: plain Python integers, one query at a time, no NumPy vectorisation, no FFT.
The targets (C, RTL) will be held to the same module, so every rule of the docstring is
exercised here: normalisation, correlation with floor shifts, both similarities, threshold,
LFSR sampling, pull-up, bundling with exact division, convergence, ties to the lowest index.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from test_factorizer_onnx import logits, model, softmax_blocks

import edge_sdk.factorizer as fz
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed, lfsr


# ---------------------------------------------------------------------------- the reference
class Lfsr:
    """The LFSR as its docstring states it, on Python ints."""

    def __init__(self, seed: int, M: int):
        self.s = (seed * 0x9E3779B9 + 0x6D2B79F5) % (1 << 32) or 1
        self.perm = list(range(M))

    def step(self) -> int:
        out = self.s & 1
        self.s >>= 1
        if out:
            self.s ^= 0x80200003
        return self.s

    def draw(self, A: int) -> list[int]:
        M = len(self.perm)
        for j in range(A):
            r = self.step() % (M - j)
            self.perm[j], self.perm[j + r] = self.perm[j + r], self.perm[j]
        return self.perm[:A]


def ref_decode(q, idx, L, kind, T, A, max_iters, seed, qbits=12, xbits=12):
    """One integer query [B][L] (lists) -> (indices, iterations), straight from the spec."""
    F, M, B = len(idx), len(idx[0]), len(idx[0][0])
    Q, X = 1 << qbits, 1 << xbits
    qn = []
    for b in range(B):
        S = sum(q[b])
        qn.append([(v * Q) // S for v in q[b]] if S else [Q // L] * L)
    init = []
    for f in range(F):
        est = []
        for b in range(B):
            count = [0] * L
            for m in range(M):
                count[idx[f][m][b]] += 1
            est.append([(c * X) // M for c in count])
        init.append(est)
    x = [[row[:] for row in est] for est in init]
    smax = Q * (B if kind == "dot" else 1)
    t_int = int(np.floor(T * smax + 0.5))
    p_int = (9 * smax + 9) // 10
    rng = Lfsr(seed, M)
    answer = [0] * F
    for it in range(1, max_iters + 1):
        all_conv = True
        for f in range(F):
            u = [row[:] for row in qn]
            for g in range(F):
                if g == f:
                    continue
                u = [[sum(u[b][(j + l) % L] * x[g][b][j] for j in range(L)) >> xbits
                      for l in range(L)] for b in range(B)]
            sim = []
            for m in range(M):
                h = idx[f][m]
                if kind == "dot":
                    sim.append(sum(u[b][h[b]] for b in range(B)))
                else:
                    worst = max(max(Q - u[b][h[b]], max((u[b][l] for l in range(L) if l != h[b]),
                                                        default=0)) for b in range(B))
                    sim.append(Q - worst)
            act = list(sim)
            if t_int > 0:
                act = [v if v >= t_int else 0 for v in act]
                if not any(act):
                    act = list(sim)
            low = max(act) <= t_int
            if A > 0 and low:
                chosen = range(M) if A >= M else rng.draw(A)
                act = [0] * M
                for m in chosen:
                    act[m] = 1
            k = act.index(max(act))
            pulled = act[k] >= p_int and not low
            if pulled:
                act = [act[k] if m == k else 0 for m in range(M)]
            all_conv &= pulled
            answer[f] = sim.index(max(sim))
            for b in range(B):
                c = [0] * L
                for m in range(M):
                    c[idx[f][m][b]] += act[m]
                S = sum(c)
                x[f][b] = [(v * X) // S for v in c] if S else init[f][b][:]
        if all_conv:
            return answer, it
    return answer, max_iters


# ---------------------------------------------------------------------------- unit rules
def test_lfsr_matches_the_reference_and_draws_distinct_indices():
    state = np.array([lfsr.start(5)], dtype=np.uint64)
    perm = np.arange(50, dtype=np.int64)[None, :].copy()
    ref = Lfsr(5, 50)
    for _ in range(20):
        got = lfsr.draw(state, perm, np.array([0]), 7)[0].tolist()
        assert got == ref.draw(7)
        assert len(set(got)) == 7 and all(0 <= v < 50 for v in got)
    assert lfsr.start(0) != 0 and int(state[0]) == ref.s


def test_lfsr_has_no_short_cycle():
    s = np.array([1], dtype=np.uint64)
    seen = set()
    for _ in range(20000):
        s = lfsr.step(s)
        seen.add(int(s[0]))
    assert len(seen) == 20000 and 0 not in seen


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(2, 24), st.integers(0, 2**20), st.integers(0, 1000))
def test_correlation_is_exact(B, L, top, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 4097, size=(3, B, L))
    x = rng.integers(0, top + 1, size=(3, B, L)) % 4097
    got = fixed.correlate(u, x, 12)
    want = np.array([[[sum(int(u[n, b, (j + l) % L]) * int(x[n, b, j]) for j in range(L)) >> 12
                       for l in range(L)] for b in range(B)] for n in range(3)])
    assert np.array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(2, 16), st.integers(0, 1000))
def test_normalised_blocks_sum_to_at_most_q(B, L, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 1000, size=(5, B, L)) * (rng.random((5, B, 1)) < 0.8)
    qn = fixed.normalise_queries(q)
    sums = qn.sum(-1)
    assert (sums <= 4096).all() and (sums >= 4096 - L).all()
    assert (qn[q.sum(-1) == 0] == 4096 // L).all()


def test_integer_similarities_against_dense_formulas():
    rng = np.random.default_rng(3)
    cb = fz.random_sbc(2, 11, 3, 8, seed=4)
    u = rng.integers(0, 4097, size=(6, 3, 8))
    u[0, :, :] = 0
    u[0, np.arange(3), cb.indices[0, 5]] = 4096  # a perfect match
    dense = cb.as_dense()[0]  # [M, B, L] 0/1
    dot = np.einsum("nbl,mbl->nm", u, dense)
    linf = 4096 - np.abs(u[:, None] - 4096 * dense[None]).max(axis=(2, 3))
    assert np.array_equal(fixed.similarity(u, cb.indices[0], "dot", 12), dot)
    assert np.array_equal(fixed.similarity(u, cb.indices[0], "linf", 12), linf)
    assert fixed.similarity(u, cb.indices[0], "linf", 12)[0, 5] == 4096


@pytest.mark.parametrize("kind,B,qbits,T", [("linf", 4, 12, 0.0115), ("dot", 8, 12, 0.0036),
                                             ("linf", 1, 4, 0.5), ("dot", 3, 10, 0.0)])
def test_levels_are_the_documented_roundings(kind, B, qbits, T):
    from fractions import Fraction

    smax = (1 << qbits) * (B if kind == "dot" else 1)
    t_int, p_int = fixed.levels(kind, B, qbits, T)
    assert p_int == -(-Fraction(9, 10) * smax // 1)  # ceil(0.9 * S_max), exactly
    assert t_int == int(Fraction(T) * smax + Fraction(1, 2))  # floor(T * S_max + 1/2)


def test_widths_and_overflow():
    w = fixed.widths(3, 16, 8, 64)
    assert w.normalise == (16 * 8 * 4096 * 4096).bit_length() and w.largest <= 63
    with pytest.raises(EdgeError, match="63"):
        fixed.widths(2, 1 << 20, 64, 64, qbits=24, xbits=24)


# ---------------------------------------------------------------------------- decoders
CASES = [
    # F, M, B, L, noise, kind, T, A
    (2, 7, 2, 8, "moved0.2", "linf", 0.05, 3),
    (2, 9, 3, 8, "clean", "linf", None, None),
    (3, 4, 2, 8, "moved0.1", "dot", 0.1, 2),
    (2, 6, 2, 8, "soft8", "linf", 0.0, 0),
    (2, 5, 2, 4, "moved0.3", "dot", 0.2, 10),
]


@pytest.mark.parametrize("F,M,B,L,noise,kind,T,A", CASES)
def test_published_equals_the_reference(F, M, B, L, noise, kind, T, A):
    cb = fz.random_sbc(F, M, B, L, seed=M * 7 + F)
    q, _ = fz.make_queries(cb, 12, noise, seed=11)
    qi = fixed.quantise(q, cb)
    opts = {"similarity": kind, "max_iters": 12, "seed": 3}
    if T is not None:
        opts.update(T=T, A=A)
    idx, its = fixed.decode(qi, cb, "published", **opts)
    a_def, t_def = fz.paper_a_t(B * L, F, B, M)
    for n in range(len(qi)):
        want = ref_decode(qi[n].tolist(), cb.indices.tolist(), L, kind,
                          t_def if T is None else T, a_def if A is None else A, 12, 3)
        assert (idx[n].tolist(), int(its[n])) == want, n


def test_default_is_exhaustive_on_integer_scores_with_lowest_index_ties():
    cb = fz.random_sbc(3, 5, 2, 4, seed=2)  # L = 4: many exact ties
    rng = np.random.default_rng(0)
    qi = rng.integers(0, 5, size=(40, 2, 4))
    idx, its = fixed.decode(qi, cb, "default")
    qn = fixed.normalise_queries(qi)
    combos = np.array(np.unravel_index(np.arange(125), (5, 5, 5))).T
    pos = fz.product_indices(cb.indices, combos, 4)  # [125, B]
    scores = qn[:, np.arange(2)[None, :], pos].sum(-1)  # [N, 125]
    assert np.array_equal(idx, combos[np.argmax(scores, axis=1)]) and (its == 1).all()


def test_fixed_point_tracks_the_float_decoders():
    cb = fz.random_sbc(3, 16, 8, 64, seed=5)
    for noise in ("clean", "moved0.05"):
        q, truth = fz.make_queries(cb, 100, noise, seed=6)
        for method in ("default", "published"):
            fl, _ = fz.decode(q, cb, method)
            fx, _ = fixed.decode(fixed.quantise(q, cb), cb, method)
            acc_fl, acc_fx = ((i == truth).all(1).mean() for i in (fl, fx))
            assert abs(acc_fl - acc_fx) <= 0.03, (noise, method, acc_fl, acc_fx)


def test_deterministic_and_batch_independent():
    cb = fz.random_sbc(2, 12, 4, 16, seed=1)
    q, _ = fz.make_queries(cb, 30, "moved0.2", seed=2)
    qi = fixed.quantise(q, cb)
    a = fixed.decode(qi, cb, "published", seed=4)
    b = fixed.decode(qi[::-1], cb, "published", seed=4)
    assert np.array_equal(a[0], b[0][::-1]) and np.array_equal(a[1], b[1][::-1])


def test_bad_inputs():
    cb = fz.random_sbc(2, 5, 2, 8, seed=1)
    with pytest.raises(EdgeError, match="integers"):
        fixed.decode(np.full((1, 16), 0.5), cb, "published")
    with pytest.raises(EdgeError, match="non-negative"):
        fixed.decode(-np.ones((1, 16), np.int64), cb, "default")
    with pytest.raises(EdgeError, match="one-hot"):
        fixed.decode(np.ones((1, 16), np.int64), fz.random_gsbc(2, 5, 2, 8, seed=1).dense,
                     "default")
    with pytest.raises(EdgeError, match="unknown decoder"):
        fixed.decode(np.ones((1, 16), np.int64), cb, "magic")


@pytest.mark.parametrize("decoder", ["default", "published"])
def test_cli_run_fixed_point(tmp_path, decoder):
    cb = fz.random_sbc(3, 9, 4, 16, seed=7)
    path = model(tmp_path / "m.onnx", cb.as_dense().reshape(3, 9, 64), decoder=decoder)
    x, _ = logits(cb, 30, seed=1)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz",
                   "--fixed-point")
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "y.npz")
    q = fixed.quantise(softmax_blocks(x), cb)  # NumPy softmax, not onnxruntime
    want_idx, want_it = fixed.decode(q, cb, decoder)
    assert np.array_equal(got["idx"], want_idx) and np.array_equal(got["it"], want_it)
