"""Ping-pong frame buffer: one layer's whole input frame, written by a stream, read by address.

Why whole frames: a folded engine reads its input many times (once per neuron fold, and every
conv tap), in an order unrelated to the order the producer writes it. Two banks let the producer
fill frame n+1 while the engine computes on frame n, so layers overlap and the network's
initiation interval is the slowest stage, not the sum.

Write side: a stream of beats of `producer_lanes` values; each beat is cut into granules of
gcd(producer_lanes, lanes) values, one granule written per cycle with the memory's write-enable
granularity (no read-modify-write). Channels at or beyond `channels` (the producer's padded
lanes) are dropped. Read side: `rd_addr` (word within the current bank) with one cycle of read
latency, `frame_valid` while a written bank is waiting, `release` to hand it back.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .specs import FrameSpec


class FrameBuffer(wiring.Component):
    def __init__(self, spec: FrameSpec):
        self.spec = spec
        self.addr_width = ceil_log2(spec.pixels * spec.words)
        vb = spec.values.bits
        super().__init__({
            "i": In(stream.Signature(spec.producer_lanes * vb)),
            "rd_addr": In(self.addr_width),
            "rd_data": Out(spec.lanes * vb),
            "frame_valid": Out(1),
            "release": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        s = self.spec
        vb = s.values.bits
        g = s.granule
        pieces = s.producer_lanes // g  # granules per incoming beat
        per_word = s.lanes // g  # granules per memory word
        aw = self.addr_width

        attrs = {} if s.block_ram is None else {"ram_style": "block" if s.block_ram else "logic"}
        mem = Memory(shape=s.lanes * vb, depth=2 << aw, init=[], attrs=attrs)
        m.submodules.mem = mem
        wr = mem.write_port(granularity=g * vb if per_word > 1 else None)
        rd = mem.read_port(domain="sync")

        full = Signal(2)
        wbank = Signal()
        rbank = Signal()
        can_write = Signal()
        m.d.comb += [can_write.eq(~full.bit_select(wbank, 1)),
                     self.frame_valid.eq(full.bit_select(rbank, 1))]

        # write-side position: granule pc of beat nb of pixel p -> word wi, granule gi
        pc = Signal(range(max(pieces, 1)))
        gi = Signal(range(max(per_word, 1)))
        max_words = (s.producer_beats * s.producer_lanes) // s.lanes + 1
        wi = Signal(range(max_words + 1))
        c0 = Signal(range(s.producer_beats * s.producer_lanes + 1))
        nb = Signal(range(max(s.producer_beats, 1)))
        p = Signal(range(max(s.pixels, 1)))
        pbase = Signal(range(s.pixels * s.words + 1))

        last_piece = pc == pieces - 1
        last_beat = last_piece & (nb == s.producer_beats - 1)
        last_pixel = last_beat & (p == s.pixels - 1)
        step = Signal()
        m.d.comb += [
            step.eq(self.i.valid & can_write),
            self.i.ready.eq(can_write & last_piece),
            wr.addr.eq(Cat((pbase + wi)[:aw], wbank)),
            wr.data.eq(Cat(*[self.i.payload.word_select(pc, g * vb)] * per_word)),
        ]
        in_range = c0 < s.channels
        if per_word > 1:
            m.d.comb += wr.en.eq(Mux(step & in_range, _onehot(gi, per_word), 0))
        else:
            m.d.comb += wr.en.eq(step & in_range)

        with m.If(step):
            m.d.sync += c0.eq(c0 + g)
            if pieces > 1:
                m.d.sync += pc.eq(pc + 1)
                with m.If(last_piece):
                    m.d.sync += pc.eq(0)
            if per_word > 1:
                m.d.sync += gi.eq(gi + 1)
                with m.If(gi == per_word - 1):
                    m.d.sync += [gi.eq(0), wi.eq(wi + 1)]
            else:
                m.d.sync += wi.eq(wi + 1)
            with m.If(last_beat):
                m.d.sync += [c0.eq(0), gi.eq(0), wi.eq(0), nb.eq(0), p.eq(p + 1),
                             pbase.eq(pbase + s.words)]
                with m.If(last_pixel):
                    m.d.sync += [p.eq(0), pbase.eq(0), wbank.eq(~wbank)]
            with m.Elif(last_piece):
                m.d.sync += nb.eq(nb + 1)

        frame_done = step & last_pixel
        for b in range(2):
            with m.If(frame_done & (wbank == b)):
                m.d.sync += full[b].eq(1)
            with m.Elif(self.release & (rbank == b)):
                m.d.sync += full[b].eq(0)
        with m.If(self.release):
            m.d.sync += rbank.eq(~rbank)

        m.d.comb += [rd.addr.eq(Cat(self.rd_addr, rbank)), self.rd_data.eq(rd.data)]
        return m


def _onehot(index: Signal, n: int):
    """One-hot decode of `index` into n bits."""
    return Cat(*[index == k for k in range(n)])
