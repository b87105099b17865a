"""FPGA stream stages of TFLite's int8 layers (hw/tflite_stages.py), bit for bit.

Stage level (Amaranth simulator): TflRequant (plain and ruy rounding), TflPRelu and TflAdd (a
constant operand, and two joined streams) against `sdk.tflite_int8.run` on extreme values:
INT32_MIN / INT32_MAX operands, M = INT32_MIN (SRDHM's saturation), M = 2**31 - 1, 2**30,
right shifts 0..31, left shifts up to the int32 limit, and exact ties of the last rounding
(x = k * 2**n +- 2**(n-1)), with the clamp opened past int32 so the raw primitives show.
Whole models (cocotb + Icarus on the generated Verilog): LCE's int8 fixtures against
`golden.run(fixed_point=True)` (what `run --fixed-point` prints), and byte-identical Verilog
across two conversions. Expected values never come from the backend.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import edge_sdk
from edge_sdk import golden, tflite_int8
from edge_sdk.converters.fpga.dag import tfl_spec
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import Values
from edge_sdk.hw.tflite_stages import TflStage
from edge_sdk.ir import layers as L

LARQ = Path(__file__).resolve().parents[1] / "examples" / "larq"
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")


# ------------------------------------------------------------------ stage level helpers
def _pack(vals, bits: int) -> int:
    return sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(vals))


def _unpack(word: int, lanes: int, bits: int) -> list[int]:
    out = []
    for k in range(lanes):
        v = (word >> (k * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


def _beats(xs: list[np.ndarray], in_values: list[Values], lanes: int) -> list[list[int]]:
    """Per input, its pixels ([n, C]) as stream beats of `lanes` codes, ceil(C / lanes) per
    pixel, the last beat of a pixel zero-filled."""
    n, c = xs[0].shape
    words: list[list[int]] = [[] for _ in xs]
    for p in range(n):
        for b in range(0, c, lanes):
            for k, x in enumerate(xs):
                row = [int(v) for v in x[p, b:b + lanes]]
                words[k].append(_pack(row + [0] * (lanes - len(row)), in_values[k].bits))
    return words


def _run_stage(layer, xs: list[np.ndarray], in_values: list[Values], lanes: int,
               out_lo: int, out_hi: int, dsp: bool = False) -> np.ndarray:
    """Stream xs ([n, C] each, one pixel per row) through the layer's stage; [n, C] out.
    dsp: the products on 16 x 16 DSP pieces rather than shift-and-add LUTs."""
    n, c = xs[0].shape
    beats = -(-c // lanes)
    out_values = Values("int", out_lo, out_hi)
    spec = replace(tfl_spec(layer, lanes, beats, n, c, tuple(in_values), out_values), dsp=dsp)
    stage = TflStage(spec)
    words = _beats(xs, in_values, lanes)
    if len(xs) == 1:
        out, _, _ = run_streams(stage, stage.i0, stage.o, words[0], n * beats,
                                max_cycles=100_000)
    else:
        out = _run_join(stage, words, n * beats)
    ob = out_values.bits
    vals = [v for w in out for v in _unpack(w, lanes, ob)]
    return np.asarray(vals, np.int64).reshape(n, beats * lanes)[:, :c]


def _run_join(stage, words: list[list[int]], n_out: int) -> list[int]:
    """Both inputs offered with different bubble patterns, the output throttled."""
    from amaranth.sim import Simulator

    out: list[int] = []

    async def bench(ctx):
        ks = [0, 0]
        cycle = 0
        while len(out) < n_out:
            assert cycle < 100_000, "no progress"
            offers = [ks[j] < len(words[j]) and (cycle + j) % 3 != 0 for j in range(2)]
            for j, port in enumerate(stage.inputs):
                ctx.set(port.valid, int(offers[j]))
                if offers[j]:
                    ctx.set(port.payload, words[j][ks[j]])
            take = int(cycle % 5 != 2)
            ctx.set(stage.o.ready, take)
            _, _, v0, r0, v1, r1, ov, op = await ctx.tick().sample(
                stage.i0.valid, stage.i0.ready, stage.i1.valid, stage.i1.ready,
                stage.o.valid, stage.o.payload)
            for j, (v, r) in enumerate(((v0, r0), (v1, r1))):
                if v and r:
                    ks[j] += 1
            if ov and take:
                out.append(op)
            cycle += 1

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def _fits(x: np.ndarray, left: np.ndarray) -> np.ndarray:
    """x clipped so that x << left stays an int32 (TFLite would wrap; golden refuses)."""
    return np.clip(x, np.int64(I32_MIN) >> left, np.int64(I32_MAX) >> left)


def _ties(rng, right: np.ndarray, n: int) -> np.ndarray:
    """k * 2**n +- 2**(n-1) per channel: exact halves of the last right shift."""
    k = rng.integers(-1000, 1000, size=(n, right.size))
    half = (np.int64(1) << right) >> 1
    sign = rng.choice([-1, 1], size=(n, right.size))
    return (k << right) + sign * half


MULTS = np.array([I32_MIN, I32_MAX, 1 << 30, (1 << 30) + 1, 0, 1, 1518500250, -(1 << 30),
                  1234567891, I32_MAX], np.int64)
SHIFTS = np.array([0, 0, -1, -31, 5, -12, 3, -20, -2, 1], np.int64)


WIDE = 1 << 32  # a clamp range past int32: the raw primitives show (SRDHM's saturation too)


def _requant(rounding: str, factor=None, bias=None, zp: int = 0, lo: int = -WIDE,
             hi: int = WIDE, mult=MULTS, shift=SHIFTS) -> L.TflRequant:
    c = len(mult)
    return L.TflRequant("rq", ["x"], "y", factor=np.ones(c, np.int64) if factor is None
                        else factor, bias=np.zeros(c, np.int64) if bias is None else bias,
                        mult=mult, shift=shift, zero_point=zp, lo=lo, hi=hi, rounding=rounding)


def _inputs_32(rng, shift: np.ndarray, n: int) -> np.ndarray:
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = rng.integers(I32_MIN, I32_MAX, size=(n, shift.size), endpoint=True)
    x[0], x[1], x[2], x[3] = I32_MIN, I32_MAX, -1, 0
    x[4:8] = _ties(rng, right, 4)
    x[8] = rng.integers(-3, 4, size=shift.size)
    return _fits(x, left)


# ------------------------------------------------------------------ stage level tests
@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
@pytest.mark.parametrize("rounding", ["", "ruy"])
def test_requant_primitives_on_extremes(rounding, dsp):
    """SRDHM (INT32_MIN * INT32_MIN saturation, nudge, truncation), RDBPOT / ruy's half-up
    shift, left shifts: the raw int32 result (clamp wide open, zero point 0)."""
    rng = np.random.default_rng(1)
    layer = _requant(rounding)
    x = _inputs_32(rng, SHIFTS, 24)
    want = tflite_int8.run(layer, [x])
    got = _run_stage(layer, [x], [Values("int", I32_MIN, I32_MAX)], 3, -WIDE, WIDE, dsp)
    np.testing.assert_array_equal(got, want)
    assert x[0, 0] == I32_MIN and want[0, 0] == I32_MAX  # SRDHM(MIN, MIN) saturates


def test_requant_ties_round_differently_in_ruy():
    """Negative ties: MBQM's RDBPOT rounds half away from zero, ruy half up; the stage
    follows `rounding` (a test that tells the two apart)."""
    mult = np.full(4, I32_MAX - 1, np.int64)  # SRDHM(x, M) == x for small |x|
    shift = np.array([-1, -2, -3, -5], np.int64)
    x = np.array([[-1, -2, -4, -16], [-3, -6, -12, -48], [1, 2, 4, 16]], np.int64)
    ys = {}
    for r in ("", "ruy"):
        layer = _requant(r, mult=mult, shift=shift)
        want = tflite_int8.run(layer, [x])
        got = _run_stage(layer, [x], [Values("int", -64, 64)], 4, -WIDE, WIDE)
        np.testing.assert_array_equal(got, want)
        ys[r] = got
    assert not np.array_equal(ys[""], ys["ruy"])


def test_requant_factor_bias_zero_point_clamp():
    """A MUL-like requant (per-channel factor and bias) into int8 codes with a zero point and
    an activation range, as the fixtures' layers: output centred again."""
    rng = np.random.default_rng(2)
    c = 7
    mult = rng.integers(1 << 30, 1 << 31, size=c)
    shift = rng.integers(-12, 2, size=c)
    layer = _requant("", factor=rng.integers(-128, 128, size=c),
                     bias=rng.integers(-5000, 5000, size=c), zp=-9, lo=-20, hi=100,
                     mult=mult, shift=shift)
    x = rng.integers(-255, 256, size=(40, c))
    x[0], x[1] = -255, 255
    want = tflite_int8.run(layer, [x])
    got = _run_stage(layer, [x], [Values("int", -255, 255)], 2, -20 + 9, 100 + 9)
    np.testing.assert_array_equal(got, want)
    assert want.min() == -11 and want.max() == 109  # both clamps reached


def test_prelu_both_branches():
    """x >= 0 through (M1, e1), x < 0 through x * alpha_c and (M2, e2), extremes of the
    product, zero and ties on both sides."""
    rng = np.random.default_rng(3)
    c = 6
    layer = L.TflPRelu("pr", ["x"], "y", alpha=np.array([-128, 127, 0, 1, -1, 77]),
                       mult1=np.array([I32_MAX, 1 << 30, 1518500250, I32_MIN, 1, 1 << 30]),
                       shift1=np.array([0, -3, 2, 0, 0, -31]),
                       mult2=np.array([1 << 30, I32_MAX, I32_MIN, I32_MAX, 1 << 30,
                                       I32_MAX]),
                       shift2=np.array([-1, -7, 0, -3, -4, -9]), zero_point=0, lo=-WIDE,
                       hi=WIDE)
    x = rng.integers(-(1 << 20), 1 << 20, size=(30, c))
    x[0], x[1], x[2] = -(1 << 20), (1 << 20) - 1, 0
    x[3:6] = _ties(rng, np.array([0, 3, 0, 0, 0, 31]), 3) % (1 << 20)
    x[6:9] = -_ties(rng, np.array([1, 7, 0, 0, 4, 9]), 3) // 128
    x[6:9, 3] = [-4, -12, -20]  # alpha 1, M2 ~ 1 (identity below 2**30), >> 3: negative ties
    want = tflite_int8.run(layer, [x])
    for dsp in (False, True):
        got = _run_stage(layer, [x], [Values("int", -(1 << 20), (1 << 20) - 1)], 3, -WIDE,
                         WIDE, dsp)
        np.testing.assert_array_equal(got, want)


def _add(two: bool, c: int, rng, zp=0, lo=I32_MIN, hi=I32_MAX) -> L.TflAdd:
    m = rng.integers(1 << 30, 1 << 31, size=c)
    m[0] = I32_MAX
    out_m = [I32_MAX, 1 << 30, *rng.integers(1 << 30, 1 << 31, size=c - 2)]
    out_e = [-20, -1, *rng.integers(-24, -10, size=c - 2)]
    kw = {"mult1": m, "shift1": rng.integers(-8, 1, size=c), "mult_out": np.array(out_m),
          "shift_out": np.array(out_e), "zero_point": zp, "lo": lo, "hi": hi}
    if two:
        ins = ["a", "b"]
        kw.update(mult2=rng.integers(1 << 30, 1 << 31, size=c),
                  shift2=rng.integers(-8, 1, size=c))
    else:
        ins = ["a"]
        kw.update(const=rng.integers(-(1 << 27), 1 << 27, size=c))
    return L.TflAdd("add", ins, "y", **kw)


@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
@pytest.mark.parametrize("two", [False, True], ids=["const", "two_streams"])
def test_add_left_shift_and_multipliers(two, dsp):
    """x << 20, per-input MBQMs, the sum's MBQM, zero point and clamp; two inputs joined beat
    by beat under bubbles and backpressure, or one input and a per-channel constant."""
    rng = np.random.default_rng(4 + two)
    c = 5
    vals = Values("int", -1023, 1023)  # |x << 20| < 2**30: the sum stays an int32
    for zp, lo, hi in ((0, -WIDE, WIDE), (-5, -128, 127)):
        layer = _add(two, c, rng, zp, lo, hi)
        xs = [rng.integers(-1023, 1024, size=(25, c)) for _ in range(1 + two)]
        for x in xs:
            x[0], x[1] = -1023, 1023
        want = tflite_int8.run(layer, xs)
        got = _run_stage(layer, xs, [vals] * (1 + two), 2, lo - zp, hi - zp, dsp)
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ whole models (Icarus)
FIXTURES = ["int8_ops", "int8_pool", "int8_fc", "int8_dw", "int8_flat", "resnet_int8"]


def _check_model(name: str, n: int, tmp_path: Path, start: int = 0) -> None:
    model = edge_sdk.load(LARQ / f"{name}.tflite")
    x = np.load(LARQ / f"{name}_x.npy")[start:start + n]
    build = model.convert("fpga", tmp_path / name, board="sim")
    sim = build.simulate(x)
    want = golden.run(model.ir, x, fixed_point=True)
    np.testing.assert_array_equal(sim.output, want)


@needs_icarus
@pytest.mark.parametrize("name,n", [("int8_ops", 4), ("int8_pool", 4), ("int8_fc", 4),
                                    ("int8_dw", 4), ("int8_flat", 4), ("resnet_int8", 2)])
def test_fixtures_on_icarus(name, n, tmp_path):
    """Generated Verilog under cocotb + Icarus == run --fixed-point on the fixtures' inputs."""
    _check_model(name, n, tmp_path)


@needs_icarus
@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_on_icarus_many(name, tmp_path):
    """More inputs of every fixture (all 32 of the small ones, 16 of resnet_int8)."""
    _check_model(name, 16 if name == "resnet_int8" else 32, tmp_path)


def test_verilog_is_deterministic(tmp_path):
    model = edge_sdk.load(LARQ / "resnet_int8.tflite")
    a = model.convert("fpga", tmp_path / "a", board="sim").folder
    b = model.convert("fpga", tmp_path / "b", board="sim").folder
    for f in ("edge_net.v", "edge_net.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes()
