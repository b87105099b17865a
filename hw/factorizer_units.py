"""Small sequential arithmetic units of the factorizer block: fraction divider, modulo, LFSR step.

Why sequential: the fixed-point factorizer divides only a few times per estimate update (most
entries are 0 or the whole block mass, which need no divide), so a radix-2 unit of a few dozen
LUTs costs less than a combinational divider and is exact by construction.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edge_sdk.factorizer import lfsr


class FractionDivider(wiring.Component):
    """q = (n << k) // d for 0 < n < d, `per_cycle` quotient bits per cycle after `start`.

    Restoring long division of the proper fraction n / d: the remainder stays below d, so each
    of the k steps doubles it and subtracts d when it fits, producing one quotient bit; `done`
    pulses in the cycle q is complete (ceil(k / per_cycle) cycles after `start`).
    """

    def __init__(self, width: int, k: int, per_cycle: int = 2):
        self.width, self.k, self.per_cycle = width, k, max(1, min(per_cycle, k))
        super().__init__({"start": In(1), "n": In(width), "d": In(width),
                          "q": Out(k), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        w = self.width
        rem = Signal(w + 1)
        den = Signal(w)
        left = Signal(range(self.k + 1))  # quotient bits still to produce
        # the steps read only registers (not `start`), so their carry chains stay off the
        # caller's paths into `start`, `n` and `d`
        r, q = rem, self.q
        for step in range(self.per_cycle):
            active = left > step
            twice = Signal(w + 2, name=f"twice{step}")
            m.d.comb += twice.eq(r << 1)
            fits = twice >= den
            r_next = Signal(w + 1, name=f"rem{step}")
            q_next = Signal(self.k, name=f"q{step}")
            m.d.comb += [r_next.eq(Mux(active, twice - Mux(fits, den, 0), r)),
                         q_next.eq(Mux(active, (q << 1) | fits, q))]
            r, q = r_next, q_next
        done_now = left <= self.per_cycle
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [rem.eq(self.n), den.eq(self.d), left.eq(self.k), self.q.eq(0)]
        with m.Elif(left != 0):
            m.d.sync += [rem.eq(r), self.q.eq(q), self.done.eq(done_now),
                         left.eq(Mux(done_now, 0, left - self.per_cycle))]
        return m


class Modulo(wiring.Component):
    """r = a mod d for a 32-bit a and a small d > 0, one dividend bit per cycle (32 cycles)."""

    def __init__(self, a_width: int, d_width: int):
        self.a_width, self.d_width = a_width, d_width
        super().__init__({"start": In(1), "a": In(a_width), "d": In(d_width),
                          "r": Out(d_width), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        dw = self.d_width
        a = Signal(self.a_width)
        den = Signal(dw)
        steps = Signal(range(self.a_width + 1))
        shifted = Signal(dw + 1)
        m.d.comb += shifted.eq((self.r << 1) | a[-1])
        m.d.sync += self.done.eq(0)
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), den.eq(self.d), steps.eq(self.a_width), self.r.eq(0)]
        with m.Elif(steps != 0):
            fits = shifted >= den
            m.d.sync += [self.r.eq(shifted - (den & fits.replicate(dw))), a.eq(a << 1),
                         steps.eq(steps - 1), self.done.eq(steps == 1)]
        return m


def lfsr_next(state):
    """lfsr.py's Galois step as an expression of a 32-bit signal (value = the new state)."""
    return (state >> 1) ^ (state[0].replicate(32) & lfsr.TAPS)
