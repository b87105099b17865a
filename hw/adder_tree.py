"""Pipelined adder tree: the heart of every XNOR-popcount and multi-bit dot product.

A register after *every* level keeps the critical path at one adder of a few bits; DESIGN.md
measured that this, not registering every second level, is what reaches ~100 MHz on UP5K and
~270 MHz on HX8K at 64 bits. The depth therefore grows with the width: ceil(log2(n)) levels
(at least one, so a single term is still registered and the latency stays uniform).
Node widths follow the exact value range of each partial sum, not a blanket log2 growth.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


def shape_for(lo: int, hi: int) -> Shape:
    """Smallest Amaranth shape holding every integer in [lo, hi]."""
    if lo >= 0:
        return unsigned(max(1, hi.bit_length()))
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi < (1 << (width - 1))):
        width += 1
    return signed(width)


def tree_levels(n: int) -> int:
    """Register levels of an n-term tree (>= 1)."""
    return max(1, (n - 1).bit_length())


class AdderTree(wiring.Component):
    """Sum of `n` terms, each in [lo, hi], with `latency` = tree_levels(n) register stages.

    Ports: `terms` (n * term_width bits, term k at bits [k*w, (k+1)*w)), `valid_in`;
    `total` and `valid_out` appear `latency` cycles later. Terms are read as signed when lo < 0.
    """

    def __init__(self, n: int, lo: int, hi: int):
        if n < 1:
            raise ValueError("an adder tree needs at least one term")
        self.n, self.lo, self.hi = n, lo, hi
        self.term_shape = shape_for(lo, hi)
        self.total_shape = shape_for(n * lo, n * hi)
        self.latency = tree_levels(n)
        super().__init__({
            "terms": In(n * self.term_shape.width),
            "valid_in": In(1),
            "total": Out(self.total_shape),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.term_shape.width
        nodes = []
        for k in range(self.n):
            raw = self.terms[k * w:(k + 1) * w]
            nodes.append((raw.as_signed() if self.term_shape.signed else raw, self.lo, self.hi))
        valid = self.valid_in
        for level in range(self.latency):
            nxt = []
            for k in range(0, len(nodes), 2):
                pair = nodes[k:k + 2]
                lo = sum(p[1] for p in pair)
                hi = sum(p[2] for p in pair)
                reg = Signal(shape_for(lo, hi), name=f"l{level}_n{k // 2}")
                value = pair[0][0] + pair[1][0] if len(pair) == 2 else pair[0][0]
                m.d.sync += reg.eq(value)
                nxt.append((reg, lo, hi))
            nodes = nxt
            v = Signal(name=f"l{level}_valid")
            m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += [self.total.eq(nodes[0][0]), self.valid_out.eq(valid)]
        return m
