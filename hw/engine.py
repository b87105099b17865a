"""Folded layer engine: one dense or conv layer (a dense layer is a window covering the frame).

Per cycle it reads one word (SIMD = `frame.lanes` input values) of one tap and multiplies it
with PE rows of weights at once: PE output channels in parallel, SIMD inputs per cycle. A group
(PE channels of one output pixel) accumulates over taps x words, then goes through the
threshold units (or leaves as integers for the scores layer) into the output queue as one beat
of PE values. Cycles per frame = output pixels * ceil(O / PE) * taps * ceil(C / SIMD).

Pipeline (fixed latency, never stalls; issue waits for a frame and for an output credit):
  t0 scan -> frame RAM / weight ROM addresses        t1 data; xnor/mask or +-x terms
  t1..t1+D adder trees (D = ceil(log2 SIMD))         +1 term = 2*matches - valid (binary)
  +1 accumulate; threshold ROM read                  +1 threshold compare (if any) -> queue
Binary data: matches = popcount(~(a ^ w) & m), valid = popcount(m), where the mask m removes
padded SIMD lanes, padded conv taps, and zeros of ternary weights/activations; when nothing is
ever masked, valid = SIMD is a constant. Integer data (first layer): sum of m * (+-x).
8-bit weights (issue #11, `int8_weights`): sum of m * x * w with int8 codes w (hw/intdot.py
Int8Dot: a +-w mux for ±1/ternary data, an exact product for integer data), same latency.
Weights come from a ROM (`Memory`, mapped to block RAM) or, with `external_weights`, from a
stream `w` carrying the same words in the same order (for layers larger than the chip's RAM).
"""

from __future__ import annotations

import math

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adder_tree import shape_for, tree_levels
from .framebuf import FrameBuffer
from .intdot import Int8Dot, TernaryIntDot
from .outq import OutputQueue
from .popcount import Popcount, XnorPopcount
from .scan import WindowScan
from .specs import EngineSpec
from .threshold import ThresholdConsts, ThresholdUnit


def pack_rows(bits: np.ndarray) -> list[int]:
    """[rows, width] booleans -> one int per row, bit k = column k."""
    rows, width = bits.shape
    padded = np.zeros((rows, -(-width // 8) * 8), dtype=bool)
    padded[:, :width] = bits
    raw = np.packbits(padded, axis=1, bitorder="little")
    return [int.from_bytes(r.tobytes(), "little") for r in raw]


def weight_words(spec: EngineSpec) -> tuple[list[int], int]:
    """ROM contents in read order (fold, tap, word) and the word width.

    A word holds PE rows of SIMD sign bits (row p at bits [p*SIMD, (p+1)*SIMD)), followed, for
    ternary weights, by the PE rows of nonzero-mask bits. 8-bit weights: PE rows of SIMD
    two's-complement bytes (row p lane l at bits [8 (p*SIMD + l), 8 (p*SIMD + l) + 8)).
    Padded rows/lanes are zero.
    """
    s, pe, nf = spec.simd, spec.pe, spec.folds
    taps, cf = spec.window.taps, spec.frame.words
    w = np.zeros((nf * pe, taps, cf * s), dtype=np.int8)
    o, _, c = spec.weights.shape
    w[:o, :, :c] = spec.weights
    w = w.reshape(nf, pe, taps, cf, s).transpose(0, 2, 3, 1, 4).reshape(nf * taps * cf, pe * s)
    if spec.int8_weights:
        return [int.from_bytes(row.astype(np.uint8).tobytes(), "little") for row in w], pe * s * 8
    planes = [w > 0]
    if spec.ternary_weights:
        planes.append(w != 0)
    return pack_rows(np.concatenate(planes, axis=1)), pe * s * len(planes)


def threshold_words(spec: EngineSpec) -> tuple[list[int], int]:
    """Threshold ROM: one word per fold, PE channel constants side by side."""
    consts = spec.threshold
    cw = ThresholdConsts.word_width(consts.width, spec.ternary_out)
    words = []
    for g in range(spec.folds):
        value = 0
        for p in range(spec.pe):
            ch = g * spec.pe + p
            if ch < spec.out_channels:
                value |= consts.word(ch, spec.ternary_out) << (p * cw)
        words.append(value)
    return words, cw


def _delay(m: Module, sig, n: int, name: str):
    """`sig` delayed by n registers."""
    for k in range(n):
        r = Signal.like(sig, name=f"{name}_d{k + 1}")
        m.d.sync += r.eq(sig)
        sig = r
    return sig


class LayerEngine(wiring.Component):
    """Streams: `i` (producer beats into the frame buffer), `o` (PE values per beat), and `w`
    (weight words) with `external_weights`. `latency` = issue-to-queue cycles."""

    def __init__(self, spec: EngineSpec):
        self.spec = spec
        f = spec.frame
        self.binary_in = f.values.kind in ("bipolar", "ternary")
        self.out_bits = spec.out_values.bits
        self.rom_words, self.rom_width = weight_words(spec)
        unit_latency = tree_levels(f.lanes)  # XnorPopcount and TernaryIntDot alike
        extra = 1 if spec.threshold is not None else 0
        self.latency = 1 + unit_latency + 2 + extra  # issue -> queue write
        per_result = spec.window.taps * f.words
        self.queue_depth = max(3, math.ceil((self.latency + 3) / per_result) + 2)
        members = {
            "i": In(stream.Signature(f.producer_lanes * f.values.bits)),
            "o": Out(stream.Signature(spec.pe * self.out_bits)),
        }
        if spec.external_weights:
            members["w"] = In(stream.Signature(self.rom_width))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        spec, f = self.spec, self.spec.frame
        s, pe = f.lanes, spec.pe
        m.submodules.frame = frame = FrameBuffer(f)
        m.submodules.scan = scan = WindowScan(f.height, f.width, f.words, spec.window,
                                              spec.folds, inner_words=True)
        m.submodules.queue = queue = OutputQueue(pe * self.out_bits, self.queue_depth)
        wiring.connect(m, wiring.flipped(self.i), frame.i)
        wiring.connect(m, queue.o, wiring.flipped(self.o))

        # ---- t0: issue
        issue = Signal()
        ok = frame.frame_valid & (~scan.last | queue.has_credit)
        if spec.external_weights:
            ok = ok & self.w.valid
        m.d.comb += [
            issue.eq(ok),
            scan.advance.eq(issue),
            frame.rd_addr.eq(scan.addr),
            frame.release.eq(issue & scan.frame_last),
            queue.take_credit.eq(issue & scan.last),
        ]
        wdata = Signal(self.rom_width)
        if spec.external_weights:
            m.d.comb += self.w.ready.eq(issue)
            with m.If(issue):
                m.d.sync += wdata.eq(self.w.payload)
        else:
            rom = Memory(shape=self.rom_width, depth=len(self.rom_words), init=self.rom_words)
            m.submodules.weights = rom
            rd = rom.read_port(domain="sync")
            widx = Signal(range(len(self.rom_words)))
            with m.If(issue):
                m.d.sync += widx.eq(Mux(scan.last & scan.group_last, 0, widx + 1))
            m.d.comb += [rd.addr.eq(widx), wdata.eq(rd.data)]

        v1, first1, last1 = Signal(), Signal(), Signal()
        grp1 = Signal.like(scan.group)
        word1 = Signal.like(scan.word)
        tv1 = Signal()
        m.d.sync += [v1.eq(issue), first1.eq(scan.first), last1.eq(scan.last),
                     grp1.eq(scan.group), word1.eq(scan.word), tv1.eq(scan.tap_valid)]

        # ---- t1: lane masks and per-PE units
        data = frame.rd_data
        ragged = f.channels % s
        lane_ok = Signal(s)
        full = (1 << s) - 1
        if ragged and f.words > 0:
            last_mask = (1 << ragged) - 1
            m.d.comb += lane_ok.eq(Mux(word1 == f.words - 1, last_mask, full))
        else:
            m.d.comb += lane_ok.eq(full)
        plus_pad = spec.window.padded and spec.window.pad_value == 1
        if plus_pad:  # Larq pad_values=1: a padded tap is a +1 input (bit 1), not a masked one
            a_pad = Signal(s)
            m.d.comb += a_pad.eq(Mux(tv1, data, (1 << s) - 1))
        elif spec.window.padded:
            lane_ok_t = Signal(s)
            m.d.comb += lane_ok_t.eq(Mux(tv1, lane_ok, 0))
            lane_ok = lane_ok_t
        kind = f.values.kind
        if kind == "ternary":
            a = Cat(*[data[2 * k + 1] for k in range(s)])
            nonzero = Cat(*[~data[2 * k] for k in range(s)])
            shared = Signal(s)
            m.d.comb += shared.eq(lane_ok & nonzero)
        else:
            a = a_pad if plus_pad else data
            shared = lane_ok
        masked = bool(ragged) or (spec.window.padded and not plus_pad) or kind == "ternary"
        sign = [wdata[p * s:(p + 1) * s] for p in range(pe)]
        if spec.int8_weights:
            codes = [wdata[p * s * 8:(p + 1) * s * 8] for p in range(pe)]
        if spec.ternary_weights:
            wmask = [wdata[(pe + p) * s:(pe + p + 1) * s] for p in range(pe)]

        terms = []
        latency = None
        if spec.int8_weights:
            for p in range(pe):
                if self.binary_in:
                    dot = Int8Dot(s, signs=True)
                    m.d.comb += dot.x.eq(a)
                else:
                    dot = Int8Dot(s, f.values.lo, f.values.hi)
                    m.d.comb += dot.x.eq(data)
                m.submodules[f"int8_dot{p}"] = dot
                latency = dot.latency
                m.d.comb += [dot.w.eq(codes[p]), dot.m.eq(shared), dot.valid_in.eq(v1)]
                terms.append(dot.total)
            term_shape = shape_for(s * dot.p_lo, s * dot.p_hi)
        elif self.binary_in:
            shared_count = None
            if not spec.ternary_weights and masked:
                m.submodules.valid_count = vc = Popcount(s)
                m.d.comb += [vc.bits.eq(shared), vc.valid_in.eq(v1)]
                shared_count = vc.count
            for p in range(pe):
                xp = XnorPopcount(s)
                m.submodules[f"xnor_popcount{p}"] = xp
                latency = xp.latency
                mask = shared & wmask[p] if spec.ternary_weights else shared
                m.d.comb += [xp.a.eq(a), xp.w.eq(sign[p]), xp.m.eq(mask), xp.valid_in.eq(v1)]
                if spec.ternary_weights:
                    pc = Popcount(s)
                    m.submodules[f"valid_count{p}"] = pc
                    m.d.comb += [pc.bits.eq(mask), pc.valid_in.eq(v1)]
                    count = pc.count
                elif shared_count is not None:
                    count = shared_count
                else:
                    count = Const(s)
                terms.append((xp.count << 1) - count)
            term_shape = shape_for(-s, s)
        else:
            for p in range(pe):
                dot = TernaryIntDot(s, f.values.lo, f.values.hi)
                m.submodules[f"int_dot{p}"] = dot
                latency = dot.latency
                mask = shared & wmask[p] if spec.ternary_weights else shared
                m.d.comb += [dot.x.eq(data), dot.s.eq(sign[p]), dot.m.eq(mask),
                             dot.valid_in.eq(v1)]
                terms.append(dot.total + dot.correction)
            bound = s * max(abs(f.values.lo), abs(f.values.hi))
            term_shape = shape_for(-bound, bound)

        # ---- t1+D: register terms; +1: accumulate
        vD = _delay(m, v1, latency, "v")
        firstD = _delay(m, first1, latency, "first")
        lastD = _delay(m, last1, latency, "last")
        grpD = _delay(m, grp1, latency, "grp")
        term_regs = []
        for p, t in enumerate(terms):
            r = Signal(term_shape, name=f"term{p}")
            m.d.sync += r.eq(t)
            term_regs.append(r)
        vT = _delay(m, vD, 1, "vT")
        firstT = _delay(m, firstD, 1, "firstT")
        lastT = _delay(m, lastD, 1, "lastT")
        grpT = _delay(m, grpD, 1, "grpT")

        acc_shape = shape_for(spec.acc_lo, spec.acc_hi)
        accs = []
        for p, t in enumerate(term_regs):
            acc = Signal(acc_shape, name=f"acc{p}")
            with m.If(vT):
                m.d.sync += acc.eq(Mux(firstT, t, acc + t))
            accs.append(acc)
        done = Signal()
        m.d.sync += done.eq(vT & lastT)

        # ---- threshold (or integer output)
        if spec.threshold is None:
            m.d.comb += [queue.w_data.eq(Cat(*accs)), queue.w_en.eq(done)]
            return m
        twords, cw = threshold_words(spec)
        trom = Memory(shape=pe * cw, depth=len(twords), init=twords)
        m.submodules.thresholds = trom
        trd = trom.read_port(domain="sync")
        m.d.comb += trd.addr.eq(grpT)
        codes = []
        valid_out = None
        for p, acc in enumerate(accs):
            unit = ThresholdUnit(acc_shape.width, spec.threshold.width, spec.ternary_out)
            m.submodules[f"threshold{p}"] = unit
            m.d.comb += [unit.acc.eq(acc), unit.consts.eq(trd.data[p * cw:(p + 1) * cw]),
                         unit.valid_in.eq(done)]
            codes.append(unit.code)
            valid_out = unit.valid_out
        m.d.comb += [queue.w_data.eq(Cat(*codes)), queue.w_en.eq(valid_out)]
        return m
