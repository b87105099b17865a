"""Multi-bit first layer: integer inputs times {-1, 0, +1} weights, SIMD lanes per cycle.

No multipliers and no negators: -x = ~x + 1, so
    sum_l m_l * (s_l ? x_l : -x_l) = sum_l m_l * (x_l ^ ~s_l) + popcount(m & ~s),
one XOR per bit instead of a carry chain per lane (about half the LUTs of a +-x mux). The mask m
holds the weight's nonzero bit and the SIMD/tap padding. Both sums go through registered adder
trees of equal depth, so the first layer pipelines like the binary ones; `total` and
`correction` come out together and the engine adds them in its next stage.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import AdderTree, shape_for
from .popcount import Popcount


class TernaryIntDot(wiring.Component):
    """sum_l m_l * (s_l ? x_l : -x_l) = total + correction, for `lanes` inputs in [lo, hi]."""

    def __init__(self, lanes: int, lo: int, hi: int):
        self.lanes = lanes
        self.x_shape = shape_for(lo, hi)
        # x ^ ~s lies in [min(lo, ~hi), max(hi, ~lo)]
        self._tree = AdderTree(lanes, min(lo, ~hi, 0), max(hi, ~lo))
        self._count = Popcount(lanes)
        self.latency = self._tree.latency
        super().__init__({
            "x": In(lanes * self.x_shape.width),
            "s": In(lanes),
            "m": In(lanes),
            "valid_in": In(1),
            "total": Out(self._tree.total_shape),
            "correction": Out(self._count.count.shape()),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = self._tree
        m.submodules.count = count = self._count
        xw = self.x_shape.width
        tw = tree.term_shape.width
        for k in range(self.lanes):
            raw = self.x[k * xw:(k + 1) * xw]
            x = raw.as_signed() if self.x_shape.signed else raw
            wide = Signal(tree.term_shape, name=f"x{k}")
            term = Signal(tree.term_shape, name=f"term{k}")
            m.d.comb += [wide.eq(x),
                         term.eq(Mux(self.m[k], wide ^ Mux(self.s[k], 0, -1), 0))]
            m.d.comb += tree.terms[k * tw:(k + 1) * tw].eq(term)
        m.d.comb += [
            tree.valid_in.eq(self.valid_in),
            count.bits.eq(self.m & ~self.s),
            count.valid_in.eq(self.valid_in),
            self.correction.eq(count.count),
            self.total.eq(tree.total),
            self.valid_out.eq(tree.valid_out),
        ]
        return m
