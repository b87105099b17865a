"""XNOR-popcount, popcount, adder tree and the multi-bit dot unit vs NumPy (Amaranth simulator)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.adder_tree import AdderTree, shape_for, tree_levels
from edge_sdk.hw.intdot import TernaryIntDot
from edge_sdk.hw.popcount import XnorPopcount
from edge_sdk.hw.simtools import run_pipeline

FAST = settings(max_examples=12, deadline=None)


def _bits(rng: np.random.Generator, width: int) -> int:
    return int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)


@FAST
@given(width=st.integers(1, 130), seed=st.integers(0, 2**16))
def test_xnor_popcount_matches_numpy(width, seed):
    rng = np.random.default_rng(seed)
    dut = XnorPopcount(width)
    assert dut.latency == tree_levels(width)  # one register per adder-tree level
    ins = [{"a": _bits(rng, width), "w": _bits(rng, width), "m": _bits(rng, width)}
           for _ in range(12)]
    ins.append({"a": 0, "w": 0, "m": (1 << width) - 1})  # all match: the full count
    got = run_pipeline(dut, ins, ["count"], gaps=lambda c: c % 4 == 2)
    full = (1 << width) - 1
    want = [(~(d["a"] ^ d["w"]) & d["m"] & full).bit_count() for d in ins]
    assert [g["count"] for g in got] == want


def test_tree_depth_grows_with_width():
    assert [tree_levels(n) for n in (1, 2, 3, 4, 5, 64, 65, 256)] == [1, 1, 2, 2, 3, 6, 7, 8]
    assert shape_for(-5, 4).width == 4 and shape_for(-8, 7).width == 4
    assert shape_for(-9, 7).width == 5 and shape_for(0, 64).width == 7


@FAST
@given(n=st.integers(1, 20), lo=st.integers(-300, 0), span=st.integers(0, 600),
       seed=st.integers(0, 2**16))
def test_adder_tree_signed_sum(n, lo, span, seed):
    rng = np.random.default_rng(seed)
    hi = lo + span
    dut = AdderTree(n, lo, hi)
    w = dut.term_shape.width
    rows = rng.integers(lo, hi + 1, size=(10, n))
    rows[0], rows[1] = lo, hi  # the extremes fit the widths
    ins = [{"terms": sum((int(v) & ((1 << w) - 1)) << (k * w) for k, v in enumerate(r))}
           for r in rows]
    got = run_pipeline(dut, ins, ["total"])
    assert [g["total"] for g in got] == [int(r.sum()) for r in rows]


@FAST
@given(lanes=st.integers(1, 24), lo=st.sampled_from([0, -1, -255, -7]),
       hi=st.sampled_from([1, 15, 255]), seed=st.integers(0, 2**16))
def test_ternary_int_dot(lanes, lo, hi, seed):
    rng = np.random.default_rng(seed)
    dut = TernaryIntDot(lanes, lo, hi)
    xw = dut.x_shape.width
    xs = rng.integers(lo, hi + 1, size=(10, lanes))
    xs[0] = lo
    xs[1] = hi
    ws = rng.integers(-1, 2, size=(10, lanes))
    ins = [{"x": sum((int(v) & ((1 << xw) - 1)) << (k * xw) for k, v in enumerate(x)),
                "s": sum(int(v > 0) << k for k, v in enumerate(w)),
                "m": sum(int(v != 0) << k for k, v in enumerate(w))} for x, w in zip(xs, ws)]
    got = run_pipeline(dut, ins, ["total", "correction"])
    assert [g["total"] + g["correction"] for g in got] == [int(x @ w) for x, w in zip(xs, ws)]
