"""Windowed average pool on fixed-point integers (issue #11: the Bi-Real / ReActNet downsampling
shortcut), "average pooling as accumulate-and-scale".

The front end it shares with the max-pool engine (hw/pool.py's `window_front`: frame buffer,
window scan, output queue) feeds, per output pixel and memory word, the window's taps one per
cycle; each lane accumulates its signed value (padded taps, `tap_valid` low, add 0) and on the
window's last tap the sum is scaled by one rounding multiply, y = (sum * R_n + 2**(S-1)) >> S:
sdk/fixedpoint.py's AvgPool rule. n is the same for every output position unless padding is
excluded from a padded window's divisor (ONNX count_include_pad=0, TFLite SAME); then a counter
of the window's taps inside the map gives n, and each lane computes the product by every
distinct R_n (a constant each, a few of them: e.g. n in {4, 6, 9} for a 3x3 window padded by 1)
and keeps the one for its n. Sums and products are as wide as their static bounds (Python
integers at plan time), so nothing wraps. Cycles per frame as the max-pool: output pixels *
words * taps.

Area: a window of one word completes at most every `taps` cycles, so its lanes' sums are held
and scaled by ceil(lanes / taps) multipliers over up to `taps` cycles (a 3x3 window: one
multiplier for up to 9 lanes), rather than one multiplier per lane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .fixed_stages import bound_shape, decode, product
from .pool import front_queue_depth, window_front
from .specs import PoolSpec, Values


@dataclass(frozen=True)
class AvgPoolSpec(PoolSpec):
    """A `PoolSpec` (frame, window) whose lanes average: sum of the window's taps, then
    (sum * R_n + 2**(shift-1)) >> shift into `avg_values` codes; `mults` pairs every divisor n
    that occurs (taps inside the map, or all taps when padding counts) with its R_n."""

    avg_values: Values = field(default_factory=lambda: Values("int", 0, 0))
    mults: tuple[tuple[int, int], ...] = ((1, 1),)
    shift: int = 24
    dsp: bool = False  # the product on `*` (SB_MAC16), else shift-and-add LUTs

    @property
    def out_values(self) -> Values:
        return self.avg_values

    @property
    def sum_bound(self) -> int:
        v = self.frame.values
        return self.window.taps * max(abs(v.lo), abs(v.hi))


class AvgPoolEngine(wiring.Component):
    """Streams: `i` (producer beats into the frame buffer), `o` (one word of channels per beat,
    `avg_values` codes)."""

    def __init__(self, spec: AvgPoolSpec):
        self.spec = spec
        f = spec.frame
        if f.values.kind != "int":
            raise ValueError("an average pool needs integer (fixed-point) values")
        # the window sums of one word are scaled `per_cycle` lanes at a time, over `groups`
        # cycles, before the next window's sums are in (a window takes `taps` cycles)
        # (every lane at once when the multipliers are powers of two: plain shifts)
        shifts_only = all(r > 0 and r & (r - 1) == 0 for _, r in spec.mults)
        self.per_cycle = f.lanes if shifts_only else math.ceil(f.lanes / spec.window.taps)
        self.groups = math.ceil(f.lanes / self.per_cycle)
        self.latency = 4 + self.groups  # issue -> queue write
        self.queue_depth = front_queue_depth(spec, self.latency)
        super().__init__({
            "i": In(stream.Signature(f.producer_lanes * f.values.bits)),
            "o": Out(stream.Signature(f.lanes * spec.avg_values.bits)),
        })

    def elaborate(self, platform):
        m = Module()
        spec, f = self.spec, self.spec.frame
        vb, ob, lanes = f.values.bits, spec.avg_values.bits, f.lanes
        front = window_front(m, spec, self.i, self.o, lanes * ob, self.queue_depth)
        frame, queue = front.frame, front.queue
        v1, first1, last1, tv1 = front.v1, front.first1, front.last1, front.tv1
        sum_shape = bound_shape(spec.sum_bound)
        top = max(abs(int(r)) for _, r in spec.mults)
        prod_shape = bound_shape(spec.sum_bound * top + (1 << (spec.shift - 1)))
        accs = [Signal(sum_shape, name=f"sum{k}") for k in range(lanes)]
        count = Signal(range(spec.window.taps + 1))  # taps inside the map (the same per lane)
        with m.If(v1):
            m.d.sync += count.eq(Mux(first1, 0, count) + tv1)
            for k in range(lanes):
                x = decode(frame.rd_data[k * vb:(k + 1) * vb], f.values)
                cand = Mux(tv1, x, 0)
                m.d.sync += accs[k].eq(Mux(first1, 0, accs[k]) + cand)
        # the sums (and the divisor) held while `per_cycle` multipliers scale them, group g of
        # lanes [g * per_cycle, (g + 1) * per_cycle) in the g-th cycle after `done`
        done = Signal()
        m.d.sync += done.eq(v1 & last1)
        pc, groups = self.per_cycle, self.groups
        held = [Signal(sum_shape, name=f"held{k}") for k in range(groups * pc)]
        held_count = Signal.like(count)
        run = Signal()
        g = Signal(range(max(groups, 2)))
        with m.If(done):
            m.d.sync += [h.eq(a) for h, a in zip(held, accs)]
            m.d.sync += [held_count.eq(count), run.eq(1), g.eq(0)]
        with m.Elif(run):
            m.d.sync += [g.eq(g + 1), run.eq(g != groups - 1)]
        run1, last_g1 = Signal(), Signal()
        g1 = Signal.like(g)
        m.d.sync += [run1.eq(run), g1.eq(g), last_g1.eq(run & (g == groups - 1))]
        ys = []
        for j in range(pc):
            x = held[j]
            for gi in range(1, groups):
                x = Mux(g == gi, held[gi * pc + j], x)
            sel = Signal(sum_shape, name=f"sel{j}")
            m.d.comb += sel.eq(x)
            scaled = product(sel, int(spec.mults[0][1]), spec.dsp)
            for n, r in spec.mults[1:]:
                scaled = Mux(held_count == n, product(sel, int(r), spec.dsp), scaled)
            prod = Signal(prod_shape, name=f"prod{j}")
            m.d.sync += prod.eq(scaled + (1 << (spec.shift - 1)))
            y = Signal(signed(ob), name=f"y{j}")
            m.d.comb += y.eq(prod >> spec.shift)
            ys.append(y)
        slots = [Signal(signed(ob), name=f"out{k}") for k in range(groups * pc)]
        with m.If(run1):
            for gi in range(groups):
                with m.If(g1 == gi):
                    m.d.sync += [slots[gi * pc + j].eq(ys[j]) for j in range(pc)]
        out_valid = Signal()
        m.d.sync += out_valid.eq(last_g1)
        m.d.comb += [queue.w_data.eq(Cat(*slots[:lanes])), queue.w_en.eq(out_valid)]
        return m
