"""Stand-alone threshold on a stream of integer beats.

Needed when a max-pool runs on integer accumulators before the threshold (Larq/FINN order, or
after the passes commuted a pool in front of the BN); otherwise the threshold is fused into the
engine. Beat k of a pixel carries channels [k * lanes, (k + 1) * lanes); the constants of that
beat come from a ROM read one cycle ahead, then one `ThresholdUnit` per lane.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .outq import OutputQueue
from .specs import ThresholdSpec
from .threshold import ThresholdConsts, ThresholdUnit


class ThresholdStage(wiring.Component):
    latency = 2  # accept -> queue write

    def __init__(self, spec: ThresholdSpec):
        self.spec = spec
        self.in_bits = spec.in_values.bits
        self.out_bits = spec.out_values.bits
        super().__init__({
            "i": In(stream.Signature(spec.lanes * self.in_bits)),
            "o": Out(stream.Signature(spec.lanes * self.out_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        consts = spec.consts
        cw = ThresholdConsts.word_width(consts.width, spec.ternary_out)
        words = []
        for b in range(spec.beats):
            value = 0
            for lane in range(spec.lanes):
                ch = b * spec.lanes + lane
                if ch < spec.channels:
                    value |= consts.word(ch, spec.ternary_out) << (lane * cw)
            words.append(value)
        rom = Memory(shape=spec.lanes * cw, depth=len(words), init=words)
        m.submodules.consts = rom
        rd = rom.read_port(domain="sync")
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits, self.latency + 4)
        wiring.connect(m, queue.o, wiring.flipped(self.o))

        beat = Signal(range(max(spec.beats, 1)))
        take = Signal()
        m.d.comb += [take.eq(self.i.valid & queue.has_credit),
                     self.i.ready.eq(queue.has_credit),
                     queue.take_credit.eq(take),
                     rd.addr.eq(beat)]
        if spec.beats > 1:
            with m.If(take):
                m.d.sync += beat.eq(Mux(beat == spec.beats - 1, 0, beat + 1))
        held = Signal(spec.lanes * self.in_bits)
        v1 = Signal()
        m.d.sync += [held.eq(self.i.payload), v1.eq(take)]
        ib = self.in_bits
        codes = []
        valid = None
        for lane in range(spec.lanes):
            acc_width = ib if spec.in_values.signed else ib + 1
            unit = ThresholdUnit(acc_width, consts.width, spec.ternary_out)
            m.submodules[f"threshold{lane}"] = unit
            raw = held[lane * ib:(lane + 1) * ib]
            m.d.comb += [unit.acc.eq(raw.as_signed() if spec.in_values.signed else raw),
                         unit.consts.eq(rd.data[lane * cw:(lane + 1) * cw]),
                         unit.valid_in.eq(v1)]
            codes.append(unit.code)
            valid = unit.valid_out
        m.d.comb += [queue.w_data.eq(Cat(*codes)), queue.w_en.eq(valid)]
        return m
