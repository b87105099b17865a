"""Stream stages of TFLite's int8 layers (sdk/tflite_int8.py is the spec), bit for bit.

One component, `TflStage`, for TflRequant, TflPRelu and TflAdd (one tensor plus a
per-channel constant, or two tensors joined beat by beat as `AddStage` does). Per-channel
constants (multipliers M, exponents split into a left shift max(e, 0) and a right shift
max(-e, 0), factors, biases, slopes, an add's constant) come from a ROM indexed by the beat
within the pixel, as in hw/fixed_stages.py.

Arithmetic, as TFLite's (integer, so `run` and `run --fixed-point` agree):
  SRDHM(a, M)  = (a * M + (2**30 if a * M >= 0 else 1 - 2**30)) / 2**31, truncated towards
                 zero, which is (a * M + 2**30) >> 31 (srdhm_hw); a == M == INT32_MIN ->
                 INT32_MAX (that comparator only exists when a channel's M is INT32_MIN,
                 which QuantizeMultiplier never gives)
  RDBPOT(h, n) = (h >> n) + (rem > (2**(n-1) - 1 if n else 0) + (h < 0)), rem = h - (h >> n << n),
                 which is (h + (2**(n-1) - (h < 0) if n else 0)) >> n (rshift_hw)
  ruy          = (h + (2**n >> 1)) >> n  (CONV_2D / FULLY_CONNECTED: the last shift rounds up)
  clamp(z + y, lo, hi) - z on the output, computed as clamp(y, lo - z, hi - z).
Widths are the exact bounds (Python integers at plan time), so nothing wraps where the golden
model has a value. Products are `fixed_stages.product` (16 x 16 DSP pieces when the plan gives
the stage DSPs, `spec.dsp`, else shift-and-add LUTs) on the unshifted operand (a << k times M
is (a times M) << k); `tfl_multiplier_cost` is what the planner trades.

Pipeline: one product per cycle at most. Every MBQM takes two cycles (the product,
registered; then the left shift, SRDHM's rounding, the right shift), and a layer's steps
are chained on registers: a MUL-like requant's x * f + b or a PReLU's x * alpha (with the
branch's M and shifts) in a cycle of its own, an add's two input rescales side by side (their
sum in the rescales' second cycle), then the output rescale with the clamp in its last
cycle. ROM columns a later cycle reads are registered alongside. Latency (cycles from the
accepted beat to its result entering the output queue): conv / FC requant 3, MUL requant
and PReLU 4, add 5. The stage never stalls: it takes a beat only while the output queue
holds a credit for its result (hw/outq.py, depth latency + QUEUE_SLACK), so downstream
backpressure reaches the inputs' ready without a stall enable on the pipeline registers,
and one beat per cycle flows when nothing stalls.

Measured on one TflAdd of two int8 streams (8 channels, one lane, LUT products, UP5K;
`python bench/fpga_tfl_stage.py`, yosys synth_ice40 counts, nextpnr-ice40 Fmax
seed 1): before pipelining (all three multiplies in one cycle, latency 2) 4869 LUT4, 176 FF,
3.95 MHz; now 4451 LUT4, 393 FF, 14.89 MHz. With DSP products the stage needs 10 SB_MAC16
either way (more than the UP5K's 8, so no Fmax) and 1370 -> 1076 LUT4. The "before" figures:
`git show 271112c:hw/tflite_stages.py > /tmp/old.py; python bench/fpga_tfl_stage.py
--baseline /tmp/old.py`.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from .fixed_stages import (
    QUEUE_SLACK,
    JoinStage,
    _const_words,
    bound_shape,
    decode,
    dsp_pieces,
    max_abs,
    product,
)
from .outq import OutputQueue
from .specs import TflSpec

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ADD_LEFT_SHIFT = 20
#: per op: the signed constant columns, and the exponent columns (split into left/right)
SIGNED_COLS = {"requant": ("factor", "bias", "mult"), "prelu": ("alpha", "mult1", "mult2"),
               "add": ("mult1", "mult2", "const", "mult_out")}
SHIFT_COLS = {"requant": ("shift",), "prelu": ("shift1", "shift2"),
              "add": ("shift1", "shift2", "shift_out")}


def _sig(m: Module, expr, bound: int, name: str) -> Signal:
    s = Signal(bound_shape(bound), name=name)
    m.d.comb += s.eq(expr)
    return s


def _reg(m: Module, expr, shape, name: str) -> Signal:
    """`expr` one cycle later (a pipeline register between two multiply steps)."""
    s = Signal(shape, name=name)
    m.d.sync += s.eq(expr)
    return s


def srdhm_hw(m: Module, x, x_bound: int, mult, m_bound: int, shift, pre: int, l_max: int,
             saturate: bool, dsp: bool, name: str):
    """(SRDHM(a, mult) signal, its bound) for a = x << pre << shift (shift: a signal of at
    most l_max): the product is taken on x, then shifted (exact, and x is far narrower than
    a: an add's operand is 9 bits, not 29).

    TFLite's nudge-then-truncate is one floor: p = a * M >= 0 gives s = p + 2**30 >= 0, and
    p < 0 gives s = p + 1 - 2**30 < 0, whose truncation towards zero is floor((s + 2**31 - 1)
    / 2**31) = floor((p + 2**30) / 2**31). So SRDHM = (p + 2**30) >> 31 in both cases: one
    adder and a free arithmetic shift instead of a sign test, two nudges and two negations.

    The product is registered (a cycle of its own, `MBQM_CYCLES`): the shift, the rounding
    and the saturation flag work on it in the next cycle, with the left shift registered
    alongside."""
    prod = _reg(m, product(x, mult, dsp), bound_shape(x_bound * m_bound), f"{name}_xm")
    if saturate:
        a = (x << pre) << shift if l_max else x << pre
        sat = _reg(m, (a == INT32_MIN) & (mult == INT32_MIN), 1, f"{name}_sat")
    if l_max:
        shift = _reg(m, shift, shift.shape(), f"{name}_lsd")
    a_bound = x_bound << (pre + l_max)
    pb = a_bound * m_bound
    p = _sig(m, (prod << pre) << shift if l_max else prod << pre, pb, f"{name}_p")
    s = _sig(m, p + (1 << 30), pb + (1 << 30), f"{name}_s")
    qb = ((pb + (1 << 30)) >> 31) + 1
    q = s >> 31
    if saturate:
        q = Mux(sat, INT32_MAX, q)
        qb = max(qb, INT32_MAX)
    return _sig(m, q, qb, f"{name}_h"), qb


def rshift_hw(m: Module, h, h_bound: int, n, n_max: int, ruy: bool, name: str):
    """RDBPOT(h, n) (half away from zero), or ruy's half-up (h + 2**n / 2) >> n.

    RDBPOT = (h >> n) + (rem > half - 1 + (h < 0)) with half = 2**n / 2 is, for n >= 1,
    floor((h + half - (h < 0)) / 2**n) (the carry out of rem + half - (h < 0) is exactly
    that comparison); for n = 0 it is h. One adder and one barrel shift, as ruy's."""
    half = Signal(unsigned(max(n_max, 1)), name=f"{name}_half")
    m.d.comb += half.eq((Const(1, n_max + 1) << n) >> 1)
    if ruy:
        return _sig(m, (h + half) >> n, h_bound + 1, f"{name}_r"), h_bound + 1
    adj = Mux(half == 0, 0, half - (h < 0))
    return _sig(m, (h + adj) >> n, h_bound + 1, f"{name}_r"), h_bound + 1


def mbqm_hw(m: Module, x, x_bound: int, mult, m_bound: int, left, l_max: int, right,
            r_max: int, ruy: bool, saturate: bool, name: str, pre: int = 0, dsp: bool = False):
    """MBQM(x << pre, M, e) (or ruy's) with e split as left = max(e, 0), right = max(-e, 0):
    the product in one cycle, registered, then the shifts and roundings (`MBQM_CYCLES`)."""
    h, hb = srdhm_hw(m, x, x_bound, mult, m_bound, left, pre, l_max, saturate, dsp, name)
    if not r_max:
        return h, hb
    right = _reg(m, right, right.shape(), f"{name}_rsd")
    return rshift_hw(m, h, hb, right, r_max, ruy, name)


MBQM_CYCLES = 2  # mbqm_hw: the product, then its shifts and roundings


def _steps(spec: TflSpec) -> int:
    """Registered cycles of a lane after the held beat: a requant with a per-channel factor
    (MUL) and a PReLU take their first product in a cycle of its own, an add its two input
    rescales (their sum in the rescales' last cycle); then the output rescale, the clamp in
    its last cycle."""
    if spec.op == "requant":
        return MBQM_CYCLES + (0 if all(int(f) == 1 for f in spec.col("factor")) else 1)
    if spec.op == "prelu":
        return 1 + MBQM_CYCLES
    return 2 * MBQM_CYCLES


class TflStage(JoinStage):
    """One TFLite int8 layer per beat; ports `i0` (and `i1` for an add of two tensors), `o`.

    `latency` (1 + `_steps(spec)`) is per instance: 3 for a conv / FC requant, 4 for a MUL
    requant or a PReLU, 5 for an add (the planner reads it from the instance)."""

    def __init__(self, spec: TflSpec):
        super().__init__(spec)
        self.latency = 1 + _steps(spec)

    def _columns(self):
        """(name, values, width, signed) of every ROM column, and the per-column maxima."""
        spec = self.spec
        cols, top = [], {}
        present = dict(spec.cols)
        for name in SIGNED_COLS[spec.op]:
            if name not in present:
                continue
            v = [int(t) for t in present[name]]
            top[name] = max((abs(t) for t in v), default=0)
            cols.append((name, v, bound_shape(max(top[name], 1)).width + 1, True))
        for name in SHIFT_COLS[spec.op]:
            if name not in present:
                continue
            e = [int(t) for t in present[name]]
            for part, vals in (("l", [max(t, 0) for t in e]), ("r", [max(-t, 0) for t in e])):
                top[name + part] = max(vals, default=0)
                cols.append((name + part, vals, max(1, top[name + part].bit_length()), False))
        return cols, top

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        m.submodules.queue = queue = OutputQueue(spec.lanes * self.out_bits,
                                                 self.latency + QUEUE_SLACK)
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        cols, top = self._columns()
        widths = [c[2] for c in cols]
        if cols:
            words, lane_w = _const_words([c[1] for c in cols], widths, spec.lanes, spec.beats,
                                         spec.channels)
        else:
            words, lane_w = [0] * max(spec.beats, 1), 0
        rom = Memory(shape=max(1, spec.lanes * lane_w), depth=len(words), init=words)
        m.submodules.consts = rom
        rd = rom.read_port(domain="sync")

        ins = self.inputs
        take = Signal()
        all_valid = Cat(*[p.valid for p in ins]).all()
        m.d.comb += [take.eq(all_valid & queue.has_credit), queue.take_credit.eq(take)]
        for k, p in enumerate(ins):
            others = Cat(*[q.valid for j, q in enumerate(ins) if j != k]).all()
            m.d.comb += p.ready.eq(queue.has_credit & others)
        beat = Signal(range(max(spec.beats, 1)))
        m.d.comb += rd.addr.eq(beat)
        if spec.beats > 1:
            with m.If(take):
                m.d.sync += beat.eq(Mux(beat == spec.beats - 1, 0, beat + 1))
        helds = []
        for k, p in enumerate(ins):
            h = Signal(p.payload.shape(), name=f"held{k}")
            m.d.sync += h.eq(p.payload)
            helds.append(h)
        v1 = Signal()
        m.d.sync += v1.eq(take)
        outs = []
        for lane in range(spec.lanes):
            word = rd.data[lane * lane_w:(lane + 1) * lane_w]
            c, pos = {}, 0
            for name, _vals, w, is_signed in cols:
                piece = word[pos:pos + w]
                c[name] = piece.as_signed() if is_signed else piece
                pos += w
            xs = []
            for k, (h, b, v) in enumerate(zip(helds, self.in_bits, spec.in_values,
                                              strict=True)):
                x = Signal(signed(b + 1), name=f"x{k}_{lane}")
                m.d.comb += x.eq(decode(h[lane * b:(lane + 1) * b], v))
                xs.append((x, max_abs(v)))
            y, _yb = self._lane(m, xs, c, top, f"l{lane}")
            # clamp(z + y, lo, hi) - z == clamp(y, lo - z, hi - z): no adder on the last step
            z = int(spec.zero_point)
            lo, hi = int(spec.lo) - z, int(spec.hi) - z
            clipped = Mux(y < lo, lo, Mux(y > hi, hi, y))
            out = Signal(signed(self.out_bits + 1), name=f"y{lane}")
            m.d.sync += out.eq(clipped)
            outs.append(out[:self.out_bits])
        valid = v1
        for k in range(_steps(spec)):
            nv = Signal(name=f"v{k + 2}")
            m.d.sync += nv.eq(valid)
            valid = nv
        m.d.comb += [queue.w_data.eq(Cat(*outs)), queue.w_en.eq(valid)]
        return m

    def _lane(self, m: Module, xs, c, top, name: str):
        """The layer's value before the clamp, and its bound: the output rescale's expression,
        on registers of the previous steps (`_steps`). Constants the last step reads are
        registered alongside, as they arrive from the ROM with the held beat."""
        spec = self.spec
        sat = {k: any(int(t) == INT32_MIN for t in v) for k, v in spec.cols}

        def late(cycles: int, *names: str) -> dict:
            """The ROM columns `names` `cycles` later (beside the registered operand)."""
            out = {}
            for n in names:
                v = c[n]
                for k in range(cycles):
                    v = _reg(m, v, c[n].shape(), f"{name}_{n}_d{k + 1}")
                out[n] = v
            return out

        def mb(x, xb, cc, mult, shift, ruy, tag, pre=0):
            return mbqm_hw(m, x, xb, cc[mult], top[mult], cc[shift + "l"], top[shift + "l"],
                           cc[shift + "r"], top[shift + "r"], ruy, sat[mult],
                           f"{name}_{tag}", pre, spec.dsp)

        if spec.op == "requant":
            (x, xb), = xs
            accb = xb * top["factor"] + top["bias"]
            ruy = spec.rounding == "ruy"
            if all(int(f) == 1 for f in spec.col("factor")):  # conv / FC: no product
                acc = _sig(m, x + c["bias"], accb, f"{name}_acc")
                return mb(acc, accb, c, "mult", "shift", ruy, "m")
            acc = _reg(m, product(x, c["factor"], spec.dsp) + c["bias"], bound_shape(accb),
                       f"{name}_acc")
            return mb(acc, accb, late(1, "mult", "shiftl", "shiftr"), "mult", "shift", ruy, "m")
        if spec.op == "prelu":
            (x, xb), = xs
            pos = x >= 0
            negb = xb * top["alpha"]
            xb2 = max(xb, negb)
            mb2 = max(top["mult1"], top["mult2"])
            xsel = _reg(m, Mux(pos, x, product(x, c["alpha"], spec.dsp)), bound_shape(xb2),
                        f"{name}_xs")
            msel = _reg(m, Mux(pos, c["mult1"], c["mult2"]), bound_shape(mb2), f"{name}_ms")
            lw = max(top["shift1l"], top["shift2l"])
            rw = max(top["shift1r"], top["shift2r"])
            left = _reg(m, Mux(pos, c["shift1l"], c["shift2l"]),
                        unsigned(max(1, lw.bit_length())), f"{name}_ls")
            right = _reg(m, Mux(pos, c["shift1r"], c["shift2r"]),
                         unsigned(max(1, rw.bit_length())), f"{name}_rs")
            return mbqm_hw(m, xsel, xb2, msel, mb2, left, lw, right, rw, False,
                           sat["mult1"] or sat["mult2"], f"{name}_p", dsp=spec.dsp)
        # add: both input rescales (and their sum) in one step, the output rescale next
        ls = ADD_LEFT_SHIFT
        (x0, b0) = xs[0]
        v1, vb1 = mb(x0, b0, c, "mult1", "shift1", False, "v1", ls)
        if len(xs) == 2:
            (x1, b1) = xs[1]
            v2, vb2 = mb(x1, b1, c, "mult2", "shift2", False, "v2", ls)
        else:
            v2, vb2 = late(MBQM_CYCLES - 1, "const")["const"], top["const"]
        tot = _reg(m, v1 + v2, bound_shape(vb1 + vb2), f"{name}_sum")
        return mb(tot, vb1 + vb2, late(MBQM_CYCLES, "mult_out", "shift_outl", "shift_outr"), "mult_out",
                  "shift_out", False, "o")


def tfl_multiplier_cost(spec: TflSpec) -> tuple[int, int]:
    """(SB_MAC16 blocks, LUT4 estimate) of the stage's products over its lanes with
    `dsp=True` / `dsp=False` (the same measure as fixed_stages.multiplier_cost)."""
    cols = dict(spec.cols)

    def width(v: int) -> int:
        return bound_shape(max(v, 1)).width

    def top(name: str) -> int:
        return max((abs(int(t)) for t in cols.get(name, ())), default=0)

    xb = max(max_abs(v) for v in spec.in_values)
    prods = []  # (operand bound, constant bound)
    if spec.op == "requant":
        if not all(int(f) == 1 for f in cols["factor"]):
            prods.append((xb, top("factor")))
        prods.append((xb * top("factor") + top("bias"), top("mult")))
    elif spec.op == "prelu":
        prods += [(xb, top("alpha")), (max(xb, xb * top("alpha")),
                                       max(top("mult1"), top("mult2")))]
    else:
        prods += [(xb, top("mult1"))] * len(spec.in_values)
        # the sum of the two MBQMs' results, bounded as mbqm_hw bounds them
        v = sum(((max_abs(val) << ADD_LEFT_SHIFT + max(0, top_e)) * top(mn) + (1 << 30) >> 31)
                + 2 for val, mn, top_e in zip(spec.in_values, ("mult1", "mult2"),
                                               (max(cols["shift1"]), max(cols.get(
                                                   "shift2", [0]))), strict=False))
        v += top("const")
        prods.append((v, top("mult_out")))
    dsps = luts = 0
    for a, c in prods:
        aw, cw = width(a), width(c)
        dsps += dsp_pieces(aw) * dsp_pieces(cw)
        luts += min(aw, cw) * (aw + cw)
    return spec.lanes * dsps, spec.lanes * luts
