"""Query intake of the factorizer blocks: store B*L raw entries, then normalise (spec step 1).

Why its own block: both decoders start from q'[l] = (q[l] * Q) // S per block (S = block sum,
an empty block becomes Q // L). Raw entries are kept in a RAM and block sums accumulated while
they stream in, so the next query can arrive while the decoder still works on the previous one;
the normalised entries are written out (w_en/w_addr/w_data) only once the decoder raises `go`.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .factorizer_spec import QUERY_BITS, FactorizerSpec
from .factorizer_units import FractionDivider


class QueryNormaliser(wiring.Component):
    def __init__(self, spec: FactorizerSpec):
        self.spec = spec
        n = spec.B * spec.L
        super().__init__({
            "i": In(stream.Signature(QUERY_BITS)),
            "go": In(1),
            "w_en": Out(1), "w_addr": Out(range(n)), "w_data": Out(spec.qbits + 1),
            "w_block": Out(range(spec.B)), "w_pos": Out(range(spec.L)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        s = self.spec
        B, L, Q = s.B, s.L, 1 << s.qbits
        sum_bits = QUERY_BITS + s.pos_bits + 1
        raw = Memory(shape=QUERY_BITS, depth=B * L, init=[])
        m.submodules.raw = raw
        wr = raw.write_port()
        rd = raw.read_port()
        m.submodules.div = div = FractionDivider(sum_bits, s.qbits, per_cycle=1)
        sums = Array(Signal(sum_bits, name=f"sum{b}") for b in range(B))
        a = Signal(range(B * L + 1))
        b = Signal(range(B))
        pos = Signal(range(L))
        step = Signal()  # the next entry's read is issued in this cycle
        m.d.comb += [wr.addr.eq(a), wr.data.eq(self.i.payload), rd.addr.eq(a + step),
                     self.w_addr.eq(a), self.w_block.eq(b),
                     self.w_pos.eq(pos)]
        total = Signal(sum_bits)
        # `ready` is a register (not a decode of the FSM state) so that HDL simulators see its
        # value from time 0: the state does not change before the first beat arrives
        taking = Signal(init=1)
        m.d.comb += self.i.ready.eq(taking)
        m.d.comb += total.eq(sums[b])

        def advance():
            with m.If(pos == L - 1):
                m.d.sync += [pos.eq(0), b.eq(b + 1)]
            with m.Else():
                m.d.sync += pos.eq(pos + 1)
            m.d.sync += a.eq(a + 1)

        def finish_or_advance():
            with m.If(a == B * L - 1):
                m.d.comb += self.done.eq(1)
                m.d.sync += [a.eq(0), b.eq(0), pos.eq(0), taking.eq(1)]
                m.d.sync += [sm.eq(0) for sm in sums]
                m.next = "INGEST"
            with m.Else():
                m.d.comb += step.eq(1)
                advance()

        with m.FSM():
            with m.State("INGEST"):
                m.d.comb += wr.en.eq(self.i.valid)
                with m.If(self.i.valid):
                    m.d.sync += sums[b].eq(sums[b] + self.i.payload)
                    advance()
                    with m.If(a == B * L - 1):
                        m.d.sync += [a.eq(0), b.eq(0), pos.eq(0), taking.eq(0)]
                        m.next = "WAIT"
            with m.State("WAIT"), m.If(self.go):  # raw[0] is read now: DECIDE sees it
                m.next = "DECIDE"
            with m.State("DECIDE"):  # exact entries (0, S, empty block) take one cycle each
                with m.If((total == 0) | (rd.data == 0) | (rd.data == total)):
                    m.d.comb += [self.w_en.eq(1),
                                 self.w_data.eq(Mux(total == 0, Q // L,
                                                    Mux(rd.data == 0, 0, Q)))]
                    finish_or_advance()
                with m.Else():
                    m.d.comb += [div.start.eq(1), div.n.eq(rd.data), div.d.eq(total)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"), m.If(div.done):
                m.d.comb += [self.w_en.eq(1), self.w_data.eq(div.q)]
                m.next = "DECIDE"
                finish_or_advance()
        return m
