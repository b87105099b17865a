"""Pipelined XNOR-popcount: matches of a ±1 activation chunk against a ±1 weight chunk.

count = popcount(~(a ^ w) & m): the `m` input masks positions that must not count (padding of
SIMD lanes, padded conv taps, zeros of ternary weights or activations). The binary dot product
over the unmasked positions is then 2 * count - popcount(m). The XNOR sits in front of the first
adder level so synthesis merges both into the same LUT4s.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import AdderTree, shape_for


class XnorPopcount(wiring.Component):
    """popcount(~(a ^ w) & m) over `width` bits, `latency` cycles after `valid_in`."""

    def __init__(self, width: int):
        self.width = width
        self._tree = AdderTree(width, 0, 1)
        self.latency = self._tree.latency
        super().__init__({
            "a": In(width),
            "w": In(width),
            "m": In(width, init=(1 << width) - 1),
            "valid_in": In(1),
            "count": Out(shape_for(0, width)),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = self._tree
        m.d.comb += [
            tree.terms.eq(~(self.a ^ self.w) & self.m),
            tree.valid_in.eq(self.valid_in),
            self.count.eq(tree.total),
            self.valid_out.eq(tree.valid_out),
        ]
        return m


class Popcount(wiring.Component):
    """popcount(bits), `latency` cycles later: the shared count of valid positions."""

    def __init__(self, width: int):
        self.width = width
        self._tree = AdderTree(width, 0, 1)
        self.latency = self._tree.latency
        super().__init__({
            "bits": In(width),
            "valid_in": In(1),
            "count": Out(shape_for(0, width)),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tree = tree = self._tree
        m.d.comb += [
            tree.terms.eq(self.bits),
            tree.valid_in.eq(self.valid_in),
            self.count.eq(tree.total),
            self.valid_out.eq(tree.valid_out),
        ]
        return m
