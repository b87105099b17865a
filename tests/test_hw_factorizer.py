"""The factorizer blocks (hw/factorizer*.py) against the fixed-point golden decoder.

Expected values come from `edge_sdk.factorizer.fixed.decode` (itself checked against a plain
reading of the spec in test_factorizer_fixed.py), never from the blocks. Small sizes run in
Amaranth's simulator; the done-when sizes run as exported Verilog under cocotb + Icarus.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_sdk.factorizer as fz
from edge_sdk.converters.fpga import factorizer_sim
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed, lfsr
from edge_sdk.hw.factorizer import PublishedFactorizer
from edge_sdk.hw.factorizer_search import SearchFactorizer
from edge_sdk.hw.factorizer_spec import default_spec, published_spec
from edge_sdk.hw.factorizer_units import FractionDivider, Modulo, lfsr_next
from edge_sdk.hw.simtools import run_streams

DONE_WHEN = [(3, 16, 8, 64), (2, 64, 4, 128)]


def _queries(cb, n: int, noise: str, seed: int) -> np.ndarray:
    B, L = cb.shape[2:]
    return fixed.quantise(fz.make_queries(cb, n, noise, seed)[0], cb).reshape(n, B * L)


def _amaranth(spec, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dut = PublishedFactorizer(spec) if spec.method == "published" else SearchFactorizer(spec)
    out, _, _ = run_streams(dut, dut.i, dut.o, [int(v) for v in q.reshape(-1)], q.shape[0],
                            max_cycles=5_000_000)
    idx, its = zip(*(spec.unpack(w) for w in out), strict=True)
    return np.array(idx), np.array(its)


# ------------------------------------------------------------------ arithmetic units
def _run_unit(dut, cases, drive, read):
    got = []

    async def bench(ctx):
        for case in cases:
            drive(ctx, *case)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            while not ctx.get(dut.done):
                await ctx.tick()
            got.append(read(ctx))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("per_cycle", [1, 2, 5])
def test_fraction_divider_is_floor_of_the_scaled_fraction(per_cycle):
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(60):
        d = int(rng.integers(2, 1 << 20))
        cases.append((int(rng.integers(1, d)), d))
    cases += [(1, (1 << 20) - 1), ((1 << 20) - 2, (1 << 20) - 1), (1, 2)]
    dut = FractionDivider(20, 12, per_cycle)

    def drive(ctx, n, d):
        ctx.set(dut.n, n)
        ctx.set(dut.d, d)

    got = _run_unit(dut, cases, drive, lambda ctx: ctx.get(dut.q))
    assert got == [(n << 12) // d for n, d in cases]


def test_modulo_and_lfsr_step_follow_lfsr_py():
    states = np.array([lfsr.start(s) for s in range(8)], dtype=np.uint64)
    nxt = lfsr.step(states)
    cases = [(int(a), d) for a, d in zip(nxt, [1, 2, 3, 7, 16, 17, 63, 64], strict=True)]
    dut = Modulo(32, 7)

    def drive(ctx, a, d):
        ctx.set(dut.a, a)
        ctx.set(dut.d, d)

    assert _run_unit(dut, cases, drive, lambda ctx: ctx.get(dut.r)) == [a % d for a, d in cases]

    m = Module()
    st = Signal(32)
    out = Signal(32)
    m.d.comb += out.eq(lfsr_next(st))
    seen = []

    async def bench(ctx):
        for s in states:
            ctx.set(st, int(s))
            seen.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [int(v) for v in nxt]


# ------------------------------------------------------------------ Amaranth simulation
@pytest.mark.parametrize(("shape", "noise", "opts", "lanes"), [
    ((2, 4, 2, 8), "clean", {}, (2, 8)),
    ((3, 4, 2, 8), "moved0.05", {}, (3, 2)),
    ((3, 5, 2, 8), "clean", {"A": 2, "T": 0.3, "max_iters": 5}, (2, 1)),
    ((2, 6, 3, 8), "moved0.05", {"A": 3, "T": 0.5, "max_iters": 4, "similarity": "dot",
                                 "seed": 7}, (4, 4)),
    ((2, 6, 3, 8), "clean", {"A": 8, "T": 0.6, "max_iters": 3}, (1, 2)),
])
def test_published_block_equals_fixed_point_decoder(shape, noise, opts, lanes):
    F, M, B, L = shape
    cb = fz.random_sbc(F, M, B, L, 1)
    q = _queries(cb, 4, noise, 3)
    q[1, :L] = 0  # an empty block: normalised to Q // L everywhere
    want = fixed.decode(q, cb, "published", **opts)
    got = _amaranth(published_spec(cb, L, lanes=lanes[0], corr_lanes=lanes[1], **opts), q)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_published_block_follows_the_lfsr_draws():
    """A case where the drawn indices change the answer, so the LFSR path is really compared."""
    F, M, B, L = 3, 5, 2, 8
    opts = {"A": 2, "T": 0.3, "max_iters": 5}
    cb = fz.random_sbc(F, M, B, L, 1)
    q = _queries(cb, 4, "clean", 3)
    by_seed = [fixed.decode(q, cb, "published", seed=s, **opts) for s in (0, 1, 2, 3)]
    assert any(not np.array_equal(by_seed[0][k], other[k]) for other in by_seed[1:]
               for k in (0, 1))
    got = _amaranth(published_spec(cb, L, lanes=2, corr_lanes=4, seed=2, **opts), q)
    np.testing.assert_array_equal(got[0], by_seed[2][0])
    np.testing.assert_array_equal(got[1], by_seed[2][1])


@pytest.mark.parametrize(("shape", "lanes"), [((3, 4, 2, 8), 3), ((2, 6, 3, 8), 4),
                                               ((1, 5, 2, 4), 2)])
def test_search_block_equals_fixed_point_default(shape, lanes):
    F, M, B, L = shape
    cb = fz.random_sbc(F, M, B, L, 1)
    q = _queries(cb, 5, "moved0.05", 3)
    q[0, :L] = 0
    q[1] = 0  # every block empty: all products tie, the lowest flat index wins
    want = fixed.decode(q, cb, "default")
    got = _amaranth(default_spec(cb, L, lanes=lanes), q)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0][1].tolist() == [0] * F


def test_bad_block_settings_are_one_line_errors():
    cb = fz.random_sbc(1, 4, 2, 8, 0)
    with pytest.raises(EdgeError, match="F >= 2"):
        published_spec(cb, 8)
    with pytest.raises(EdgeError, match="lanes"):
        default_spec(cb, 8, lanes=0)


# ------------------------------------------------------------------ Verilog
def test_verilog_is_byte_identical_across_exports():
    """Two exports, one in a fresh interpreter with another hash seed, give the same bytes."""
    cb = fz.random_sbc(2, 8, 2, 16, 4)
    code = ("import sys, edge_sdk.factorizer as fz\n"
            "from edge_sdk.hw.factorizer_spec import published_spec, default_spec\n"
            "from edge_sdk.converters.fpga.factorizer_sim import verilog\n"
            "cb = fz.random_sbc(2, 8, 2, 16, 4)\n"
            "sys.stdout.write(verilog(published_spec(cb, 16)) + verilog(default_spec(cb, 16)))\n")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env=env).stdout
    here = factorizer_sim.verilog(published_spec(cb, 16)) + factorizer_sim.verilog(
        default_spec(cb, 16))
    assert here == other
    assert here.count("module edge_factorizer(") == 2


def _cocotb_case(shape, method: str, n: int, seed: int, tmp_path):
    F, M, B, L = shape
    cb = fz.random_sbc(F, M, B, L, seed)
    q = np.concatenate([_queries(cb, n, "clean", seed + 1), _queries(cb, n, "moved0.05",
                                                                     seed + 2)])
    spec = published_spec(cb, L) if method == "published" else default_spec(cb, L)
    want = fixed.decode(q, cb, method)
    res = factorizer_sim.run(spec, q, work_dir=tmp_path)
    np.testing.assert_array_equal(res.indices, want[0])
    np.testing.assert_array_equal(res.iterations, want[1])
    assert all(c > 0 for c in res.cycles)
    return res


# Default run: one clean and one moved0.05 query per size (seed 1: the published decoder's
# moved query converges in a few iterations; a query that runs to max_iters = 85 costs about a
# minute of Icarus time, so those are left to the slow run and the Amaranth tests above).
@pytest.mark.parametrize("shape", DONE_WHEN)
@pytest.mark.parametrize("method", ["published", "default"])
def test_verilog_under_cocotb_equals_fixed_point(shape, method, tmp_path):
    res = _cocotb_case(shape, method, 1 if method == "published" else 3, 1, tmp_path)
    print(f"{method} {shape}: cycles per query {res.cycles}")


@pytest.mark.slow
@pytest.mark.parametrize("shape", DONE_WHEN)
@pytest.mark.parametrize("method", ["published", "default"])
def test_verilog_under_cocotb_1000_queries_each(shape, method, tmp_path):
    res = _cocotb_case(shape, method, 1000, 21, tmp_path)
    print(f"{method} {shape}: mean cycles per query {np.mean(res.cycles):.0f}")


# ------------------------------------------------------------------ properties, backpressure
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(F=st.integers(2, 3), M=st.integers(2, 6), B=st.integers(1, 3),
       L=st.sampled_from([2, 4, 8]), lanes=st.integers(1, 4), corr=st.sampled_from([1, 2, 4]),
       A=st.integers(0, 7), T=st.sampled_from([0.0, 0.2, 0.5]),
       kind=st.sampled_from(["linf", "dot"]), seed=st.integers(0, 50))
def test_published_block_property(F, M, B, L, lanes, corr, A, T, kind, seed):
    cb = fz.random_sbc(F, M, B, L, seed)
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 50, size=(2, B * L)) * (rng.random((2, B * L)) < 0.4)
    opts = {"A": A, "T": T, "max_iters": 4, "similarity": kind, "seed": seed}
    want = fixed.decode(q, cb, "published", **opts)
    got = _amaranth(published_spec(cb, L, lanes=lanes, corr_lanes=corr, **opts), q)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("method", ["published", "default"])
def test_blocks_hold_results_under_backpressure(method):
    F, M, B, L = 2, 5, 2, 8
    cb = fz.random_sbc(F, M, B, L, 9)
    q = _queries(cb, 3, "moved0.05", 4)
    spec = published_spec(cb, L, lanes=2, corr_lanes=2) if method == "published" else \
        default_spec(cb, L, lanes=2)
    dut = PublishedFactorizer(spec) if method == "published" else SearchFactorizer(spec)
    out, _, _ = run_streams(dut, dut.i, dut.o, [int(v) for v in q.reshape(-1)], 3,
                            ready=lambda c: c % 7 == 3, valid=lambda c: c % 3 != 1)
    want = fixed.decode(q, cb, method)
    got = [spec.unpack(w) for w in out]
    assert [g[0] for g in got] == want[0].tolist()
    assert [g[1] for g in got] == want[1].tolist()


@pytest.mark.slow
def test_published_block_with_one_lane_fits_an_up5k():
    """Yosys counts of the F=3, M=16, B=8, L=64 decoder at lanes = corr_lanes = 1."""
    cb = fz.random_sbc(3, 16, 8, 64, 0)
    rep = factorizer_sim.synth(published_spec(cb, 64, lanes=1, corr_lanes=1), pnr=False)
    print(rep)
    assert rep["fits"] and rep["lut4"] > 0 and rep["bram"] > 0
