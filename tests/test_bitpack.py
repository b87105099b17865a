"""Packing layout and the popcount dot product (DESIGN.md, "Numerics")."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_sdk import bitpack

ternary = st.integers(-1, 1)


@given(hnp.arrays(np.int8, st.tuples(st.integers(1, 5), st.integers(1, 130)), elements=ternary))
def test_pack_unpack_round_trip(values):
    sign, mask = bitpack.pack_values(values)
    assert sign.dtype == np.uint32 and sign.shape[-1] == (values.shape[-1] + 31) // 32
    assert np.array_equal(bitpack.unpack_values(sign, mask, values.shape[-1]), values)
    assert (mask is None) == bool((values != 0).all())


def test_layout_is_lsb_first_little_endian_bit1_is_plus1():
    v = -np.ones(40, dtype=np.int8)
    v[[0, 3, 31, 32, 39]] = 1
    sign, mask = bitpack.pack_values(v)
    assert mask is None
    assert sign.tolist() == [(1 << 0) | (1 << 3) | (1 << 31), (1 << 0) | (1 << 7)]
    # little-endian bytes of word 0: byte 0 holds bits 0..7
    assert sign[:1].view(np.uint8).tolist() == [0b1001, 0, 0, 0x80]


def test_padding_bits_are_zero():
    sign, _ = bitpack.pack_values(np.ones(33, dtype=np.int8))
    assert sign.tolist() == [0xFFFFFFFF, 1]


@settings(max_examples=150)
@given(
    st.integers(1, 6),
    st.integers(1, 7),
    st.integers(1, 100),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_popcount_dot_equals_integer_dot(n, o, k, a_ternary, w_ternary, data):
    a_el = ternary if a_ternary else st.sampled_from([-1, 1])
    w_el = ternary if w_ternary else st.sampled_from([-1, 1])
    a = data.draw(hnp.arrays(np.int8, (n, k), elements=a_el))
    w = data.draw(hnp.arrays(np.int8, (o, k), elements=w_el))
    a_s, a_m = bitpack.pack_values(a)
    w_s, w_m = bitpack.pack_values(w)
    got = bitpack.popcount_dot(a_s, a_m, w_s, w_m, k, max_elements=7)  # forces chunking
    assert np.array_equal(got, a.astype(np.int64) @ w.T.astype(np.int64))


def test_binary_dot_is_k_minus_twice_hamming():
    rng = np.random.default_rng(1)
    a = rng.choice(np.array([-1, 1], np.int8), size=(3, 67))
    w = rng.choice(np.array([-1, 1], np.int8), size=(33, 67))
    ham = (a[:, None, :] != w[None, :, :]).sum(-1)
    a_s, _ = bitpack.pack_values(a)
    w_s, _ = bitpack.pack_values(w)
    assert np.array_equal(bitpack.popcount_dot(a_s, None, w_s, None, 67), 67 - 2 * ham)
