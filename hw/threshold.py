"""Threshold unit: an integer accumulator to a ±1 (or, with ties, {-1, 0, +1}) activation.

IR semantics (sdk/thresholds.py): out = +1 iff acc >= tau (flip: acc <= tau); with `zero` the
single value next to tau on the -1 side (tau - 1, or tau + 1 when flipped) gives 0.
The direction bit is folded so one `>=` comparator serves both: ~x = -x - 1 is decreasing, so
acc <= tau  <=>  ~acc >= ~tau  and  acc == tau + 1  <=>  ~acc == ~tau - 1. `ThresholdConsts`
precomputes t = tau or ~tau and t - 1 per channel; the unit computes y = acc ^ flip,
plus = y >= t, tie = zero & (y == t - 1), and registers the result (one cycle).

Output code (shared by every stream): bipolar = one bit (1 = +1); ternary = two bits, bit 0 =
"is zero", bit 1 = "is +1", so -1, 0, +1 encode as 0, 1, 2 and unsigned max is max-pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .adder_tree import shape_for


@dataclass(frozen=True)
class ThresholdConsts:
    """Per-channel constants for the unit, clamped to the accumulator range [lo, hi].

    Clamping keeps the comparator narrow and never changes a result for acc in [lo, hi]; a tie
    point outside the range is dropped (its `zero` flag cleared).
    """

    t: np.ndarray  # int64 [C]
    flip: np.ndarray  # bool [C]
    zero: np.ndarray  # bool [C]
    width: int  # signed bits for t, t - 1 and y

    @classmethod
    def build(cls, tau, flip, zero, lo: int, hi: int) -> ThresholdConsts:
        tau = np.asarray(tau, dtype=np.int64).copy()
        flip = np.asarray(flip, dtype=bool).copy()
        zero = np.asarray(zero, dtype=bool).copy()
        tie = np.where(flip, tau + 1, tau - 1)
        zero &= (tie >= lo) & (tie <= hi)
        tau = np.where(flip, np.clip(tau, lo - 1, hi), np.clip(tau, lo, hi + 1))
        t = np.where(flip, ~tau, tau)
        width = shape_for(min(lo, ~hi, int(t.min(initial=0)) - 1),
                          max(hi, ~lo, int(t.max(initial=0)))).width
        return cls(t=t, flip=flip, zero=zero, width=width)

    def word(self, c: int, ternary: bool) -> int:
        """Bits of channel c as the unit's constant port expects: t | flip | zero."""
        mask = (1 << self.width) - 1
        value = int(self.t[c]) & mask
        value |= int(self.flip[c]) << self.width
        if ternary:
            value |= int(self.zero[c]) << (self.width + 1)
        return value

    @staticmethod
    def word_width(width: int, ternary: bool) -> int:
        return width + (2 if ternary else 1)


class ThresholdUnit(wiring.Component):
    """One channel's compare, registered: `acc` + constants in, activation code out (latency 1)."""

    latency = 1

    def __init__(self, acc_width: int, t_width: int, ternary: bool):
        self.acc_width, self.t_width, self.ternary = acc_width, t_width, ternary
        self.code_width = 2 if ternary else 1
        super().__init__({
            "acc": In(signed(acc_width)),
            "consts": In(ThresholdConsts.word_width(t_width, ternary)),
            "valid_in": In(1),
            "code": Out(self.code_width),
            "valid_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        tw = self.t_width
        t = self.consts[:tw].as_signed()
        flip = self.consts[tw]
        y = Signal(signed(tw))
        m.d.comb += y.eq(Mux(flip, ~self.acc, self.acc))
        plus = y >= t
        if self.ternary:
            zero = self.consts[tw + 1]
            tie = zero & (y == t - 1)
            m.d.sync += self.code.eq(Cat(tie, plus))
        else:
            m.d.sync += self.code.eq(plus)
        m.d.sync += self.valid_out.eq(self.valid_in)
        return m
