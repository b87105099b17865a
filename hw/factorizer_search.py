"""The fixed-point `default` factorizer decoder as an Amaranth block: exhaustive integer search.

Why exhaustive: fixed.decode_default returns exhaustive search's answer (the product with the
highest score sum_b q'_b[pos_b], lowest flat index on ties; iterations = 1), and a pipelined
scorer reaches it in M^F / lanes cycles with no multiplier: a product's hot position in block b
is the modular sum of its factors' positions. The normalised query sits in one RAM per block
with `lanes` read ports, so `lanes` products (consecutive indices of the last factor) are
scored per cycle; products are visited in increasing flat index and a score replaces the best
only when strictly greater, which keeps the lowest index on ties.
Streams as PublishedFactorizer: `i` takes B*L raw entries, `o` gives F indices and 1.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .factorizer_query import QueryNormaliser
from .factorizer_spec import QUERY_BITS, FactorizerSpec

DRAIN = 2  # cycles from issuing ROM reads to the last score comparison


def _mod_add(a, b, L: int):
    total = a + b
    return Mux(total >= L, total - L, total)


class SearchFactorizer(wiring.Component):
    def __init__(self, spec: FactorizerSpec):
        if spec.method != "default":
            raise ValueError("SearchFactorizer takes a default spec")
        self.spec = spec
        super().__init__({"i": In(stream.Signature(QUERY_BITS)),
                          "o": Out(stream.Signature(spec.out_bits))})

    def elaborate(self, platform):
        m = Module()
        s = self.spec
        F, M, B, L, K = s.F, s.M, s.B, s.L, s.lanes
        G, pb, ib = s.groups, s.pos_bits, s.index_bits
        qw, sw = s.widths.query, s.widths.similarity

        m.submodules.intake = intake = QueryNormaliser(s)
        wiring.connect(m, wiring.flipped(self.i), intake.i)
        banks = []
        for b in range(B):
            mem = Memory(shape=qw, depth=L, init=[])
            m.submodules[f"query{b}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(intake.w_pos), wp.data.eq(intake.w_data),
                         wp.en.eq(intake.w_en & (intake.w_block == b))]
            banks.append([mem.read_port() for _ in range(K)])
        heads = []  # factors 0..F-2: one codevector (B positions) per word
        for f in range(F - 1):
            words = [sum(int(s.indices[f][mi][b]) << (b * pb) for b in range(B))
                     for mi in range(M)]
            rom = Memory(shape=B * pb, depth=M, init=words)
            m.submodules[f"rom{f}"] = rom
            heads.append(rom.read_port())
        last = Memory(shape=K * B * pb, depth=G, init=s.rom_words(range(F - 1, F)))
        m.submodules[f"rom{F - 1}"] = last
        last_r = last.read_port()

        digits = [Signal(range(M), name=f"digit{f}") for f in range(F - 1)]
        grp = Signal(range(G))
        drain = Signal(range(DRAIN + 1))
        v1, v2 = Signal(), Signal()
        d1 = [Signal(range(M), name=f"digit1_{f}") for f in range(F - 1)]
        d2 = [Signal(range(M), name=f"digit2_{f}") for f in range(F - 1)]
        g1, g2 = Signal(range(G)), Signal(range(G))
        best = Signal(sw)
        best_d = [Signal(range(M), name=f"best_digit{f}") for f in range(F - 1)]
        best_last = Signal(ib)
        m.d.sync += [v1.eq(0), v2.eq(v1), g2.eq(g1)] + [a.eq(b) for a, b in zip(d2, d1,
                                                                                 strict=True)]
        m.d.comb += [r.addr.eq(d) for r, d in zip(heads, digits, strict=True)]
        m.d.comb += last_r.addr.eq(grp)

        # stage 1: ROM words -> hot position of every lane's product in every block
        for b in range(B):
            prefix = 0
            for r in heads:
                prefix = _mod_add(prefix, r.data[b * pb:(b + 1) * pb], L)
            for p in range(K):
                off = (p * B + b) * pb
                m.d.comb += banks[b][p].addr.eq(_mod_add(prefix, last_r.data[off:off + pb], L))

        # stage 2: scores, compared in lane order against the best so far
        chain, chain_last = best, best_last
        better_any = 0
        for p in range(K):
            score = Signal(sw, name=f"score{p}")
            m.d.comb += score.eq(sum(banks[b][p].data for b in range(B)))
            mi = g2 * K + p
            better = Signal(name=f"better{p}")
            m.d.comb += better.eq((mi < M) & (score > chain))
            nb, nl = Signal(sw, name=f"best{p}"), Signal(ib, name=f"best_last{p}")
            m.d.comb += [nb.eq(Mux(better, score, chain)), nl.eq(Mux(better, mi, chain_last))]
            chain, chain_last = nb, nl
            better_any = better_any | better
        with m.If(v2):
            m.d.sync += [best.eq(chain), best_last.eq(chain_last)]
            with m.If(better_any):
                m.d.sync += [a.eq(b) for a, b in zip(best_d, d2, strict=True)]

        with m.FSM():
            with m.State("BOOT"):  # one state change after reset: HDL simulators evaluate
                m.next = "LOAD"    # the state decoders only when the state changes
            with m.State("LOAD"):
                m.d.comb += intake.go.eq(1)
                with m.If(intake.done):
                    m.d.sync += [grp.eq(0), best.eq(0), best_last.eq(0)]
                    m.d.sync += [d.eq(0) for d in digits + best_d]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += [v1.eq(1), g1.eq(grp), grp.eq(grp + 1)]
                m.d.sync += [a.eq(b) for a, b in zip(d1, digits, strict=True)]
                carry = grp == G - 1
                with m.If(carry):
                    m.d.sync += grp.eq(0)
                for d in reversed(digits):  # odometer over factors 0..F-2, last digit fastest
                    with m.If(carry):
                        m.d.sync += d.eq(Mux(d == M - 1, 0, d + 1))
                    carry = carry & (d == M - 1)
                with m.If(carry):
                    m.d.sync += drain.eq(0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN):
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(Cat(*[d[:ib] for d in best_d], best_last,
                                                   Signal(s.iter_bits, init=1)))]
                with m.If(self.o.ready):
                    m.next = "LOAD"
        return m
