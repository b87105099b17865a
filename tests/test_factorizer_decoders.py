"""Factorizer decoders against exhaustive search, and the per-query contract.

Exhaustive search itself is checked against an oracle that builds every product vector by
explicit convolution and takes the argmax of inner products, written here from the definition.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge_sdk.factorizer as fz
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer.certified import CertifiedSearch
from edge_sdk.factorizer.codebooks import Codebooks
from edge_sdk.factorizer.inputs import as_queries

DECODERS = ("default", "published", "resonator", "exhaustive")


def brute_force(queries: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """argmax over all combos of <query, product vector>, ties to the first combo."""
    F, M, B, L = dense.shape
    s = queries.reshape(len(queries), B, L)
    s = s / s.sum(-1, keepdims=True)
    combos = list(itertools.product(range(M), repeat=F))
    prods = []
    for c in combos:
        v = np.zeros((B, L))
        v[:, 0] = 1.0
        for f in range(F):  # explicit block-wise circular convolution
            x = dense[f, c[f]]
            v = np.stack(
                [[sum(v[b, j] * x[b, (lo - j) % L] for j in range(L)) for lo in range(L)]
                 for b in range(B)]
            )
        prods.append(v.ravel())
    scores = s.reshape(len(s), -1) @ np.array(prods).T
    return np.array([combos[k] for k in scores.argmax(1)])


def accuracy(idx: np.ndarray, truth: np.ndarray) -> float:
    return float((idx == truth).all(1).mean())


# ---------------------------------------------------------------- exhaustive


@pytest.mark.parametrize("onehot", [True, False])
def test_exhaustive_matches_brute_force(onehot):
    cb = fz.random_sbc(3, 4, 2, 5, seed=7) if onehot else fz.random_gsbc(3, 4, 2, 5, seed=7)
    rng = np.random.default_rng(0)
    q = rng.random((12, 10)) ** 4  # arbitrary non-negative queries
    idx, it = fz.decode(q, cb, "exhaustive")
    assert idx.dtype == np.int64 and it.dtype == np.int64 and idx.shape == (12, 3)
    assert np.array_equal(idx, brute_force(q, cb.as_dense()))
    assert np.array_equal(it, np.ones(12))


def test_exhaustive_breaks_ties_to_lowest_index():
    cb = Codebooks.from_indices(np.zeros((2, 3, 2), dtype=np.int64), 4)  # all codevectors equal
    q = np.tile(fz.encode(cb.indices, np.array([[2, 1]]), 4), (2, 1))
    idx, _ = fz.decode(q, cb, "exhaustive")
    assert np.array_equal(idx, [[0, 0], [0, 0]])
    idx_d, _ = fz.decode(q, cb, "default")
    assert np.array_equal(idx_d, idx)


def test_exhaustive_refuses_large_sizes_with_one_line():
    cb = fz.random_sbc(3, 1000, 4, 128, seed=0)
    with pytest.raises(EdgeError) as exc:
        fz.decode(np.ones((1, 512)), cb, "exhaustive")
    assert "limit" in str(exc.value) and "\n" not in str(exc.value)


# ---------------------------------------------------------------- default == exhaustive


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 3),
    st.integers(2, 9),
    st.integers(1, 5),
    st.sampled_from([4, 8, 16]),
    st.sampled_from(["clean", "moved0.2", "moved0.5", "soft4", "soft1", "moved1"]),
    st.integers(0, 2**20),
)
def test_default_equals_exhaustive(F, M, B, L, noise, seed):
    cb = fz.random_sbc(F, M, B, L, seed=seed)
    q, _ = fz.make_queries(cb, 20, noise, seed=seed + 1)
    ref, _ = fz.decode(q, cb, "exhaustive")
    idx, rounds = fz.decode(q, cb, "default")
    assert np.array_equal(idx, ref)
    assert rounds.min() >= 1
    # the candidate rounds alone: whatever they certify is exhaustive search's answer
    cand, _, certified = CertifiedSearch(cb).search(as_queries(q, cb), exhaustive_limit=0)
    assert np.array_equal(cand[certified], ref[certified])


def test_certified_search_without_fallback_still_exact():
    """The candidate rounds alone (exhaustive fallback disabled) reach exhaustive's answer."""
    cb = fz.random_sbc(2, 40, 4, 64, seed=3)
    q, _ = fz.make_queries(cb, 60, "soft0.5", seed=4)
    search = CertifiedSearch(cb)
    idx, rounds, certified = search.search(as_queries(q, cb), exhaustive_limit=0)
    ref, _ = fz.decode(q, cb, "exhaustive")
    assert certified.all() and np.array_equal(idx, ref)
    assert rounds.max() > 1  # flat queries needed wider rounds


def test_default_on_general_codebooks_equals_exhaustive():
    cb = fz.random_gsbc(2, 12, 4, 16, seed=5)
    q = np.random.default_rng(1).random((10, 64))
    assert np.array_equal(fz.decode(q, cb)[0], fz.decode(q, cb, "exhaustive")[0])


def test_default_far_better_than_published_on_noise():
    cb = fz.random_sbc(3, 20, 8, 128, seed=1)
    q, truth = fz.make_queries(cb, 60, "moved0.1", seed=2)
    acc_default = accuracy(fz.decode(q, cb)[0], truth)
    acc_published = accuracy(fz.decode(q, cb, "published")[0], truth)
    assert acc_default >= 0.95 and acc_default > acc_published + 0.3


# ---------------------------------------------------------------- iterative decoders


@pytest.mark.parametrize("method", ["published", "resonator"])
@pytest.mark.parametrize("similarity", ["linf", "dot"])
def test_iterative_decoders_solve_small_clean_problems(method, similarity):
    cb = fz.random_sbc(2, 16, 4, 64, seed=2)
    q, truth = fz.make_queries(cb, 40, "clean", seed=3)
    ref, _ = fz.decode(q, cb, "exhaustive")
    assert np.array_equal(ref, truth)
    idx, it = fz.decode(q, cb, method, similarity=similarity, max_iters=50)
    assert accuracy(idx, ref) >= 0.95
    assert it.min() >= 1 and it.max() <= 50


def test_published_with_sampling_solves_medium_problem():
    cb = fz.random_sbc(2, 500, 4, 128, seed=4)  # paper table: A > 0, T > 0 at this size
    a, t = fz.paper_a_t(512, 2, 4, 500)
    assert a > 0 and t > 0
    q, truth = fz.make_queries(cb, 24, "clean", seed=5)
    idx, it = fz.decode(q, cb, "published")
    assert accuracy(idx, truth) >= 0.95
    assert 1 <= it.mean() < fz.default_max_iters(500, 2)


def test_published_on_general_codebooks_agrees_with_onehot_path():
    cb = fz.random_sbc(2, 12, 4, 32, seed=6)
    dense = Codebooks(L=32, dense=cb.as_dense())  # same codes, forced through the dense path
    q, truth = fz.make_queries(cb, 16, "clean", seed=7)
    a = fz.decode(q, cb, "published", A=5, T=0.01, max_iters=40)
    b = fz.decode(q, dense, "published", A=5, T=0.01, max_iters=40)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert accuracy(a[0], truth) >= 0.9


def test_unconverged_queries_report_max_iters_and_last_argmax():
    cb = fz.random_sbc(3, 20, 8, 128, seed=1)
    q, _ = fz.make_queries(cb, 10, "moved0.3", seed=2)
    idx, it = fz.decode(q, cb, "published", max_iters=3)
    assert (it <= 3).all() and (it == 3).any()
    # one more iteration changes nothing for queries that converged before iteration 3
    idx4, it4 = fz.decode(q, cb, "published", max_iters=4)
    early = it < 3
    assert np.array_equal(idx4[early], idx[early]) and np.array_equal(it4[early], it[early])


# ---------------------------------------------------------------- per-query contract


@pytest.mark.parametrize("method", DECODERS)
def test_deterministic_under_a_seed(method):
    cb = fz.random_sbc(2, 300, 4, 128, seed=8)
    q, _ = fz.make_queries(cb, 12, "moved0.1", seed=9)
    opts = {} if method in ("exhaustive",) else {"seed": 11}
    if method in ("published", "resonator"):
        opts["max_iters"] = 30
    a = fz.decode(q, cb, method, **opts)
    b = fz.decode(q, cb, method, **opts)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("method", DECODERS)
def test_answers_do_not_depend_on_the_batch(method):
    cb = fz.random_sbc(2, 600, 4, 128, seed=12)  # sampling active for published
    clean, _ = fz.make_queries(cb, 8, "clean", seed=13)
    noisy, _ = fz.make_queries(cb, 8, "soft8", seed=14)
    q = np.concatenate([clean, noisy])
    opts = {"max_iters": 40} if method in ("published", "resonator") else {}
    idx, it = fz.decode(q, cb, method, **opts)
    perm = np.random.default_rng(0).permutation(len(q))
    idx_p, it_p = fz.decode(q[perm], cb, method, **opts)
    assert np.array_equal(idx_p, idx[perm]) and np.array_equal(it_p, it[perm])
    for k in (0, 9, 15):
        one_idx, one_it = fz.decode(q[k : k + 1], cb, method, **opts)
        assert np.array_equal(one_idx[0], idx[k]) and one_it[0] == it[k]


def test_query_layouts_are_equivalent():
    cb = fz.random_sbc(2, 10, 4, 16, seed=0)
    q, _ = fz.make_queries(cb, 5, "soft4", seed=1)
    for method in DECODERS:
        a = fz.decode(q, cb, method)
        b = fz.decode(q.reshape(5, 4, 16), cb, method)
        c = fz.decode(q * 7.0, cb.indices, method)  # raw index table, unnormalised blocks
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[0], c[0])


# ---------------------------------------------------------------- heavier


@pytest.mark.slow
def test_default_equals_exhaustive_at_a_million_products():
    cb = fz.random_sbc(2, 1000, 4, 128, seed=20)
    for noise in ("moved0.05", "moved0.2", "soft8", "soft4"):
        q, _ = fz.make_queries(cb, 40, noise, seed=21)
        assert np.array_equal(fz.decode(q, cb)[0], fz.decode(q, cb, "exhaustive")[0])


@pytest.mark.slow
def test_published_capacity_point():
    cb = fz.random_sbc(2, 1155, 4, 128, seed=22)
    q, truth = fz.make_queries(cb, 64, "clean", seed=23)
    idx, it = fz.decode(q, cb, "published")
    assert accuracy(idx, truth) >= 0.97
    assert 10 < it.mean() < 40
