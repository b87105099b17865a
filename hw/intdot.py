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


class Int8Dot(wiring.Component):
    """sum_l m_l * x_l * w_l: `lanes` values times int8 weight codes (issue #11's 8-bit layers).

    `signs`: the data are ±1 (or ternary, zeros already in the mask m) given as one sign bit per
    lane (1 = +1), so the product is a mux of w and -w, no multiplier. Otherwise x are integers
    in [lo, hi] (the model input, or a Quantize's codes) and each lane is an exact x * w
    product (a DSP on the UP5K with `synth_ice40 -dsp`, LUTs elsewhere). Widths come from the
    exact product range, the sum goes through the same registered adder tree as the other
    units, so `latency` = tree_levels(lanes) and the engine's pipeline is unchanged.
    """

    W_LO, W_HI = -128, 127

    def __init__(self, lanes: int, lo: int = -1, hi: int = 1, signs: bool = False):
        self.lanes, self.signs = lanes, signs
        if signs:
            self.x_shape = shape_for(0, 1)
            plo, phi = self.W_LO, -self.W_LO  # -w reaches +128
        else:
            self.x_shape = shape_for(lo, hi)
            corners = [a * b for a in (lo, hi) for b in (self.W_LO, self.W_HI)]
            plo, phi = min(corners + [0]), max(corners + [0])
        self.p_lo, self.p_hi = plo, phi
        self._tree = AdderTree(lanes, plo, phi)
        self.latency = self._tree.latency
        super().__init__({
            "x": In(lanes * self.x_shape.width),
            "w": In(lanes * 8),
            "m": In(lanes),
            "valid_in": In(1),
            "total": Out(self._tree.total_shape),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = self._tree
        xw = self.x_shape.width
        tw = tree.term_shape.width
        for k in range(self.lanes):
            wk = self.w[k * 8:(k + 1) * 8].as_signed()
            term = Signal(tree.term_shape, name=f"term{k}")
            if self.signs:
                prod = Mux(self.x[k], wk, -wk)
            else:
                raw = self.x[k * xw:(k + 1) * xw]
                prod = (raw.as_signed() if self.x_shape.signed else raw) * wk
            m.d.comb += term.eq(Mux(self.m[k], prod, 0))
            m.d.comb += tree.terms[k * tw:(k + 1) * tw].eq(term)
        m.d.comb += [
            tree.valid_in.eq(self.valid_in),
            self.total.eq(tree.total),
            self.valid_out.eq(tree.valid_out),
        ]
        return m
