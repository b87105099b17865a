"""Ping-pong frame buffer: granule writes from any producer width, addressed reads, bank swap."""

from __future__ import annotations

import math

import numpy as np
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.framebuf import FrameBuffer
from edge_sdk.hw.reference import decode, frame_beats, unpack_lanes
from edge_sdk.hw.specs import FrameSpec, Values


@settings(max_examples=12, deadline=None)
@given(h=st.integers(1, 3), w=st.integers(1, 3), c=st.integers(1, 11), lanes=st.integers(1, 8),
       producer=st.integers(1, 8), kind=st.sampled_from(["bipolar", "ternary", "int"]),
       seed=st.integers(0, 2**16))
def test_frames_read_back(h, w, c, lanes, producer, kind, seed):
    rng = np.random.default_rng(seed)
    values = Values(kind, -5, 9) if kind == "int" else Values(kind)
    spec = FrameSpec(h, w, c, lanes, values, producer, math.ceil(c / producer))
    dut = FrameBuffer(spec)
    lo, hi = (-5, 9) if kind == "int" else (-1, 1)
    frames = [rng.integers(lo, hi + 1, size=(h, w, c)) for _ in range(3)]
    if kind == "bipolar":
        frames = [np.where(f > 0, 1, -1) for f in frames]
    beats = [b for f in frames for b in frame_beats(f, values, producer)]
    words = spec.pixels * spec.words
    seen: list[np.ndarray] = []

    async def writer(ctx):
        for beat in beats:
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        for _ in frames:
            await ctx.tick().until(dut.frame_valid)
            got = np.zeros((spec.pixels, spec.words * lanes), dtype=np.int64)
            for a in range(words):
                ctx.set(dut.rd_addr, a)
                await ctx.tick()
                codes = unpack_lanes(ctx.get(dut.rd_data), lanes, values.bits)
                p, k = divmod(a, spec.words)
                got[p, k * lanes:(k + 1) * lanes] = decode(codes, values)
            ctx.set(dut.release, 1)
            await ctx.tick()
            ctx.set(dut.release, 0)
            seen.append(got[:, :c].reshape(h, w, c))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run()
    for got, want in zip(seen, frames, strict=True):
        np.testing.assert_array_equal(got, want)
