"""Window scan (the engines' address generator) vs a plain loop nest, over random geometries."""

from __future__ import annotations

from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.hw.scan import WindowScan
from edge_sdk.hw.specs import WindowSpec
from edge_sdk.ir.graph import conv_out


def reference(h, w, cf, win, groups, inner):
    kh, kw = win.kernel
    (sy, sx), (dy, dx) = win.strides, win.dilations
    pt, pl = win.pads[0], win.pads[1]
    oh, ow = win.out_hw
    out = []
    for oy in range(oh):
        for ox in range(ow):
            for g in range(groups):
                words = range(cf) if inner else [g]
                for i in range(kh):
                    for j in range(kw):
                        for c in words:
                            y, x = oy * sy - pt + i * dy, ox * sx - pl + j * dx
                            ok = 0 <= y < h and 0 <= x < w
                            out.append(((y * w + x) * cf + c if ok else None, ok,
                                        i == j == 0 and c == words[0],
                                        i == kh - 1 and j == kw - 1 and c == words[-1], g, c))
    return out


def simulate(h, w, cf, win, groups, inner, n, stall):
    dut = WindowScan(h, w, cf, win, groups, inner)
    seen = []

    async def bench(ctx):
        cycle = 0
        while len(seen) < n:
            go = not stall(cycle)
            ctx.set(dut.advance, int(go))
            if go:
                ok = bool(ctx.get(dut.tap_valid))
                seen.append((ctx.get(dut.addr) if ok else None, ok, bool(ctx.get(dut.first)),
                             bool(ctx.get(dut.last)), ctx.get(dut.group), ctx.get(dut.word)))
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 6), w=st.integers(1, 6), kh=st.integers(1, 3), kw=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 2)] * 4), strides=st.tuples(*[st.integers(1, 2)] * 2),
       dil=st.tuples(*[st.integers(1, 2)] * 2), cf=st.integers(1, 3), groups=st.integers(1, 3),
       inner=st.booleans())
def test_scan_matches_loop_nest(h, w, kh, kw, pads, strides, dil, cf, groups, inner):
    oh = conv_out(h, kh, strides[0], pads[0], pads[2], dil[0])
    ow = conv_out(w, kw, strides[1], pads[1], pads[3], dil[1])
    if oh < 1 or ow < 1:
        return
    if not inner:
        groups = cf
    win = WindowSpec((kh, kw), strides, pads, dil, (oh, ow))
    want = reference(h, w, cf, win, groups, inner)
    got = simulate(h, w, cf, win, groups, inner, 2 * len(want), stall=lambda c: c % 5 == 4)
    assert got == want + want  # and it wraps to the start of the next frame
