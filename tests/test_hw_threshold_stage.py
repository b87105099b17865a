"""Stand-alone threshold stage on a stream of integer beats vs apply_threshold."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.reference import beats_frame, frame_beats
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import ThresholdSpec, Values
from edge_sdk.hw.threshold import ThresholdConsts
from edge_sdk.hw.threshold_stage import ThresholdStage
from edge_sdk.thresholds import apply_threshold


@settings(max_examples=10, deadline=None)
@given(c=st.integers(1, 9), lanes=st.integers(1, 5), pixels=st.integers(1, 4),
       lo=st.sampled_from([-20, 0]), seed=st.integers(0, 2**16))
def test_threshold_stage(c, lanes, pixels, lo, seed):
    rng = np.random.default_rng(seed)
    hi = 20
    tau = rng.integers(lo - 2, hi + 3, size=c)
    flip, zero = rng.random(c) < 0.5, rng.random(c) < 0.5
    values = Values("int", lo, hi)
    spec = ThresholdSpec(lanes, math.ceil(c / lanes), pixels, c, values,
                         ThresholdConsts.build(tau, flip, zero, lo, hi), bool(zero.any()))
    dut = ThresholdStage(spec)
    data = rng.integers(lo, hi + 1, size=(1, pixels, c))
    out, _, _ = run_streams(dut, dut.i, dut.o, frame_beats(data, values, lanes),
                            pixels * spec.beats, ready=lambda cyc: cyc % 3 != 0)
    got = beats_frame(out, spec.out_values, lanes, (1, pixels), c)
    np.testing.assert_array_equal(got, apply_threshold(data, tau, flip, zero, axis=2))
