"""The pipelined TflStage (hw/tflite_stages.py) under random bubbles and backpressure.

The stage registers after every product and between its multiply steps (an add's input
rescales, then its output rescale; a MUL-like requant's or a PReLU's first product, then
the rescale), so results spend 3 to 5 cycles in flight, and constants from the beat's ROM
word travel beside them. These tests stream every op through it with each input offering
beats at random and the sink taking them at random (plus one long stall), and compare every
pixel, in order, with `sdk.tflite_int8.run` (plain integer arithmetic, not the stage): a lost,
duplicated or misaligned beat (a constant from the wrong beat, a valid bit out of step with
its data) shows as a mismatch or a missing output. Also: full throughput (one beat per cycle)
when nothing stalls, and the latency the planner reads.

Synthesis numbers of one TflAdd stage (yosys synth_ice40, nextpnr-ice40 Fmax on the UP5K):
`python bench/fpga_tfl_stage.py [--baseline OTHER_tflite_stages.py]`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator
from test_fpga_tflite_int8 import I32_MAX, I32_MIN, _beats, _unpack

from edge_sdk import tflite_int8
from edge_sdk.converters.fpga.dag import tfl_spec
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import Values
from edge_sdk.hw.tflite_stages import TflStage
from edge_sdk.ir import layers as L


def _stage(layer, xs, in_values, lanes: int, dsp: bool = False):
    n, c = xs[0].shape
    beats = -(-c // lanes)
    want = tflite_int8.run(layer, xs)
    out_values = Values("int", int(want.min()), int(want.max()))
    spec = replace(tfl_spec(layer, lanes, beats, n, c, tuple(in_values), out_values), dsp=dsp)
    words = _beats(xs, in_values, lanes)
    return TflStage(spec), words, want, out_values, beats


def _drive(stage, words: list[list[int]], n_out: int, seed: int) -> tuple[list[int], int]:
    """Every input offers its next beat with probability 0.7 (independently), the sink is
    ready with probability 0.6 and not at all for 40 cycles from cycle 30; a beat counts
    on an input when valid and ready, at the sink when valid and ready. Returns the payloads
    taken and the most results that were waiting in the stage at once."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    most = [0]

    async def bench(ctx):
        ks = [0] * len(words)
        cycle = 0
        while len(out) < n_out:
            assert cycle < 20_000, f"no progress ({len(out)}/{n_out} outputs, inputs {ks})"
            offers = [ks[j] < len(words[j]) and rng.random() < 0.7 for j in range(len(words))]
            for j, port in enumerate(stage.inputs):
                ctx.set(port.valid, int(offers[j]))
                ctx.set(port.payload, words[j][ks[j]] if offers[j] else 0)
            take = int(not 30 <= cycle < 70 and rng.random() < 0.6)
            ctx.set(stage.o.ready, take)
            sampled = await ctx.tick().sample(
                *[s for p in stage.inputs for s in (p.valid, p.ready)],
                stage.o.valid, stage.o.payload)
            vr = sampled[2:-2]
            ov, op = sampled[-2:]
            for j in range(len(words)):
                if vr[2 * j] and vr[2 * j + 1]:
                    ks[j] += 1
            if ov and take:
                out.append(op)
            assert len(set(ks)) == 1, f"inputs joined out of step: {ks}"
            most[0] = max(most[0], ks[0] - len(out))
            cycle += 1
        # nothing more comes out once every input beat has been answered
        ctx.set(stage.o.ready, 1)
        for port in stage.inputs:
            ctx.set(port.valid, 0)
        for _ in range(8):
            _, _, ov = await ctx.tick().sample(stage.o.valid)
            assert not ov, "an output beat with no input beat behind it"

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, most[0]


def _check(layer, xs, in_values, lanes: int, dsp: bool, seed: int) -> TflStage:
    stage, words, want, out_values, beats = _stage(layer, xs, in_values, lanes, dsp)
    n, c = xs[0].shape
    out, most = _drive(stage, words, n * beats, seed)
    got = np.asarray([v for w in out for v in _unpack(w, lanes, out_values.bits)],
                     np.int64).reshape(n, beats * lanes)[:, :c]
    np.testing.assert_array_equal(got, want)
    assert most > stage.latency, "the long stall never filled the pipeline"
    return stage


def _shifts(rng, c: int, lo: int, hi: int) -> np.ndarray:
    return rng.integers(lo, hi, size=c, endpoint=True)


def _mults(rng, c: int) -> np.ndarray:
    m = rng.integers(1 << 30, 1 << 31, size=c)
    m[0] = I32_MAX
    return m


def _int8(rng, n: int, c: int, zp: int) -> tuple[np.ndarray, Values]:
    """Centred int8 codes (q - zp) with both ends present."""
    x = rng.integers(-128, 128, size=(n, c)) - zp
    x[0], x[1] = -128 - zp, 127 - zp
    return x, Values("int", -128 - zp, 127 - zp)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
@pytest.mark.parametrize("two", [False, True], ids=["const", "two_streams"])
def test_add_under_backpressure(two, dsp):
    """TflAdd: both input rescales, their sum, then the output rescale a cycle later, with
    the output multiplier and shifts of the right beat (7 channels over 3 lanes: 3 beats,
    the last one padded)."""
    rng = np.random.default_rng(10 + 2 * two + dsp)
    c, n = 7, 40
    kw = {"mult1": _mults(rng, c), "shift1": _shifts(rng, c, -6, 0),
          "mult_out": _mults(rng, c), "shift_out": _shifts(rng, c, -21, -16),
          "zero_point": -3, "lo": -128, "hi": 100}
    a, va = _int8(rng, n, c, 5)
    xs, vals = [a], [va]
    if two:
        b, vb = _int8(rng, n, c, -7)
        xs.append(b)
        vals.append(vb)
        kw.update(mult2=_mults(rng, c), shift2=_shifts(rng, c, -6, 0))
    else:
        kw["const"] = rng.integers(-(1 << 26), 1 << 26, size=c)
    layer = L.TflAdd("add", ["a", "b"][:len(xs)], "y", **kw)
    stage = _check(layer, xs, vals, 3, dsp, seed=1 + two)
    assert stage.latency == 5  # held beat, input products, rounding + sum, product, rounding


@pytest.mark.parametrize("rounding", ["", "ruy"])
def test_requant_mul_and_conv_under_backpressure(rounding):
    """A MUL-like requant (x * f + b registered, then the rescale; latency 4) and a conv's
    (f = 1: the rescale alone, latency 3), with left shifts and the INT32_MIN multiplier (SRDHM's
    saturating comparator present), clamp wide open so the raw values show."""
    rng = np.random.default_rng(20 + (rounding == "ruy"))
    c, n = 5, 30
    mult = _mults(rng, c)
    mult[1] = I32_MIN
    shift = np.array([0, 0, 2, -9, -31])
    wide = 1 << 32
    x = rng.integers(-(1 << 20), 1 << 20, size=(n, c))
    x[0], x[1] = -(1 << 20), (1 << 20) - 1
    vals = Values("int", -(1 << 20), (1 << 20) - 1)
    for factor, bias, latency in (
            (rng.integers(-128, 128, size=c), rng.integers(-5000, 5000, size=c), 4),
            (np.ones(c, np.int64), rng.integers(-5000, 5000, size=c), 3)):
        xx = x.copy()
        if latency == 3:  # conv: hit SRDHM(INT32_MIN, INT32_MIN) on channel 1
            lim = np.int64(I32_MAX) >> np.maximum(shift, 0)  # acc << left stays int32
            xx = np.clip(xx * 2048, -lim - 1 - bias, lim - bias)
            xx[2, 1] = I32_MIN - int(bias[1])
            vals = Values("int", int(xx.min()), int(xx.max()))
        layer = L.TflRequant("rq", ["x"], "y", factor=factor, bias=bias, mult=mult,
                             shift=shift, zero_point=0, lo=-wide, hi=wide, rounding=rounding)
        stage = _check(layer, [xx], [vals], 2, False, seed=3)
        assert stage.latency == latency


@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
def test_prelu_under_backpressure(dsp):
    """PReLU: the branch (x or x * alpha, and its M and shifts) registered on the sign of x,
    then the rescale and the clamp."""
    rng = np.random.default_rng(30 + dsp)
    c, n = 6, 36
    layer = L.TflPRelu("pr", ["x"], "y", alpha=np.array([-128, 127, 0, 1, -1, 77]),
                       mult1=_mults(rng, c), shift1=_shifts(rng, c, -8, 1),
                       mult2=_mults(rng, c), shift2=_shifts(rng, c, -12, 0),
                       zero_point=4, lo=-100, hi=127)
    x, vals = _int8(rng, n, c, -2)
    stage = _check(layer, [x], [vals], 4, dsp, seed=4)
    assert stage.latency == 4


def test_full_throughput_without_stalls():
    """No bubbles, sink always ready: one input beat and one output beat per cycle, the
    first result `latency` cycles (plus two through the output FIFO) after its beat."""
    rng = np.random.default_rng(40)
    c, n = 4, 20
    layer = L.TflAdd("add", ["a", "b"], "y", mult1=_mults(rng, c), shift1=_shifts(rng, c, -3, 0),
                     mult2=_mults(rng, c), shift2=_shifts(rng, c, -3, 0),
                     mult_out=_mults(rng, c), shift_out=_shifts(rng, c, -20, -18),
                     zero_point=0, lo=-128, hi=127)
    a, va = _int8(rng, n, c, 0)
    stage, words, want, out_values, beats = _stage(layer, [a, a], [va, va], 2)
    # both inputs offer the same beat (x + x) every cycle, the sink is always ready
    out, t_out, t_in = run_streams(stage, list(stage.inputs), stage.o, words[0], n * beats)
    assert t_in == list(range(t_in[0], t_in[0] + n * beats))
    assert t_out == list(range(t_out[0], t_out[0] + n * beats))
    assert t_out[0] - t_in[0] == stage.latency + 2  # + the FIFO: write, registered read
    got = np.asarray([v for w in out for v in _unpack(w, 2, out_values.bits)],
                     np.int64).reshape(n, beats * 2)[:, :c]
    np.testing.assert_array_equal(got, want)


def test_conv_requant_throughput_matches_run_streams():
    """The one-step conv requant through hw.simtools.run_streams (the driver the fast
    simulation path uses), sink ready two cycles in three: every pixel, in order."""
    rng = np.random.default_rng(50)
    c, n = 3, 30
    layer = L.TflRequant("rq", ["x"], "y", factor=np.ones(c, np.int64),
                         bias=rng.integers(-3000, 3000, size=c), mult=_mults(rng, c),
                         shift=_shifts(rng, c, -12, -6), zero_point=-1, lo=-128, hi=127,
                         rounding="ruy")
    x = rng.integers(-40000, 40000, size=(n, c))
    vals = Values("int", -40000, 40000)
    stage, words, want, out_values, beats = _stage(layer, [x], [vals], 3)
    out, _, _ = run_streams(stage, stage.i0, stage.o, words[0], n * beats,
                            ready=lambda cyc: cyc % 3 != 1, max_cycles=10_000)
    got = np.asarray([v for w in out for v in _unpack(w, 3, out_values.bits)],
                     np.int64).reshape(n, 3)
    np.testing.assert_array_equal(got, want)
    assert stage.latency == 3


# ------------------------------------------------------------------ synthesis numbers
