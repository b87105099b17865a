"""Stream stages of the real-valued layers (issue #11) and the plumbing of non-chain networks.

Real-valued tensors travel as their fixed-point integers q (sdk/fixedpoint.py: real =
q * 2**-frac; `frac` is a plan-time constant, so on the wire a fixed tensor is just an `int`
stream whose width comes from the IR's static bound). Every stage here is exact integer
arithmetic with widths derived from those bounds (Python integers at plan time), so nothing
can wrap: a width is always at least the bits of the largest intermediate magnitude.

Stages (all one beat per cycle, per-channel constants from a small ROM indexed by the beat
within the pixel, results through a credit `OutputQueue` like the engines):
  RequantStage   y = (x * m_c + r_c) >> s                           latency 3
  PReluStage     y = x >= 0 ? x : (x * a_c + 2**14) >> 15           latency 3
  GapStage       sum over pixels, then (sum * R + 2**(S-1)) >> S    latency 4 (last pixel)
  AddStage       align(x0) + align(x1), two joined streams          latency 2
  ConcatStage    input 0's beats of a pixel, then input 1's, ...    latency 2
  QuantizeStage  clip(((x * M + 2**(S-1)) >> S) + z, lo, hi) - z    latency 3
Products (x * constant) are `product`: 16 x 16 DSP pieces when the plan gives the stage DSP
blocks (spec.dsp), else shift-and-add in LUTs; both exact (converters/fpga/dag.py decides).
Plumbing: `BeatSplit` (a wide beat out as several narrow ones, so the multiplier stages above
need fewer lanes when the II leaves them the cycles), `Fork` (one stream to several consumers, each takes a beat when it is ready) and
`StreamFifo` (the shortcut buffer; its depth comes from the plan, see converters/fpga/dag.py).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .adder_tree import shape_for
from .outq import OutputQueue
from .specs import (
    AddSpec,
    ConcatSpec,
    GapSpec,
    PReluSpec,
    QuantizeSpec,
    RequantSpec,
    SplitSpec,
    TflSpec,
    Values,
)

QUEUE_SLACK = 4


def decode(code, values: Values):
    """A value code as a signed integer expression (bipolar 1 -> +1, 0 -> -1; ternary - 1)."""
    if values.kind == "bipolar":
        return Mux(code[0], 1, -1)
    if values.kind == "ternary":
        return Cat(code, 0).as_signed() - 1
    return code.as_signed() if values.signed else Cat(code, Const(0, 1)).as_signed()


def align_expr(x, shift: int):
    """sdk/fixedpoint.align on a signed expression: << shift, or a half-up rounded >> -shift."""
    if shift >= 0:
        return x << shift
    s = -shift
    return (x + (1 << (s - 1))) >> s


def align_bound(m: int, shift: int) -> int:
    """Largest |align(q)| over |q| <= m (what the width of an aligned operand must hold)."""
    if shift >= 0:
        return m << shift
    return (m + (1 << (-shift - 1))) >> -shift


def bound_shape(bound: int):
    """Signed shape holding [-bound, bound] (bound >= 0)."""
    return shape_for(-max(bound, 1), max(bound, 1))


def max_abs(values: Values) -> int:
    if values.kind in ("bipolar", "ternary"):
        return 1
    return max(abs(values.lo), abs(values.hi))


def _lut_product(a, b):
    """a * b with no multiplier cell: one partial product per two's-complement bit of the
    narrower operand (a Mux of the other, shifted), summed, the sign bit's subtracted. Yosys
    builds muxes and adds from LUT4s and carry chains and never maps them to SB_MAC16 (the
    UP5K has 8; a ~30-bit constant times a 20-bit value takes 2-4 of them as `*`)."""
    if len(a) > len(b):
        a, b = b, a
    bits = [a[i] for i in range(len(a))]
    if not b.shape().signed:
        b = Cat(b, Const(0, 1)).as_signed()  # zero-extended, never reinterpreted
    if not a.shape().signed:
        return sum((Mux(bit, b << i, 0) for i, bit in enumerate(bits)), Const(0, 1))
    low = sum((Mux(bit, b << i, 0) for i, bit in enumerate(bits[:-1])), Const(0, 1))
    return low - Mux(bits[-1], b << (len(bits) - 1), 0)


def csd_digits(k: int) -> list[tuple[int, int]]:
    """Canonical signed digits of k: (shift, +1 | -1) with k = sum(sign << shift), no two
    adjacent (at most about half of k's bits: the fewest adders for a constant product)."""
    out, i = [], 0
    while k:
        if k & 1:
            d = 2 - (k & 3)  # +1 if k = 1 mod 4, -1 if k = 3 mod 4
            out.append((i, d))
            k -= d
        k >>= 1
        i += 1
    return out


def _const_product(x, k: int):
    """x * k for a plan-time constant k as shifts and adds of its signed digits (LUTs)."""
    terms = csd_digits(abs(k))
    if not terms:
        return Const(0, 1)
    pos = [x << i for i, d in terms if d > 0]
    neg = [x << i for i, d in terms if d < 0]
    total = sum(pos[1:], pos[0]) if pos else Const(0, 1)
    for t in neg:
        total = total - t
    return -total if k < 0 else total


DSP_BITS = 16  # SB_MAC16: a 16 x 16 product, each operand signed or unsigned


def _pieces(v) -> list[tuple[int, object]]:
    """(shift, piece) of a signal or int: 15-bit unsigned pieces from the bottom (zero-extended
    to 16 signed bits), the signed rest on top (at most 16 bits): each piece one DSP operand."""
    if isinstance(v, int):
        out, lo = [], 0
        while not -(1 << (DSP_BITS - 1)) <= (v >> lo) < (1 << (DSP_BITS - 1)):
            out.append((lo, (v >> lo) & ((1 << (DSP_BITS - 1)) - 1)))
            lo += DSP_BITS - 1
        out.append((lo, v >> lo))
        return [(sh, p) for sh, p in out if p]
    signed, w = v.shape().signed, len(v)
    out, lo = [], 0
    while w - lo > (DSP_BITS if signed else DSP_BITS - 1):
        out.append((lo, Cat(v[lo:lo + DSP_BITS - 1], Const(0, 1)).as_signed()))
        lo += DSP_BITS - 1
    top = v[lo:w].as_signed() if signed else Cat(v[lo:w], Const(0, 1)).as_signed()
    out.append((lo, top))
    return out


def dsp_pieces(width: int, signed: bool = True) -> int:
    """How many DSP operands (`_pieces`) a `width`-bit signal is cut into."""
    room = DSP_BITS if signed else DSP_BITS - 1
    return 1 + max(0, -(-(width - room) // (DSP_BITS - 1)))


def _dsp_product(x, c):
    """x * c as a sum of shifted piece products of at most 16 x 16 bits: yosys maps each to
    one SB_MAC16 (a plain `*` of a 20-bit and a 31-bit operand can take several more, as its
    signed pieces overlap)."""
    terms = [(a * b) << (sa + sb) for sa, a in _pieces(x) for sb, b in _pieces(c)]
    return sum(terms[1:], terms[0]) if terms else Const(0, 1)


def product(x, c, dsp: bool):
    """x * c: on DSP blocks (`_dsp_product`) or in LUTs (`_lut_product` for a signal,
    `_const_product` for an int); see converters/fpga/dag.py for which gets which."""
    if dsp:
        return _dsp_product(x, c)
    if isinstance(c, int):
        return _const_product(x, c)
    return _lut_product(x, c)


def multiplier_cost(spec) -> tuple[int, int]:
    """(SB_MAC16 blocks, LUT4 estimate) of a multiplier stage's products over its lanes, had
    it `dsp=True` / `dsp=False`: what the planner trades when it hands out the device's DSPs."""
    if isinstance(spec, GapSpec):
        xw, c = bound_shape(spec.sum_bound).width, int(spec.mult)
    elif isinstance(spec, QuantizeSpec):
        xw, c = spec.in_values.bits + 1, int(spec.mult)
    else:
        xw = spec.in_values.bits + 1
        vals = spec.slope_q if isinstance(spec, PReluSpec) else spec.mult
        cw = bound_shape(int(max(abs(int(v)) for v in vals))).width
        return (spec.lanes * dsp_pieces(xw) * dsp_pieces(cw),
                spec.lanes * min(xw, cw) * (xw + cw))
    return (spec.lanes * dsp_pieces(xw) * len(_pieces(c)),
            spec.lanes * len(csd_digits(abs(c))) * (xw + c.bit_length()))


def _const_words(per_channel: list[list[int]], widths: list[int], lanes: int, beats: int,
                 channels: int) -> tuple[list[int], int]:
    """ROM words per beat: for each lane, the channel's constants side by side (two's
    complement in `widths`); padded lanes hold zeros."""
    lane_w = sum(widths)
    words = []
    for b in range(beats):
        value = 0
        for lane in range(lanes):
            ch = b * lanes + lane
            if ch >= channels:
                continue
            pos = lane * lane_w
            for v, w in zip((col[ch] for col in per_channel), widths, strict=True):
                value |= (int(v) & ((1 << w) - 1)) << pos
                pos += w
        words.append(value)
    return words, lane_w


class _ChannelStage(wiring.Component):
    """Skeleton of a one-input per-channel stage: accept a beat while the queue has credit,
    read the beat's constants (ROM, one cycle), compute per lane in `latency` cycles."""

    latency = 3

    def __init__(self, spec, in_values: Values, out_values: Values):
        self.spec = spec
        self.in_values, self.out_values = in_values, out_values
        self.in_bits, self.out_bits = in_values.bits, out_values.bits
        super().__init__({
            "i": In(stream.Signature(spec.lanes * self.in_bits)),
            "o": Out(stream.Signature(spec.lanes * self.out_bits)),
        })

    def consts(self) -> tuple[list[list[int]], list[int]]:
        raise NotImplementedError

    def lane(self, m: Module, x, c: list, k: int):
        """The lane's result expression after `latency - 1` registered steps (override)."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits,
                                                 self.latency + QUEUE_SLACK)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        cols, widths = self.consts()
        words, lane_w = _const_words(cols, widths, spec.lanes, spec.beats, spec.channels)
        rom = Memory(shape=max(1, spec.lanes * lane_w), depth=len(words), init=words)
        m.submodules.consts = rom
        rd = rom.read_port(domain="sync")

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
        v = Signal()
        m.d.sync += [held.eq(self.i.payload), v.eq(take)]
        outs = []
        ib = self.in_bits
        for k in range(spec.lanes):
            x = Signal(signed(ib + 1), name=f"x{k}")
            m.d.comb += x.eq(decode(held[k * ib:(k + 1) * ib], self.in_values))
            word = rd.data[k * lane_w:(k + 1) * lane_w]
            c, pos = [], 0
            for w in widths:
                c.append(word[pos:pos + w].as_signed())
                pos += w
            y = Signal(signed(self.out_bits), name=f"y{k}")
            m.d.sync += y.eq(self.lane(m, x, c, k))
            outs.append(y)
        valid = v
        for _ in range(self.latency - 1):
            nv = Signal()
            m.d.sync += nv.eq(valid)
            valid = nv
        m.d.comb += [queue.w_data.eq(Cat(*[o[:self.out_bits] for o in outs])),
                     queue.w_en.eq(valid)]
        return m


class RequantStage(_ChannelStage):
    """y = (x * m_c + r_c) >> s: product and sum widths from the exact bounds (<= 64 bits)."""

    latency = 3

    def __init__(self, spec: RequantSpec):
        self.mw = bound_shape(int(max(abs(int(v)) for v in spec.mult))).width
        self.rw = bound_shape(int(max(abs(int(v)) for v in spec.add))).width
        xm = max_abs(spec.in_values)
        self.sum_shape = bound_shape(xm * max(abs(int(v)) for v in spec.mult)
                                     + max(abs(int(v)) for v in spec.add))
        super().__init__(spec, spec.in_values, spec.out_values)

    def consts(self):
        return [list(self.spec.mult), list(self.spec.add)], [self.mw, self.rw]

    def lane(self, m, x, c, k):
        mult, add = c
        total = Signal(self.sum_shape, name=f"sum{k}")
        m.d.sync += total.eq(product(x, mult, self.spec.dsp) + add)
        return total >> self.spec.shift


class PReluStage(_ChannelStage):
    """x for x >= 0, else (x * a_c + 2**(shift-1)) >> shift."""

    latency = 3

    def __init__(self, spec: PReluSpec):
        self.aw = bound_shape(int(max(abs(int(v)) for v in spec.slope_q))).width
        top = max(abs(int(v)) for v in spec.slope_q)
        self.prod_shape = bound_shape(max_abs(spec.in_values) * top + (1 << (spec.shift - 1)))
        super().__init__(spec, spec.in_values, spec.out_values)

    def consts(self):
        return [list(self.spec.slope_q)], [self.aw]

    def lane(self, m, x, c, k):
        (slope,) = c
        neg = Signal(self.prod_shape, name=f"neg{k}")
        xd = Signal.like(x, name=f"xd{k}")
        m.d.sync += [neg.eq(product(x, slope, self.spec.dsp) + (1 << (self.spec.shift - 1))),
                     xd.eq(x)]
        return Mux(xd >= 0, xd, neg >> self.spec.shift)


class QuantizeStage(_ChannelStage):
    """sdk/fixedpoint.quantize (issue #11): fixed-point data onto an 8-bit layer's integer grid,
    q = clip(((x * M + 2**(S-1)) >> S) + z, lo, hi) - z. One M, S, z for the tensor (no ROM
    constants); the product's width is the exact bound max|x| * M + 2**(S-1) (< 2**62)."""

    latency = 3

    def __init__(self, spec: QuantizeSpec):
        self.prod_shape = bound_shape(max_abs(spec.in_values) * abs(int(spec.mult))
                                      + (1 << (spec.shift - 1)))
        super().__init__(spec, spec.in_values, spec.out_values)

    def consts(self):
        return [], []

    def lane(self, m, x, c, k):
        spec = self.spec
        prod = Signal(self.prod_shape, name=f"prod{k}")
        m.d.sync += prod.eq(product(x, int(spec.mult), spec.dsp) + (1 << (spec.shift - 1)))
        q = (prod >> spec.shift) + int(spec.zero_point)
        clipped = Mux(q < spec.lo, spec.lo, Mux(q > spec.hi, spec.hi, q))
        return clipped - int(spec.zero_point)


class GapStage(wiring.Component):
    """Global average: per channel sum over the frame's pixels (one accumulator word per beat
    of a pixel, read-modify-write in one cycle), scaled on the last pixel's beats."""

    latency = 4

    def __init__(self, spec: GapSpec):
        self.spec = spec
        self.in_bits, self.out_bits = spec.in_values.bits, spec.out_values.bits
        super().__init__({
            "i": In(stream.Signature(spec.lanes * self.in_bits)),
            "o": Out(stream.Signature(spec.lanes * self.out_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits,
                                                 self.latency + QUEUE_SLACK)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        beat = Signal(range(max(spec.beats, 1)))
        pixel = Signal(range(max(spec.pixels, 1)))
        take = Signal()
        last_pixel = pixel == spec.pixels - 1
        m.d.comb += [take.eq(self.i.valid & queue.has_credit),
                     self.i.ready.eq(queue.has_credit),
                     queue.take_credit.eq(take & last_pixel)]
        with m.If(take):
            with m.If(beat == spec.beats - 1):
                m.d.sync += [beat.eq(0), pixel.eq(Mux(last_pixel, 0, pixel + 1))]
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        held = Signal(spec.lanes * self.in_bits)
        v1, first1, last1 = Signal(), Signal(), Signal()
        beat1 = Signal.like(beat)
        m.d.sync += [held.eq(self.i.payload), v1.eq(take), first1.eq(pixel == 0),
                     last1.eq(last_pixel), beat1.eq(beat)]
        sum_shape = bound_shape(spec.sum_bound)
        prod_shape = bound_shape(spec.sum_bound * spec.mult + (1 << (spec.shift - 1)))
        ib = self.in_bits
        outs = []
        v2 = Signal()
        m.d.sync += v2.eq(v1 & last1)
        for k in range(spec.lanes):
            x = decode(held[k * ib:(k + 1) * ib], spec.in_values)
            accs = [Signal(sum_shape, name=f"acc{k}_{b}") for b in range(spec.beats)]
            prev = Signal(sum_shape, name=f"prev{k}")
            pick = accs[0]
            for b in range(1, spec.beats):
                pick = Mux(beat1 == b, accs[b], pick)
            m.d.comb += prev.eq(pick)
            s = Signal(sum_shape, name=f"s{k}")
            m.d.comb += s.eq(Mux(first1, 0, prev) + x)
            for b, acc in enumerate(accs):
                with m.If(v1 & (beat1 == b)):
                    m.d.sync += acc.eq(s)
            total = Signal(sum_shape, name=f"total{k}")
            m.d.sync += total.eq(s)
            prod = Signal(prod_shape, name=f"prod{k}")
            m.d.sync += prod.eq(product(total, int(spec.mult), spec.dsp)
                                + (1 << (spec.shift - 1)))
            y = Signal(signed(self.out_bits), name=f"y{k}")
            m.d.sync += y.eq(prod >> spec.shift)
            outs.append(y)
        v3, v4 = Signal(), Signal()
        m.d.sync += [v3.eq(v2), v4.eq(v3)]
        m.d.comb += [queue.w_data.eq(Cat(*outs)), queue.w_en.eq(v4)]
        return m


class JoinStage(wiring.Component):
    """Several input streams `i0`, `i1`, ... (one per `spec.in_values`) and one output `o`,
    each beat holding `spec.lanes` values: the port layout Add, Concat and the TFLite int8
    stage (hw/tflite_stages.py) share."""

    def __init__(self, spec: AddSpec | ConcatSpec | TflSpec):
        self.spec = spec
        self.in_bits = [v.bits for v in spec.in_values]
        self.out_bits = spec.out_values.bits
        ports = {f"i{k}": In(stream.Signature(spec.lanes * b)) for k, b in
                 enumerate(self.in_bits)}
        ports["o"] = Out(stream.Signature(spec.lanes * self.out_bits))
        super().__init__(ports)

    @property
    def inputs(self) -> list:
        return [getattr(self, f"i{k}") for k in range(len(self.in_bits))]


class AddStage(JoinStage):
    """Two streams of one layout joined beat by beat: y = align(x0) + align(x1)."""

    latency = 2

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits,
                                                 self.latency + QUEUE_SLACK)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        ins = self.inputs
        take = Signal()
        all_valid = Cat(*[p.valid for p in ins]).all()
        m.d.comb += [take.eq(all_valid & queue.has_credit), queue.take_credit.eq(take)]
        for k, p in enumerate(ins):
            others = Cat(*[q.valid for j, q in enumerate(ins) if j != k]).all()
            m.d.comb += p.ready.eq(queue.has_credit & others)
        helds = []
        for k, p in enumerate(ins):
            h = Signal(p.payload.shape(), name=f"held{k}")
            m.d.sync += h.eq(p.payload)
            helds.append(h)
        v1 = Signal()
        m.d.sync += v1.eq(take)
        bound = sum(align_bound(max_abs(v), s) for v, s in zip(spec.in_values, spec.shifts,
                                                                strict=True))
        shape = bound_shape(bound)
        outs = []
        for lane in range(spec.lanes):
            terms = []
            for h, b, v, s in zip(helds, self.in_bits, spec.in_values, spec.shifts, strict=True):
                terms.append(align_expr(decode(h[lane * b:(lane + 1) * b], v), s))
            y = Signal(shape, name=f"y{lane}")
            m.d.sync += y.eq(sum(terms[1:], terms[0]))
            outs.append(y[:self.out_bits])
        v2 = Signal()
        m.d.sync += v2.eq(v1)
        m.d.comb += [queue.w_data.eq(Cat(*outs)), queue.w_en.eq(v2)]
        return m


class ConcatStage(JoinStage):
    """Per pixel: `in_beats[0]` beats from i0, then `in_beats[1]` from i1, ... re-coded to the
    output's value code (fixed data aligned to the output frac, ±1 codes widened)."""

    latency = 2

    def _recode(self, code, values: Values):
        out = self.spec.out_values
        if out.kind == "bipolar":
            return code
        if out.kind == "ternary":
            if values.kind == "ternary":
                return code
            return Cat(Const(0, 1), code[0])  # bipolar +1 -> code 2, -1 -> code 0
        return None

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        ins = self.inputs
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits,
                                                 self.latency + QUEUE_SLACK)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        n = len(ins)
        src = Signal(range(max(n, 2)))
        cnt = Signal(range(max(max(spec.in_beats), 2)))
        take = Signal()
        # plain Mux chains, not m.Switch: a combinational `case` block is not evaluated at
        # time 0 by Icarus until an input changes, so it would start as X
        cur_valid = Signal()
        at_last = Signal()
        valid_expr, last_expr = ins[0].valid, cnt == spec.in_beats[0] - 1
        for k in range(1, n):
            valid_expr = Mux(src == k, ins[k].valid, valid_expr)
            last_expr = Mux(src == k, cnt == spec.in_beats[k] - 1, last_expr)
        m.d.comb += [cur_valid.eq(valid_expr), at_last.eq(last_expr)]
        m.d.comb += [take.eq(cur_valid & queue.has_credit), queue.take_credit.eq(take)]
        for k, p in enumerate(ins):
            m.d.comb += p.ready.eq(queue.has_credit & (src == k))
        with m.If(take):
            with m.If(at_last):
                m.d.sync += [cnt.eq(0), src.eq(Mux(src == n - 1, 0, src + 1))]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        helds = []
        for k, p in enumerate(ins):
            h = Signal(p.payload.shape(), name=f"held{k}")
            with m.If(take & (src == k)):
                m.d.sync += h.eq(p.payload)
            helds.append(h)
        v1 = Signal()
        src1 = Signal.like(src)
        m.d.sync += [v1.eq(take), src1.eq(src)]
        out = Signal(spec.lanes * self.out_bits)
        ob = self.out_bits
        choice = None
        for k, (h, b, v, s) in enumerate(zip(helds, self.in_bits, spec.in_values, spec.shifts,
                                             strict=True)):
            lanes = []
            for lane in range(spec.lanes):
                code = h[lane * b:(lane + 1) * b]
                rec = self._recode(code, v)
                if rec is None:
                    val = Signal(signed(ob + 1), name=f"c{k}_{lane}")
                    m.d.comb += val.eq(align_expr(decode(code, v), s))
                    rec = val[:ob]
                lanes.append(rec)
            word = Cat(*lanes)
            choice = word if choice is None else Mux(src1 == k, word, choice)
        m.d.sync += out.eq(choice)
        v2 = Signal()
        m.d.sync += v2.eq(v1)
        m.d.comb += [queue.w_data.eq(out), queue.w_en.eq(v2)]
        return m


class BeatSplit(wiring.Component):
    """One beat of `in_lanes` values in, in_lanes / lanes beats of `lanes` values out, lane
    order kept; holds one wide beat and takes the next as the last narrow one leaves."""

    latency = 1

    def __init__(self, spec: SplitSpec):
        self.spec = spec
        self.n = spec.in_lanes // spec.lanes
        self.bits = spec.values.bits
        super().__init__({
            "i": In(stream.Signature(spec.in_lanes * self.bits)),
            "o": Out(stream.Signature(spec.lanes * self.bits)),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.spec.lanes * self.bits
        buf = Signal(self.spec.in_lanes * self.bits)
        full = Signal()
        idx = Signal(range(max(self.n, 2)))
        last = idx == self.n - 1
        pop = Signal()
        m.d.comb += [self.o.valid.eq(full), self.o.payload.eq(buf.word_select(idx, w)),
                     pop.eq(self.o.valid & self.o.ready),
                     self.i.ready.eq(~full | (pop & last))]
        with m.If(pop):
            m.d.sync += idx.eq(Mux(last, 0, idx + 1))
            with m.If(last):
                m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), full.eq(1)]
        return m


class Fork(wiring.Component):
    """One stream to `n` consumers: each output offers the beat until its consumer takes it;
    the input beat is consumed once every output has taken it (consumers may take it in
    different cycles, so a stalled consumer never blocks the others' current beat)."""

    def __init__(self, width: int, n: int):
        self.width, self.n = width, n
        ports = {"i": In(stream.Signature(width))}
        ports.update({f"o{k}": Out(stream.Signature(width)) for k in range(n)})
        super().__init__(ports)

    @property
    def outputs(self) -> list:
        return [getattr(self, f"o{k}") for k in range(self.n)]

    def elaborate(self, platform):
        m = Module()
        outs = self.outputs
        taken = Signal(self.n)
        done = []
        for k, o in enumerate(outs):
            m.d.comb += [o.valid.eq(self.i.valid & ~taken[k]), o.payload.eq(self.i.payload)]
            done.append(taken[k] | o.ready)
        all_done = Cat(*done).all()
        m.d.comb += self.i.ready.eq(all_done)
        with m.If(self.i.valid):
            with m.If(all_done):
                m.d.sync += taken.eq(0)
            with m.Else():
                m.d.sync += taken.eq(Cat(*done))
        return m


class StreamFifo(wiring.Component):
    """A plain FIFO between two streams (block RAM when deep): the shortcut buffer."""

    def __init__(self, width: int, depth: int):
        self.width, self.depth = width, depth
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        m.d.comb += [fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid),
                     self.i.ready.eq(fifo.w_rdy), self.o.payload.eq(fifo.r_data),
                     self.o.valid.eq(fifo.r_rdy), fifo.r_en.eq(self.o.ready)]
        return m
