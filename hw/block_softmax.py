"""The integer block softmax (factorizer.block_softmax.BlockSoftmax) as an Amaranth stream block.

Why here and in this shape: it sits between the network engine's integer scores and the
factorizer decoder, so it takes the engine's output beats (`lanes` signed 32-bit scores per beat,
block-major, B*L scores per sample, padding lanes after the last score) and gives the decoder
its raw query entries, one per beat. The rule is BlockSoftmax.apply's, bit for bit:
t = (mul[e] * z + add[e]) >> shift (arithmetic, i.e. floor), per block of L: d = max(t) - t,
entry = table[d] if d < len(table) else 0.

A block is loaded (logits into a small RAM, running maximum in a register), then emitted, then
the next block is loaded: the decoder takes one entry per cycle and the network delivers a score
every few cycles at most, so overlapping the two phases would buy nothing. Loading is a 3-stage
pipeline (mul/add ROM read, multiply-add, shift + write); emitting is a fixed-latency pipeline
(logit RAM read, exp ROM read) behind an OutputQueue with credits, so no register needs a stall.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edge_sdk.factorizer.block_softmax import BlockSoftmax

from .outq import OutputQueue

SCORE_BITS = 32  # the network's output lanes (hw.network.OUT_BITS)
ENTRY_BITS = 32  # the decoder's query beat (hw.factorizer_spec.QUERY_BITS)
EMIT_LATENCY = 2  # logit RAM read, then exp ROM read
QUEUE_DEPTH = 4


def _signed_bits(lo: int, hi: int) -> int:
    """Two's-complement width holding every integer in [lo, hi]."""
    return max(int(lo).bit_length(), int(hi).bit_length(), (-int(lo) - 1).bit_length(),
               (-int(hi) - 1).bit_length()) + 1


def logit_range(sm: BlockSoftmax) -> tuple[int, int]:
    """The smallest and largest logit t over the score range (t is monotone in z)."""
    ends = [(sm.mul * z + sm.add) >> sm.shift for z in (sm.z_lo, sm.z_hi)]
    return int(min(e.min() for e in ends)), int(max(e.max() for e in ends))


class BlockSoftmaxStage(wiring.Component):
    """`i`: beats of `lanes` signed 32-bit scores; `o`: one query entry (32 bits) per beat."""

    def __init__(self, sm: BlockSoftmax, lanes: int = 1):
        if lanes < 1:
            raise ValueError("block softmax: lanes must be >= 1")
        self.sm = sm
        self.lanes = lanes
        self.n = sm.B * sm.L
        self.beats = -(-self.n // lanes)  # input beats per sample
        self.z_bits = _signed_bits(sm.z_lo, sm.z_hi)
        self.mul_bits = _signed_bits(int(sm.mul.min()), int(sm.mul.max()))
        self.add_bits = _signed_bits(int(sm.add.min()), int(sm.add.max()))
        t_lo, t_hi = logit_range(sm)
        self.t_bits = _signed_bits(t_lo, t_hi)
        self.d_max = t_hi - t_lo
        super().__init__({"i": In(stream.Signature(lanes * SCORE_BITS)),
                          "o": Out(stream.Signature(ENTRY_BITS))})

    def elaborate(self, platform):
        m = Module()
        sm, K, n, L = self.sm, self.lanes, self.n, self.sm.L
        E = len(sm.table)
        acc_bits = max(self.mul_bits + self.z_bits, self.add_bits) + 1

        mul_rom = Memory(shape=signed(self.mul_bits), depth=n, init=[int(v) for v in sm.mul])
        add_rom = Memory(shape=signed(self.add_bits), depth=n, init=[int(v) for v in sm.add])
        logits = Memory(shape=signed(self.t_bits), depth=L, init=[])
        exp_rom = Memory(shape=range(int(sm.table.max()) + 1), depth=E,
                         init=[int(v) for v in sm.table])
        m.submodules.mul_rom, m.submodules.add_rom = mul_rom, add_rom
        m.submodules.logits, m.submodules.exp_rom = logits, exp_rom
        mul_r, add_r = mul_rom.read_port(), add_rom.read_port()
        t_w, t_r = logits.write_port(), logits.read_port()
        e_r = exp_rom.read_port()

        # ---- intake: one held beat, its lanes taken one per cycle
        held = Signal(K * SCORE_BITS)
        full = Signal()  # `held` has lanes left
        lane = Signal(range(K))
        elem = Signal(range(n))  # element index of the next lane taken
        pos = Signal(range(L))  # its position in the block
        loading = Signal(init=1)  # phase: load (1) or emit (0)
        lanes_z = [held[k * SCORE_BITS:(k + 1) * SCORE_BITS].as_signed() for k in range(K)]
        z = Signal(signed(self.z_bits))
        if K == 1:
            m.d.comb += z.eq(lanes_z[0])
        else:
            with m.Switch(lane):
                for k in range(K):
                    with m.Case(k):
                        m.d.comb += z.eq(lanes_z[k])
        m.d.comb += self.i.ready.eq(~full)
        with m.If(self.i.valid & ~full):
            m.d.sync += [held.eq(self.i.payload), full.eq(1), lane.eq(0)]

        take = Signal()  # a score enters the load pipeline this cycle
        m.d.comb += take.eq(full & loading)
        last_in_block = pos == L - 1
        last_in_sample = elem == n - 1
        with m.If(take):
            m.d.sync += [pos.eq(Mux(last_in_block, 0, pos + 1)),
                         elem.eq(Mux(last_in_sample, 0, elem + 1)),
                         lane.eq(lane + 1)]
            # the beat is used up at its last lane, or at the sample's end (padding lanes)
            with m.If((lane == K - 1) | last_in_sample):
                m.d.sync += full.eq(0)
            with m.If(last_in_block):
                m.d.sync += loading.eq(0)

        # ---- load pipeline: stage 1 ROM reads, stage 2 multiply-add, stage 3 shift + write
        m.d.comb += [mul_r.addr.eq(elem), add_r.addr.eq(elem)]
        v1, v2 = Signal(), Signal()
        z1 = Signal(signed(self.z_bits))
        p1, p2 = Signal(range(L)), Signal(range(L))
        end1, end2 = Signal(), Signal()
        acc = Signal(signed(acc_bits))
        m.d.sync += [v1.eq(take), z1.eq(z), p1.eq(pos), end1.eq(take & last_in_block),
                     v2.eq(v1), p2.eq(p1), end2.eq(end1),
                     acc.eq(mul_r.data * z1 + add_r.data)]
        t = Signal(signed(self.t_bits))
        m.d.comb += t.eq(acc >> sm.shift)
        top = Signal(signed(self.t_bits))  # the block's running maximum
        m.d.comb += [t_w.addr.eq(p2), t_w.data.eq(t), t_w.en.eq(v2)]
        with m.If(v2 & ((p2 == 0) | (t > top))):
            m.d.sync += top.eq(t)

        # ---- emit: once the block's last logit is written, read the L logits back
        m.submodules.queue = queue = OutputQueue(ENTRY_BITS, QUEUE_DEPTH)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        emitting = Signal()
        q_pos = Signal(range(L))
        with m.If(end2):
            m.d.sync += [emitting.eq(1), q_pos.eq(0)]
        issue = Signal()
        m.d.comb += [issue.eq(emitting & queue.has_credit), queue.take_credit.eq(issue),
                     t_r.addr.eq(q_pos)]
        with m.If(issue):
            m.d.sync += q_pos.eq(q_pos + 1)
            with m.If(q_pos == L - 1):
                m.d.sync += [emitting.eq(0), loading.eq(1)]
        r1, r2, inside = Signal(), Signal(), Signal()
        d = Signal(range(self.d_max + 1))
        m.d.comb += [d.eq(top - t_r.data), e_r.addr.eq(Mux(d < E, d, 0))]
        m.d.sync += [r1.eq(issue), r2.eq(r1), inside.eq(d < E)]
        m.d.comb += [queue.w_en.eq(r2), queue.w_data.eq(Mux(inside, e_r.data, 0))]
        return m
