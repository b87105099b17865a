"""Folded layer engine (dense and conv) and max-pool engine vs NumPy loops, under backpressure.

Each case streams two frames (so the ping-pong banks swap) through the block with the sink
refusing some cycles, and checks the values and that a frame takes the schedule's cycles.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.engine import LayerEngine
from edge_sdk.hw.pool import MaxPoolEngine
from edge_sdk.hw.reference import beats_frame, frame_beats, window_dot, window_pool
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import EngineSpec, FrameSpec, PoolSpec, Values, WindowSpec
from edge_sdk.hw.threshold import ThresholdConsts
from edge_sdk.ir.graph import conv_out
from edge_sdk.thresholds import apply_threshold

RANGES = {"bipolar": (-1, 1), "ternary": (-1, 1), "int": (-9, 20)}


def _frame(rng, kind, shape):
    if kind == "bipolar":
        return rng.choice([-1, 1], size=shape)
    if kind == "ternary":
        return rng.choice([-1, 0, 1], size=shape)
    lo, hi = RANGES["int"]
    return rng.integers(lo, hi + 1, size=shape)


def _window(h, w, kernel, pads, strides, dense):
    if dense:
        return WindowSpec(kernel=(h, w))
    oh = conv_out(h, kernel[0], strides[0], pads[0], pads[2])
    ow = conv_out(w, kernel[1], strides[1], pads[1], pads[3])
    return WindowSpec(kernel, strides, pads, (1, 1), (oh, ow))


def run_engine(seed, kind, hwc, o, pe, simd, producer, kernel=(1, 1), pads=(0, 0, 0, 0),
               strides=(1, 1), dense=False, ternary_w=False, thresholds=True, frames=2,
               ready=lambda cyc: cyc % 7 != 3):
    rng = np.random.default_rng(seed)
    h, w, c = hwc
    values = Values(kind, *RANGES[kind])
    win = _window(h, w, kernel, pads, strides, dense)
    if win.out_hw[0] < 1 or win.out_hw[1] < 1:
        return None  # the geometry leaves no output: nothing to check
    weights = rng.choice([-1, 0, 1] if ternary_w else [-1, 1], size=(o, win.taps, c))
    frame = FrameSpec(h, w, c, simd, values, producer, math.ceil(c / producer))
    m = win.taps * c * max(abs(values.lo), abs(values.hi))
    consts = tau = flip = zero = None
    if thresholds:
        tau = rng.integers(-3, 4, size=o)
        flip, zero = rng.random(o) < 0.5, rng.random(o) < 0.5
        consts = ThresholdConsts.build(tau, flip, zero, -m, m)
    spec = EngineSpec(frame, win, pe, weights.astype(np.int8), -m, m, consts,
                      ternary_out=thresholds and bool(zero.any()))
    dut = LayerEngine(spec)
    data = [_frame(rng, kind, (h, w, c)) for _ in range(frames)]
    beats = [b for f in data for b in frame_beats(f, values, producer)]
    oh, ow = win.out_hw
    per = oh * ow * spec.folds
    out, t_out, t_in = run_streams(dut, dut.i, dut.o, beats, frames * per,
                                   ready=ready)
    for k, f in enumerate(data):
        got = beats_frame(out[k * per:(k + 1) * per], spec.out_values, pe, (oh, ow), o)
        want = window_dot(f, weights, win)
        if thresholds:
            want = apply_threshold(want, tau, flip, zero, axis=2)
        np.testing.assert_array_equal(got, want)
    return spec, t_out, t_in


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["bipolar", "ternary", "int"]),
       k=st.integers(1, 70), o=st.integers(1, 12), pe=st.integers(1, 5),
       simd=st.integers(1, 33), producer=st.sampled_from([1, 2, 4, 8]),
       ternary_w=st.booleans(), thresholds=st.booleans())
def test_dense_engine(seed, kind, k, o, pe, simd, producer, ternary_w, thresholds):
    run_engine(seed, kind, (1, 1, k), o, pe, simd, producer, dense=True, ternary_w=ternary_w,
               thresholds=thresholds)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["bipolar", "ternary", "int"]),
       h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 5), o=st.integers(1, 6),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       pads=st.tuples(*[st.integers(0, 1)] * 4), strides=st.tuples(*[st.integers(1, 2)] * 2),
       pe=st.integers(1, 4), simd=st.integers(1, 5))
def test_conv_engine(seed, kind, h, w, c, o, kernel, pads, strides, pe, simd):
    run_engine(seed, kind, (h, w, c), o, pe, min(simd, c), producer=min(2, c), kernel=kernel,
               pads=pads, strides=strides, ternary_w=seed % 2 == 0)


def test_dense_after_flatten_frame():
    """A dense layer reading a multi-pixel frame (the window covers the whole frame)."""
    run_engine(5, "bipolar", (3, 2, 6), 5, 2, 4, producer=3, dense=True)


def test_engine_frame_takes_scheduled_cycles():
    """Back to back frames: one output frame every compute_cycles (the initiation interval)."""
    rng_seed = 11
    spec, t_out, _ = run_engine(rng_seed, "bipolar", (1, 1, 64), 8, 2, 16, producer=16,
                                dense=True, frames=4, ready=lambda cyc: True)
    per = spec.folds
    gaps = [t_out[(k + 1) * per - 1] - t_out[k * per - 1] for k in range(1, 4)]
    assert gaps == [spec.compute_cycles] * 3


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["bipolar", "ternary", "int"]),
       h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 9),
       lanes=st.integers(1, 9), pads=st.sampled_from([(0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 1, 1)]),
       use_min=st.booleans())
def test_maxpool_engine(seed, kind, h, w, c, lanes, pads, use_min):
    rng = np.random.default_rng(seed)
    values = Values(kind, *RANGES[kind])
    lanes = min(lanes, c)
    win = _window(h, w, (2, 2), pads, (2, 2), dense=False)
    if win.out_hw[0] < 1 or win.out_hw[1] < 1:
        return
    sel = rng.random(c) < 0.5 if use_min else None
    spec = PoolSpec(FrameSpec(h, w, c, lanes, values, 1, c), win, sel)
    dut = MaxPoolEngine(spec)
    data = [_frame(rng, kind, (h, w, c)) for _ in range(2)]
    beats = [b for f in data for b in frame_beats(f, values, 1)]
    oh, ow = win.out_hw
    per = oh * ow * spec.out_beats
    out, _, _ = run_streams(dut, dut.i, dut.o, beats, 2 * per, ready=lambda cyc: cyc % 5 != 1)
    for k, f in enumerate(data):
        got = beats_frame(out[k * per:(k + 1) * per], values, lanes, (oh, ow), c)
        np.testing.assert_array_equal(got, window_pool(f, win, sel))
