"""Factorizer building blocks: codebooks, binding, similarities, noise, defaults, errors.

Oracles are written out here from the definitions in FACTORIZER.md (explicit sums over
positions), never taken from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge_sdk.factorizer as fz
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer.codebooks import Codebooks
from edge_sdk.factorizer.hyperparams import nearest_table
from edge_sdk.factorizer.noise import parse_noise
from edge_sdk.factorizer.similarity import bundle, similarity

FAST = settings(max_examples=40, deadline=None)


def conv_oracle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """out[l] = sum_j x[j] * y[(l - j) mod L], per block, by explicit sums."""
    L = x.shape[-1]
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    for lo in range(L):
        for j in range(L):
            out[..., lo] += x[..., j] * y[..., (lo - j) % L]
    return out


def corr_oracle(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """out[l] = sum_j x[j] * s[(j + l) mod L], per block, by explicit sums (FACTORIZER.md)."""
    L = x.shape[-1]
    out = np.zeros(np.broadcast_shapes(x.shape, s.shape))
    for lo in range(L):
        for j in range(L):
            out[..., lo] += x[..., j] * s[..., (j + lo) % L]
    return out


def onehot(pos: np.ndarray, L: int) -> np.ndarray:
    return np.eye(L)[pos]


sizes = st.tuples(st.integers(1, 4), st.integers(1, 12))  # (B, L)


# ---------------------------------------------------------------- binding


@FAST
@given(sizes, st.integers(0, 2**31 - 1))
def test_index_binding_roundtrip(bl, seed):
    B, L = bl
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, L, (2, 5, B))
    p = fz.bind_indices(a, b, L)
    assert p.min() >= 0 and p.max() < L
    assert np.array_equal(fz.unbind_indices(p, a, L), b)
    assert np.array_equal(fz.unbind_indices(p, b, L), a)
    assert np.array_equal(fz.bind_indices(a, b, L), fz.bind_indices(b, a, L))


@FAST
@given(sizes, st.integers(0, 2**31 - 1))
def test_block_binding_matches_definition(bl, seed):
    B, L = bl
    rng = np.random.default_rng(seed)
    x, y = rng.random((2, 3, B, L))
    assert np.allclose(fz.bind_blocks(x, y), conv_oracle(x, y), atol=1e-12)
    assert np.allclose(fz.unbind_blocks(x, y), corr_oracle(x, y), atol=1e-12)


@FAST
@given(sizes, st.integers(0, 2**31 - 1))
def test_onehot_blocks_agree_with_index_arithmetic(bl, seed):
    B, L = bl
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, L, (2, 4, B))
    xa, xb = onehot(a, L), onehot(b, L)
    bound = fz.bind_blocks(xa, xb)
    assert np.allclose(bound, onehot(fz.bind_indices(a, b, L), L), atol=1e-12)
    assert np.allclose(fz.unbind_blocks(xa, bound), xb, atol=1e-12)


@FAST
@given(sizes, st.integers(0, 2**31 - 1))
def test_unbinding_a_onehot_factor_recovers_general_partner(bl, seed):
    B, L = bl
    rng = np.random.default_rng(seed)
    a = rng.integers(0, L, (3, B))
    y = rng.random((3, B, L))
    assert np.allclose(fz.unbind_blocks(onehot(a, L), fz.bind_blocks(onehot(a, L), y)), y)


def test_product_vectors_equal_encoded_products():
    cb = fz.random_sbc(3, 5, 2, 7, seed=3)
    combos = np.array([[0, 1, 2], [4, 4, 4], [3, 0, 1]])
    dense = cb.as_dense()
    prods = fz.product_vectors(dense, combos)
    assert np.allclose(prods.reshape(3, -1), fz.encode(cb.indices, combos, cb.L), atol=1e-12)
    # and the hot positions are the sums of the factors' positions, as FACTORIZER.md states
    for k, c in enumerate(combos):
        want = sum(cb.indices[f, c[f]] for f in range(3)) % cb.L
        assert np.array_equal(fz.product_indices(cb.indices, combos, cb.L)[k], want)


# ---------------------------------------------------------------- codebooks


def test_random_sbc_is_seeded():
    a, b, c = (fz.random_sbc(2, 9, 3, 16, seed=s) for s in (5, 5, 6))
    assert a.indices.shape == (2, 9, 3) and a.indices.dtype == np.int64
    assert np.array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert a.indices.min() >= 0 and a.indices.max() < 16


def test_dense_index_conversion_detects_onehot():
    cb = fz.random_sbc(2, 6, 3, 8, seed=1)
    dense = fz.indices_to_dense(cb.indices, 8)
    assert dense.shape == (2, 6, 24)
    assert np.array_equal(fz.dense_to_indices(dense, 3), cb.indices)
    back = Codebooks.from_dense(dense * 3.5, B=3)  # scale does not matter once normalised
    assert back.is_onehot and np.array_equal(back.indices, cb.indices)
    general = fz.random_gsbc(2, 6, 3, 8, seed=1)
    assert not general.is_onehot
    assert fz.dense_to_indices(general.dense) is None
    assert np.allclose(general.dense.sum(-1), 1) and (general.dense >= 0).all()
    assert not Codebooks.from_dense(general.dense).is_onehot


# ---------------------------------------------------------------- similarities


def linf_oracle(u: np.ndarray, dense_f: np.ndarray) -> np.ndarray:
    return np.array([[1 - np.abs(ui - c).max() for c in dense_f] for ui in u])


@FAST
@given(st.integers(1, 4), st.integers(2, 10), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_onehot_fast_paths_match_dense_paths(B, L, M, seed):
    rng = np.random.default_rng(seed)
    cb = fz.random_sbc(2, M, B, L, seed=seed)
    dense_cb = Codebooks(L=L, dense=cb.as_dense())
    u = rng.random((5, B, L))
    u /= u.sum(-1, keepdims=True)
    if seed % 3 == 0:  # a peaked, converged-looking estimate exercises the hot == argmax branch
        u = onehot(cb.indices[1, rng.integers(0, M, 5)], L) * 0.97 + 0.03 / L
    for kind in ("linf", "dot"):
        fast = similarity(u, cb, 1, kind)
        slow = similarity(u, dense_cb, 1, kind)
        assert np.allclose(fast, slow, atol=1e-12), kind
    assert np.allclose(similarity(u, cb, 1, "linf"), linf_oracle(u, dense_cb.dense[1]))
    act = rng.random((5, M)) * (rng.random((5, M)) < 0.5)
    assert np.allclose(bundle(act, cb, 0), bundle(act, dense_cb, 0), atol=1e-12)


# ---------------------------------------------------------------- noise


def test_noise_models():
    cb = fz.random_sbc(2, 10, 4, 32, seed=0)
    clean, truth = fz.make_queries(cb, 300, "clean", seed=1)
    same, truth2 = fz.make_queries(cb, 300, "moved0", seed=1)
    assert np.array_equal(clean, same) and np.array_equal(truth, truth2)
    assert np.array_equal(clean, fz.encode(cb.indices, truth, cb.L))
    mv, _ = fz.make_queries(cb, 300, "moved0.5", seed=1)
    changed = (mv.reshape(300, 4, 32).argmax(-1) != clean.reshape(300, 4, 32).argmax(-1)).mean()
    assert 0.5 * 31 / 32 - 0.05 < changed < 0.5 * 31 / 32 + 0.05
    sf, _ = fz.make_queries(cb, 300, "soft16", seed=1)
    blocks = sf.reshape(300, 4, 32)
    assert np.allclose(blocks.sum(-1), 1) and (blocks > 0).all()
    hot = clean.reshape(300, 4, 32) > 0
    assert (blocks.argmax(-1) == hot.argmax(-1)).mean() > 0.8
    # log of a softmax is K * logit + const: logits off the hot position have std 0.3 and
    # the hot one sits 1 above them on average
    logits = np.log(blocks) / 16
    logits -= logits[~hot].reshape(300, 4, 31).mean(-1)[..., None]
    assert abs(logits[~hot].std() - 0.3) < 0.02
    assert abs(logits[hot].mean() - 1.0) < 0.05
    assert parse_noise("soft4") == ("soft", 4.0)
    with pytest.raises(EdgeError):
        parse_noise("gauss0.1")


# ---------------------------------------------------------------- paper defaults


def test_paper_defaults():
    assert fz.paper_a_t(512, 2, 4, 1155) == (238, 0.0076)  # tabulated: exact
    assert fz.paper_a_t(1024, 3, 4, 68) == (24, 0.0032)
    a, t = fz.paper_a_t(512, 2, 4, 1000)  # between 909 (243, .0071) and 1155 (238, .0076)
    assert 238 <= a <= 243 and 0.0071 < t < 0.0076
    assert fz.paper_a_t(512, 2, 4, 5) == fz.paper_a_t(512, 2, 4, 32)  # clamped
    assert nearest_table(500, 2, 4) == (512, 2, 4)
    assert nearest_table(4096, 3, 4) == (2048, 3, 4)
    assert nearest_table(512, 4, 4)[1] == 3
    assert [fz.default_max_iters(m, f) for m, f in ((32, 2), (169, 2), (10, 3), (68, 3))] == [
        16,
        84,
        33,
        1541,
    ]


# ---------------------------------------------------------------- errors


def one_line(exc: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(exc.value) and str(exc.value)


@pytest.mark.parametrize(
    "queries, codebooks, options",
    [
        (np.zeros((2, 30)), np.zeros((2, 4, 4), dtype=np.int64), {}),  # width 30 vs B=4
        (np.zeros((2, 4, 7)), np.zeros((2, 4, 4, 8)), {}),  # blocks (4, 7) vs (4, 8)
        (np.zeros((2, 33)), np.zeros((2, 4, 4, 8)), {}),  # width != B*L
        (np.zeros((2, 32)), -np.ones((2, 4, 4, 8)), {}),  # negative codebook
        (np.zeros((2, 32)), np.full((2, 4, 4), 9, dtype=np.int64), {}),  # index >= L
        (np.zeros((2, 32)), np.zeros((2, 4, 4, 8)), {}),  # all-zero blocks
        (-np.ones((2, 32)), np.zeros((2, 4, 4), dtype=np.int64), {}),  # negative query
        (np.full((2, 32), np.nan), np.zeros((2, 4, 4), dtype=np.int64), {}),
        (np.zeros(32), np.zeros((2, 4, 4), dtype=np.int64), {}),  # not [N, ...]
        (np.zeros((2, 2)), np.zeros((70, 2, 1), dtype=np.int64), {}),  # 2^70 > int64
        (np.ones((2, 32)), np.zeros((2, 4, 4), dtype=np.int64), {"method": "magic"}),
        (np.ones((2, 32)), np.zeros((2, 4, 4), dtype=np.int64), {"colour": 1}),
    ],
)
def test_input_errors(queries, codebooks, options):
    with pytest.raises(EdgeError) as exc:
        fz.decode(queries, codebooks, **options)
    one_line(exc)


@pytest.mark.parametrize(
    "method, options",
    [
        ("published", {"similarity": "cosine"}),
        ("published", {"A": -1}),
        ("published", {"T": -0.5}),
        ("published", {"max_iters": 0}),
        ("published", {"seed": -3}),
        ("default", {"seed": "x"}),
        ("resonator", {"A": 5}),
        ("exhaustive", {"limit": 10}),
        ("default", {"limit": 0}),
    ],
)
def test_option_errors(method, options):
    cb = fz.random_sbc(2, 8, 4, 8, seed=0)
    q, _ = fz.make_queries(cb, 3, "clean", seed=0)
    with pytest.raises(EdgeError) as exc:
        fz.decode(q, cb, method, **options)
    one_line(exc)
