"""The integer block softmax (factorizer.block_softmax.BlockSoftmax) as an Amaranth stream block.

Why here and in this shape: it sits between the network engine's integer scores and the
factorizer decoder, so it takes the engine's output beats (`lanes` signed 32-bit scores per beat,
block-major, B*L scores per sample, padding lanes after the last score) and gives the decoder
its raw query entries, one per beat. The rule is BlockSoftmax.apply's, bit for bit:
t = (mul[e] * z + add[e]) >> shift (arithmetic, i.e. floor), per block of L: d = max(t) - t,
entry = table[d] if d < len(table) else 0.

A block is loaded (logits into a small RAM, running maximum in a register), then emitted, then
the next block is loaded: the decoder takes one entry per cycle and the network delivers a score
every few cycles at most, so overlapping the two phases would buy nothing. Loading is a 4-stage
pipeline (mul/add ROM read, multiply, add, shift + write); emitting is a fixed-latency pipeline
(logit RAM read, distance, exp ROM read) behind an OutputQueue with credits, so no register needs a stall.
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
EMIT_LATENCY = 3  # logit RAM read, distance, exp ROM read
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

        mb, ab = self.mul_bits, self.add_bits
        affine = Memory(shape=mb + ab, depth=n,  # one word per element: mul low, add high
                        init=[(int(a) & ((1 << mb) - 1)) | ((int(c) & ((1 << ab) - 1)) << mb)
                              for a, c in zip(sm.mul, sm.add, strict=True)])
        logits = Memory(shape=signed(self.t_bits), depth=L, init=[])
        exp_rom = Memory(shape=range(int(sm.table.max()) + 1), depth=E,
                         init=[int(v) for v in sm.table])
        m.submodules.affine, m.submodules.logits, m.submodules.exp_rom = affine, logits, exp_rom
        a_r = affine.read_port()
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

        # ---- load pipeline: ROM read, multiply, add, then shift + write (one stage each, so
        # the DSP product and the wide adder each get a cycle of their own)
        m.d.comb += a_r.addr.eq(elem)
        v = [take] + [Signal(name=f"v{k}") for k in range(1, 4)]
        p = [pos] + [Signal(range(L), name=f"p{k}") for k in range(1, 4)]
        end = [take & last_in_block] + [Signal(name=f"end{k}") for k in range(1, 4)]
        m.d.sync += [a.eq(b) for seq in (v, p, end) for a, b in zip(seq[1:], seq, strict=False)]
        z1 = Signal(signed(self.z_bits))
        prod = Signal(signed(mb + self.z_bits))
        add2 = Signal(signed(ab))
        acc = Signal(signed(acc_bits))
        m.d.sync += [z1.eq(z), prod.eq(a_r.data[:mb].as_signed() * z1),
                     add2.eq(a_r.data[mb:].as_signed()), acc.eq(prod + add2)]
        t = Signal(signed(self.t_bits))
        m.d.comb += t.eq(acc >> sm.shift)
        v3, p3, end3 = v[3], p[3], end[3]
        top = Signal(signed(self.t_bits))  # the block's running maximum
        m.d.comb += [t_w.addr.eq(p3), t_w.data.eq(t), t_w.en.eq(v3)]
        with m.If(v3 & ((p3 == 0) | (t > top))):
            m.d.sync += top.eq(t)

        # ---- emit: once the block's last logit is written, read the L logits back
        m.submodules.queue = queue = OutputQueue(ENTRY_BITS, QUEUE_DEPTH)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        emitting = Signal()
        q_pos = Signal(range(L))
        with m.If(end3):
            m.d.sync += [emitting.eq(1), q_pos.eq(0)]
        issue = Signal()
        m.d.comb += [issue.eq(emitting & queue.has_credit), queue.take_credit.eq(issue),
                     t_r.addr.eq(q_pos)]
        with m.If(issue):
            m.d.sync += q_pos.eq(q_pos + 1)
            with m.If(q_pos == L - 1):
                m.d.sync += [emitting.eq(0), loading.eq(1)]
        # +1: logit read, distance registered; +2: exp ROM address (any entry when d is beyond
        # the table: the entry is replaced by 0), range flag registered; +3: the entry
        r = [issue] + [Signal(name=f"r{k}") for k in range(1, EMIT_LATENCY + 1)]
        m.d.sync += [a.eq(b) for a, b in zip(r[1:], r, strict=False)]
        d = Signal(range(self.d_max + 1))
        inside = Signal()
        m.d.sync += [d.eq(top - t_r.data), inside.eq(d < E)]
        m.d.comb += [e_r.addr.eq(d[:max(1, (E - 1).bit_length())]),
                     queue.w_en.eq(r[EMIT_LATENCY]),
                     queue.w_data.eq(Mux(inside, e_r.data, 0))]
        return m
