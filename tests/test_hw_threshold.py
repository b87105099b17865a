"""Threshold unit vs sdk.thresholds.apply_threshold, at tau - 1, tau, tau + 1 and the range ends."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.adder_tree import shape_for
from edge_sdk.hw.reference import decode
from edge_sdk.hw.simtools import run_pipeline
from edge_sdk.hw.specs import Values
from edge_sdk.hw.threshold import ThresholdConsts, ThresholdUnit
from edge_sdk.thresholds import apply_threshold


@settings(max_examples=15, deadline=None)
@given(k=st.integers(1, 300), channels=st.integers(1, 6), seed=st.integers(0, 2**16),
       ternary=st.booleans())
def test_threshold_unit_matches_ir_semantics(k, channels, seed, ternary):
    rng = np.random.default_rng(seed)
    lo, hi = -k, k
    # thresholds inside, at and beyond the accumulator range (clamping must not change results)
    tau = rng.integers(lo - 3, hi + 4, size=channels)
    flip = rng.random(channels) < 0.5
    zero = rng.random(channels) < 0.6 if ternary else np.zeros(channels, dtype=bool)
    consts = ThresholdConsts.build(tau, flip, zero, lo, hi)
    acc_w = shape_for(lo, hi).width
    dut = ThresholdUnit(acc_w, consts.width, ternary)
    cases = []
    for c in range(channels):
        for a in {lo, hi, *(int(tau[c]) + d for d in range(-2, 3))}:
            if lo <= a <= hi:
                cases.append((c, a))
    ins = [{"acc": a & ((1 << acc_w) - 1), "consts": consts.word(c, ternary)} for c, a in cases]
    got = run_pipeline(dut, ins, ["code"], gaps=lambda cyc: cyc % 3 == 1)
    kind = Values("ternary" if ternary else "bipolar")
    for (c, a), g in zip(cases, got, strict=True):
        want = apply_threshold(np.array([[a]]), tau[c:c + 1], flip[c:c + 1], zero[c:c + 1])
        assert decode(g["code"], kind) == want[0, 0], (c, a, tau[c], flip[c], zero[c])
