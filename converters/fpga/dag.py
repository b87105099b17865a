"""Planner for networks that are not chains, with real-valued layers (issue #11).

`plan.plan` sends graphs holding real-valued layers (Requant, AddTensors, PRelu, GlobalAvgPool,
AvgPool (a frame stage: the max-pool's window machinery, summing and scaling; hw/avg_pool.py),
Concat, FixedThreshold) or grouped convs here. Stages are the chain planner's (engines, pools,
thresholds) plus the stream stages of hw/fixed_stages.py, connected as a DAG: `Plan.sources`
lists each stage's producers, a tensor read by several ports is forked, and a shortcut gets a
FIFO sized below.

Layouts. A real-valued tensor is its fixed-point integers (frac is a plan-time constant), an
`int` stream whose width comes from the IR bound. Stream stages keep their producer's beat
layout; joins need equal layouts (Add) or full-width beats (Concat: every input but the last
fills whole beats, so the output's channels stay contiguous). When a producer's layout does not
fit, a *relayout* stage (a 1x1 max-pool, i.e. a frame buffer read back in `lanes`-wide words)
is put in between.

Area. The multiplier stages (Requant, PReLU, global average) would otherwise take their
producer's PE lanes, each with a 30-bit-wide multiplier (iCE40 DSPs or many LUTs). The
network's II is its slowest engine's frame time, so such a stage gets the fewest lanes (a
divisor of its producer's) that still stream a frame within that time, behind a `BeatSplit`
(a wide beat out as narrow ones, channel order kept); joins split their other inputs to match.
Not in front of a Concat (it adds its inputs' beats). `narrow=False` turns this off.

DSP blocks. The UP5K has 8 SB_MAC16 (16 x 16 products); a stage's ~30-bit constant times a
~20-bit value takes two to four, so the stages' products cannot all go there. Each product is
written either as 16 x 16 piece products (exactly one DSP each, `hw/fixed_stages.product`) or
as shift-and-add in LUTs (a Mux per bit of the narrower operand; a constant's signed digits).
The DSPs the 8-bit engines leave over (DSP_BUDGET) go to the stages saving the most LUTs per
DSP, greedily; the rest are LUTs. Both forms are exact.

Grouped / depthwise convs run on the ordinary engine with per-group weight masking: the weight
of input channel c for output o is zero unless c is in o's group, i.e. a ternary weight ROM
whose mask plane removes the other groups' taps. Exact (a masked tap contributes nothing, as a
ternary zero), simple, and costs (groups - 1) / groups of the engine's MACs.

Shortcut FIFO sizing (why it cannot deadlock). Let a join J (Add/Concat) read branches that
leave a fork F (the nearest stage, or the input, that all of J's inputs descend from). A
*frame stage* (engine, pool, relayout, global average) emits nothing of a frame before it holds
all of it, so a branch through one produces its first beat for J only after every beat of F's
frame n has left F. Meanwhile the other, frame-free branch has received those same beats and
cannot hand them to J (which needs both operands). So that branch must hold a whole frame:
the FIFO on it needs depth >= D = pixels * beats per pixel of F's stream. With depth >= D the
fork never blocks before frame n is complete in the long branch, which then runs (its input
frame buffer has two banks, its output queue has credits) and J drains both sides in lockstep:
no cycle of waits. The bound is tight to a beat: the fork's own register can hold frame n's
last beat for the frame-free branch, so D - 1 still works on a direct shortcut and D - 2
deadlocks (the long branch never sees its whole frame); tests/test_fpga_fixed_point.py checks
both. Stream stages on the frame-free branch (BeatSplits included) add their queues' and
registers' slots, which the plan ignores (on the safe side). On top of D the plan
adds the beats the fork emits while the long branch computes (its compute cycles and pipeline
depth from the schedule, in F's beats), capped at another frame: then the producer can stream
frame n + 1 into the long branch's second bank while J consumes frame n, as ping-pong buffers
do elsewhere. Without a frame stage on any branch, the skew is the difference of the branches'
pipeline depths (cycles, at most one beat each) plus two: not needed for progress by an Add
(the fork hands beats one by one, the Add takes them in lockstep), only for full rate.

A Concat is different: per pixel it takes all of port 0's beats, then port 1's, ... So when an
earlier port q < p is frame-free from the same fork (cat([x, x]), cat([x, f(x), x]) with f a
stream stage), the concat takes pixel n's beats on port q while the fork offers the same beats
to port p, which the concat does not read yet; the fork waits until every output has taken a
beat, so without room for a pixel of the fork's stream on port p's branch nothing moves again
(a deadlock as soon as a pixel has two beats or more). Port p therefore gets a FIFO of one
pixel of the fork's stream (the bound) plus the pipeline skew plus two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ... import fixedpoint as fx
from ...errors import EdgeError
from ...hw.avg_pool import AvgPoolSpec
from ...hw.fixed_stages import align_bound, bound_shape, max_abs, multiplier_cost
from ...hw.network import build_stage
from ...hw.specs import (
    AddSpec,
    ConcatSpec,
    EngineSpec,
    FrameSpec,
    GapSpec,
    PoolSpec,
    PReluSpec,
    QuantizeSpec,
    RequantSpec,
    SplitSpec,
    TflSpec,
    ThresholdSpec,
    Values,
    WindowSpec,
)
from ...hw.tflite_stages import tfl_multiplier_cost
from ...hw.threshold import ThresholdConsts
from ...ir import layers as L
from ...ir.graph import Graph
from . import plan as P

MAX_STREAM_LANES = 32
INT64_BITS = 64
#: SB_MAC16 blocks the multiplier stages may share with the engines' 8-bit products: the
#: UP5K's (the default icebreaker board). Parts without DSPs build every product from LUTs.
DSP_BUDGET = 8
MULT_SPECS = (RequantSpec, PReluSpec, GapSpec, QuantizeSpec, TflSpec)


@dataclass
class Stream:
    """A tensor on the wire: its frame geometry and who sends it, beat by beat."""

    shape: tuple[int, ...]
    frame: tuple[int, int, int]
    perm: np.ndarray
    values: Values
    lanes: int
    beats: int
    src: int  # producing stage, -1 = the network input
    frac: int = 0

    @property
    def natural(self) -> bool:
        return P._is_natural(self.shape, self.frame, self.perm)

    @property
    def frame_beats(self) -> int:
        return self.frame[0] * self.frame[1] * self.beats


def _where(layer: L.Layer) -> str:
    return f"fpga: layer '{P.safe_label(layer.name)}'"


def _values(info) -> Values:
    if info.kind in ("bipolar", "ternary"):
        return Values(info.kind)
    if info.kind in ("int", "fixed"):
        return Values("int", int(info.lo), int(info.hi))
    raise EdgeError(f"fpga: {info.kind} data cannot go on the FPGA")


def _frac(info) -> int:
    return info.frac if info.kind == "fixed" else 0


def _group_weights(layer: L.GroupConv2d) -> L.Conv2d:
    """The grouped conv as a full conv whose weights are zero outside each output's group."""
    w = np.asarray(layer.weights.unpack(), dtype=np.int8)
    g, c = layer.groups, layer.in_channels
    kh, kw = layer.kernel
    rows, cin = w.shape[0] // g, c // g
    full = np.zeros((w.shape[0], c, kh * kw), dtype=np.int8)
    for o in range(w.shape[0]):
        grp = o // rows
        full[o, grp * cin:(grp + 1) * cin] = w[o].reshape(cin, kh * kw)
    kind = L.Int8Weights if L.is_int8(layer.weights) else L.IntWeights
    return L.Conv2d(layer.name, layer.inputs, layer.output, layer.source,
                    weights=kind(full.reshape(w.shape[0], -1)), in_channels=c,
                    kernel=layer.kernel, strides=layer.strides, pads=layer.pads,
                    dilations=layer.dilations, pad_value=layer.pad_value)


ENGINE = (L.Dense, L.Conv2d)  # GroupConv2d is a Conv2d
STREAM_LAYERS = (L.Threshold, L.FixedThreshold, L.Requant, L.PRelu, L.Quantize, *L.TFLITE_INT8)


class _Builder:
    def __init__(self, graph: Graph, pe, simd, fuse: bool, fifo_depths, narrow: bool = True):
        self.graph, self.fuse, self.narrow = graph, fuse, narrow
        self.target = 0  # the engines' slowest frame: what a narrowed stream stage may take
        self.infos = graph.infos()
        self.user_fifos = dict(fifo_depths or {})
        self.stages: list = []
        self.names: list[str] = []
        self.labels: list[str] = []
        self.sources: list[list[int]] = []
        self.frame_stage: list[bool] = []
        self.notes: list[str] = []
        self.streams: dict[str, Stream] = {}
        self.tensors: list[str | None] = []
        self.pe, self.simd = pe, simd

    # ------------------------------------------------------------------ structure
    def consumers(self, tensor: str) -> list[L.Layer]:
        return self.graph.consumers(tensor)

    def drafts(self) -> list[list[L.Layer]]:
        layers = self.graph.layers
        if not layers or not isinstance(layers[0], L.Input) or len(self.graph.inputs) != 1:
            raise EdgeError("fpga: the model must have exactly one input")
        if len(self.graph.outputs) != 1 or not isinstance(layers[-1], L.Scores):
            raise EdgeError("fpga: the model must end in one Scores output")
        for layer in layers[:-1]:
            if not self.consumers(layer.output):
                raise EdgeError(f"{_where(layer)}: its output is never read")
        out, skip = [], set()
        for k, layer in enumerate(layers[1:-1], start=1):
            if k in skip:
                continue
            group = [layer]
            if isinstance(layer, ENGINE) and self.fuse:
                readers = self.consumers(layer.output)
                nxt = layers[k + 1] if k + 1 < len(layers) else None
                if len(readers) == 1 and readers[0] is nxt and isinstance(nxt, L.Threshold):
                    group.append(nxt)
                    skip.add(k + 1)
            out.append(group)
        if not any(isinstance(g[0], ENGINE) for g in out):
            raise EdgeError("fpga: the model has no dense or conv layer to put on the FPGA")
        return out

    def geometry(self, drafts) -> dict[str, tuple]:
        """Frame and perm of every tensor (independent of the folding)."""
        inp = self.graph.layers[0]
        geo = {inp.output: P.input_frame(self.graph, self.infos)}
        for group in drafts:
            for layer in group:
                if isinstance(layer, (L.Flatten, L.Reshape, *STREAM_LAYERS)):
                    geo[layer.output] = geo[layer.inputs[0]]
                elif isinstance(layer, L.Transpose):
                    frame, perm = geo[layer.inputs[0]]
                    geo[layer.output] = frame, P.view_perm(
                        layer, self.infos[layer.inputs[0]].shape, perm)
                else:
                    geo[layer.output] = P._in_frame(self.infos[layer.output])
        return geo

    # ------------------------------------------------------------------ stages
    def add_stage(self, spec, kind: str, label: str, sources: list[int], frame: bool,
                  tensor: str | None = None) -> int:
        """Append a stage; `tensor` = the IR tensor it streams out (None: a relayout)."""
        self.tensors.append(tensor)
        self.stages.append(spec)
        self.names.append(f"s{len(self.stages) - 1}_{kind}")
        self.labels.append(label)
        self.sources.append(sources)
        self.frame_stage.append(frame)
        return len(self.stages) - 1

    def fspec(self, s: Stream, lanes: int) -> FrameSpec:
        h, w, c = s.frame
        f = FrameSpec(h, w, c, lanes, s.values, s.lanes, s.beats)
        return replace(f, block_ram=P._frame_in_bram(f))

    def relayout(self, s: Stream, lanes: int, why: L.Layer) -> Stream:
        """The stream re-cut into `lanes`-wide beats through a frame buffer (1x1 pool)."""
        if (s.lanes, s.beats) == (lanes, math.ceil(s.frame[2] / lanes)):
            return s
        if not s.natural:
            raise EdgeError(f"{_where(why)}: its input is a reshaped tensor, which this backend "
                            f"cannot re-lay out")
        h, w, _c = s.frame
        spec = PoolSpec(frame=self.fspec(s, lanes), window=WindowSpec(kernel=(1, 1),
                                                                      out_hw=(h, w)))
        k = self.add_stage(spec, "relayout", f"{why.name} (relayout)", [s.src], True)
        return replace(s, lanes=lanes, beats=spec.out_beats, src=k)

    def split(self, s: Stream, lanes: int, why: L.Layer) -> Stream:
        """The stream cut into beats of `lanes` (a divisor of its lanes) by a BeatSplit."""
        if lanes == s.lanes:
            return s
        h, w, c = s.frame
        spec = SplitSpec(lanes, s.beats, h * w, c, in_lanes=s.lanes, values=s.values)
        k = self.add_stage(spec, "split", f"{why.name} (split)", [s.src], False)
        return replace(s, lanes=lanes, beats=spec.out_beats, src=k)

    def narrowed(self, s: Stream, why: L.Layer) -> Stream:
        """Area: a multiplier stage gets the fewest lanes (a divisor of its producer's) that
        still stream a frame within the slowest engine's frame, so the II does not move."""
        if not self.narrow or self.feeds_concat(why.output):
            return s  # a concat adds its inputs' beats: narrow inputs would slow it down
        h, w, _ = s.frame
        for d in range(1, s.lanes + 1):
            if s.lanes % d == 0 and h * w * s.beats * (s.lanes // d) <= self.target:
                return self.split(s, d, why)
        return s  # pragma: no cover - d = lanes always qualifies when the stream keeps up

    def feeds_concat(self, tensor: str) -> bool:
        """Whether a Concat reads this tensor, directly or through stream layers."""
        for layer in self.consumers(tensor):
            if isinstance(layer, L.Concat):
                return True
            if isinstance(layer, (*STREAM_LAYERS, L.AddTensors, L.Flatten, L.Reshape,
                                  L.Transpose)) and \
                    self.feeds_concat(layer.output):
                return True
        return False

    def natural(self, s: Stream, layer: L.Layer) -> None:
        if not s.natural:
            raise EdgeError(f"{_where(layer)}: a per-channel layer on a reshaped tensor has no "
                            f"FPGA implementation")

    def out_stream(self, layer: L.Layer, src: Stream, k: int, values: Values, lanes: int,
                   beats: int, frame=None, perm=None) -> Stream:
        info = self.infos[layer.output]
        if frame is None:
            frame, perm = P._in_frame(info)
        return Stream(tuple(info.shape), frame, perm, values, lanes, beats, k, _frac(info))

    def build(self) -> P.Plan:
        graph, infos = self.graph, self.infos
        drafts = self.drafts()
        geo = self.geometry(drafts)
        # folding: engine shapes from the geometry, input kinds from the IR
        engines, shapes = [], []
        for group in drafts:
            head = group[0]
            if isinstance(head, ENGINE):
                frame = geo[head.inputs[0]][0]
                kind = infos[head.inputs[0]].kind
                engines.append(head)
                shapes.append(P._engine_shape(head, frame, infos, "int" if kind in
                                              ("int", "fixed") else kind))
        folding, notes = P._folding(self.pe, self.simd, engines, shapes)
        self.notes += notes
        fold = {layer.name: f for layer, f in zip(engines, folding, strict=True)}
        self.target = max(sh.cycles(*f) for sh, f in zip(shapes, folding, strict=True))

        inp = graph.layers[0]
        info = infos[inp.output]
        frame, perm = geo[inp.output]
        first = [layer for layer in self.consumers(inp.output) if isinstance(layer, ENGINE)]
        lanes = fold[first[0].name][1] if first else min(frame[2], MAX_STREAM_LANES)
        self.streams[inp.output] = Stream(tuple(info.shape), frame, perm,
                                          Values("int", int(info.lo), int(info.hi)), lanes,
                                          math.ceil(frame[2] / lanes), -1)
        in_stream = self.streams[inp.output]
        for group in drafts:
            self.stage(group, fold)
        scores = graph.layers[-1]
        out = self.streams[scores.inputs[0]]
        if out.src != len(self.stages) - 1:
            raise EdgeError("fpga: the scores must come from the last stage")  # pragma: no cover
        self.assign_dsps()
        fifos = self.size_fifos(in_stream)
        in_layout = P.Layout(in_stream.shape, in_stream.frame, in_stream.perm, in_stream.values,
                             in_stream.lanes, in_stream.beats)
        out_layout = P.Layout(out.shape, out.frame, out.perm, out.values, out.lanes, out.beats)
        outputs = []
        for t in self.tensors:
            if t is None:
                outputs.append(None)
                continue
            st = self.streams[t]
            outputs.append((t, P.Layout(st.shape, st.frame, st.perm, st.values, st.lanes,
                                        st.beats)))
        return P.Plan(self.stages, self.names, self.labels, in_layout, out_layout, self.notes,
                      sources=self.sources, fifos=fifos, outputs=outputs)

    def stage(self, group: list[L.Layer], fold) -> None:
        head, infos = group[0], self.infos
        ins = [self.streams[t] for t in head.inputs]
        s = ins[0]
        info = infos[head.output]
        label = ", ".join(layer.name for layer in group)
        if isinstance(head, (L.Flatten, L.Reshape)):
            self.streams[head.output] = replace(s, shape=tuple(info.shape))
            return
        if isinstance(head, L.Transpose):
            self.streams[head.output] = replace(s, shape=tuple(info.shape), perm=P.view_perm(
                head, infos[head.inputs[0]].shape, s.perm))
            return
        if isinstance(head, ENGINE):
            if isinstance(head, L.Conv2d) and not s.natural:
                raise EdgeError(f"{_where(head)}: its input is a reshaped tensor, which this "
                                f"backend cannot lay out for a conv")
            if s.values.kind == "int" and infos[head.inputs[0]].kind == "fixed":
                raise EdgeError(f"{_where(head)}: reads real-valued data")  # pragma: no cover
            pe, simd = fold[head.name]
            layer = _group_weights(head) if isinstance(head, L.GroupConv2d) else head
            spec, values = P._engine(layer, group, self.fspec(s, simd), pe, s.frame, s.perm,
                                     infos)
            k = self.add_stage(spec, "engine", label, [s.src], True, group[-1].output)
            if isinstance(head, L.Dense):
                o = info.shape[0]
                frame, perm = (1, 1, o), np.arange(o, dtype=np.int64).reshape(1, 1, o)
            else:
                frame, perm = P._in_frame(info)
            self.streams[group[-1].output] = Stream(
                tuple(infos[group[-1].output].shape), frame, perm, values, spec.out_lanes,
                spec.out_beats, k)
            return
        if isinstance(head, L.MaxPool):
            if not s.natural:
                raise EdgeError(f"{_where(head)}: its input is a reshaped tensor, which this "
                                f"backend cannot lay out for a pool")
            lanes = max(1, min(s.frame[2], P.POOL_WORD_BITS // s.values.bits))
            spec = P._pool(head, self.fspec(s, lanes), infos)
            k = self.add_stage(spec, "pool", label, [s.src], True, head.output)
            self.streams[head.output] = replace(
                self.out_stream(head, s, k, s.values, spec.out_lanes, spec.out_beats),
                frac=s.frac)
            return
        h, w, c = s.frame
        if isinstance(head, (L.Threshold, L.FixedThreshold)):
            self.natural(s, head)
            if s.values.kind != "int":
                raise EdgeError(f"{_where(head)}: a threshold needs integer or fixed-point "
                                f"data")
            consts = ThresholdConsts.build(head.tau, head.flip, head.zero, s.values.lo,
                                           s.values.hi)
            spec = ThresholdSpec(lanes=s.lanes, beats=s.beats, pixels=h * w, channels=c,
                                 in_values=s.values, consts=consts,
                                 ternary_out=bool(np.any(head.zero)))
            k = self.add_stage(spec, "threshold", label, [s.src], False, head.output)
            self.streams[head.output] = replace(s, values=spec.out_values, src=k, frac=0)
            return
        if isinstance(head, L.Requant):
            self.natural(s, head)
            s = self.narrowed(s, head)
            out = _values(info)
            spec = RequantSpec(s.lanes, s.beats, h * w, c, in_values=s.values, out_values=out,
                               mult=np.asarray(head.mult, np.int64),
                               add=np.asarray(head.add, np.int64), shift=int(head.shift))
            top = max_abs(s.values) * int(np.max(np.abs(spec.mult), initial=0)) + \
                int(np.max(np.abs(spec.add), initial=0))
            if bound_shape(top).width > INT64_BITS:
                raise EdgeError(f"{_where(head)}: the affine product needs more than 64 bits")
            k = self.add_stage(spec, "requant", label, [s.src], False, head.output)
            self.streams[head.output] = replace(s, values=out, src=k, frac=info.frac)
            return
        if isinstance(head, L.PRelu):
            self.natural(s, head)
            s = self.narrowed(s, head)
            out = _values(info)
            spec = PReluSpec(s.lanes, s.beats, h * w, c, in_values=s.values, out_values=out,
                             slope_q=np.asarray(head.slope_q, np.int64), shift=fx.PRELU_SHIFT)
            k = self.add_stage(spec, "prelu", label, [s.src], False, head.output)
            self.streams[head.output] = replace(s, values=out, src=k, frac=info.frac)
            return
        if isinstance(head, L.Quantize):
            self.quantize(head, s, label)
            return
        if isinstance(head, L.AvgPool):
            self.avg_pool(head, s, label)
            return
        if isinstance(head, L.GlobalAvgPool):
            self.natural(s, head)
            s = self.narrowed(s, head)
            out = _values(info)
            spec = GapSpec(s.lanes, s.beats, h * w, c, in_values=s.values, out_values=out,
                           mult=fx.gap_multiplier(h * w), shift=fx.GAP_SHIFT)
            k = self.add_stage(spec, "gap", label, [s.src], True, head.output)
            self.streams[head.output] = self.out_stream(head, s, k, out, s.lanes, s.beats)
            self.streams[head.output].frac = info.frac
            return
        if isinstance(head, L.AddTensors):
            self.join_add(head, ins, label)
            return
        if isinstance(head, L.TFLITE_INT8):
            self.tflite(head, ins, label)
            return
        if isinstance(head, L.Concat):
            self.join_concat(head, ins, label)
            return
        raise EdgeError(f"{_where(head)}: {type(head).__name__} layers have no FPGA "
                        f"implementation")

    def avg_pool(self, head: L.AvgPool, s: Stream, label: str) -> None:
        """Windowed average: the max-pool's frame buffer and window scan, each lane summing
        its taps and scaling once by R_n, n its window's divisor (hw/avg_pool.py)."""
        if not s.natural:
            raise EdgeError(f"{_where(head)}: its input is a reshaped tensor, which this "
                            f"backend cannot lay out for a pool")
        if s.values.kind != "int":
            raise EdgeError(f"{_where(head)}: an average pool needs integer or fixed-point "
                            f"data")
        counts = fx.avg_pool_counts(self.infos[head.inputs[0]].shape[1:], head.kernel,
                                    head.strides, head.pads, head.count_include_pad)
        mults = tuple((int(n), fx.gap_multiplier(int(n))) for n in np.unique(counts))
        info = self.infos[head.output]
        lanes = max(1, min(s.frame[2], P.POOL_WORD_BITS // s.values.bits))
        pool = P._pool(L.MaxPool(head.name, head.inputs, head.output, kernel=head.kernel,
                                 strides=head.strides, pads=head.pads),
                       self.fspec(s, lanes), self.infos)
        out = _values(info)
        spec = AvgPoolSpec(frame=pool.frame, window=pool.window, avg_values=out, mults=mults,
                           shift=fx.GAP_SHIFT - (_frac(info) - _frac(self.infos[head.inputs[0]])))
        k = self.add_stage(spec, "avgpool", label, [s.src], True, head.output)
        self.streams[head.output] = self.out_stream(head, s, k, out, spec.out_lanes,
                                                    spec.out_beats)

    def quantize(self, head: L.Quantize, s: Stream, label: str) -> None:
        """One M, S, z for the whole tensor: any layout (reshaped too) streams through."""
        if head.mult is None:
            raise EdgeError(f"{_where(head)}: Quantize not lowered to fixed point")
        if s.values.kind != "int":
            raise EdgeError(f"{_where(head)}: Quantize needs integer or fixed-point data, not "
                            f"{s.values.kind}")
        info = self.infos[head.output]
        s = self.narrowed(s, head)
        out = _values(info)
        h, w, c = s.frame
        spec = QuantizeSpec(s.lanes, s.beats, h * w, c, in_values=s.values, out_values=out,
                            mult=int(head.mult), shift=int(head.shift),
                            zero_point=int(head.zero_point), lo=int(head.lo), hi=int(head.hi))
        if bound_shape(max_abs(s.values) * abs(spec.mult)
                       + (1 << (spec.shift - 1))).width > INT64_BITS:
            raise EdgeError(f"{_where(head)}: the quantiser's product needs more than 64 bits")
        k = self.add_stage(spec, "quantize", label, [s.src], False, head.output)
        self.streams[head.output] = replace(s, shape=tuple(info.shape), values=out, src=k,
                                            frac=0)

    def join_add(self, head: L.AddTensors, ins: list[Stream], label: str) -> None:
        info = self.infos[head.output]
        ins = self.same_layout(ins, head)
        a = ins[0]
        shifts = tuple(info.frac - s.frac for s in ins)
        out = _values(info)
        h, w, c = a.frame
        spec = AddSpec(a.lanes, a.beats, h * w, c, in_values=tuple(s.values for s in ins),
                       shifts=shifts, out_values=out)
        bound = sum(align_bound(max_abs(s.values), sh) for s, sh in zip(ins, shifts,
                                                                         strict=True))
        if bound > max(abs(out.lo), abs(out.hi)):
            raise EdgeError(f"{_where(head)}: the aligned sum exceeds the IR bound")
        k = self.add_stage(spec, "add", label, [s.src for s in ins], False, head.output)
        self.streams[head.output] = replace(a, shape=tuple(info.shape), values=out, src=k,
                                            frac=info.frac)

    def tflite(self, head: L.Layer, ins: list[Stream], label: str) -> None:
        """A TFLite int8 layer (hw/tflite_stages.py): a per-channel stream stage, or a join
        of two streams of one layout for an add of two tensors."""
        info = self.infos[head.output]
        for s in ins:
            self.natural(s, head)
        if len(ins) == 1:
            ins = [self.narrowed(ins[0], head)]
        else:
            ins = self.same_layout(ins, head)
        a = ins[0]
        out = _values(info)
        h, w, c = a.frame
        spec = tfl_spec(head, a.lanes, a.beats, h * w, c, tuple(s.values for s in ins), out)
        k = self.add_stage(spec, "tflite", label, [s.src for s in ins], False, head.output)
        self.streams[head.output] = replace(a, shape=tuple(info.shape), values=out, src=k,
                                            frac=0)

    def same_layout(self, ins: list[Stream], head: L.Layer) -> list[Stream]:
        """Streams cut (or re-laid out) to one beat layout, for a beat-by-beat join."""
        a = ins[0]
        if any((s.lanes, s.beats) != (a.lanes, a.beats) or not np.array_equal(s.perm, a.perm)
               for s in ins):
            narrow = min(s.lanes for s in ins)
            if all(s.lanes % narrow == 0 and s.lanes * s.beats == a.lanes * a.beats
                   and np.array_equal(s.perm, a.perm) for s in ins):
                ins = [self.split(s, narrow, head) for s in ins]  # same padded beats, cut
            else:
                lanes = min(a.frame[2], MAX_STREAM_LANES)
                ins = [self.relayout(s, lanes, head) for s in ins]
        return ins

    def join_concat(self, head: L.Concat, ins: list[Stream], label: str) -> None:
        info = self.infos[head.output]
        for s in ins:
            self.natural(s, head)
        chans = [s.frame[2] for s in ins]
        g = math.gcd(*chans[:-1]) if len(chans) > 1 else chans[0]
        lanes = max(d for d in range(1, min(g, MAX_STREAM_LANES) + 1) if g % d == 0)
        narrow = min(s.lanes for s in ins)
        if all(s.lanes % narrow == 0 for s in ins) and all(
                s.lanes * s.beats == c for s, c in zip(ins[:-1], chans[:-1], strict=True)) \
                and all(c % narrow == 0 for c in chans[:-1]):
            ins = [self.split(s, narrow, head) for s in ins]  # whole beats: cut, no buffer
        else:
            ins = [self.relayout(s, lanes, head) for s in ins]
        lanes = ins[0].lanes
        out = _values(info)
        fixed = info.kind == "fixed"
        shifts = tuple((info.frac - s.frac) if fixed else 0 for s in ins)
        h, w, _ = ins[0].frame
        spec = ConcatSpec(lanes=lanes, pixels=h * w, channels=sum(chans),
                          in_beats=tuple(s.beats for s in ins),
                          in_values=tuple(s.values for s in ins), shifts=shifts, out_values=out)
        k = self.add_stage(spec, "concat", label, [s.src for s in ins], False, head.output)
        frame, perm = P._in_frame(info)
        self.streams[head.output] = Stream(tuple(info.shape), frame, perm, out, lanes,
                                           spec.out_beats, k, _frac(info))

    def assign_dsps(self) -> None:
        """Which multiplier stages compute on DSP blocks (see the module docstring, Area)."""
        used = sum(sp.pe * sp.simd for sp in self.stages if isinstance(sp, EngineSpec)
                   and sp.int8_weights and sp.frame.values.kind == "int")
        left = DSP_BUDGET - used
        cands = []
        for k, sp in enumerate(self.stages):
            if isinstance(sp, MULT_SPECS):
                dsps, luts = tfl_multiplier_cost(sp) if isinstance(sp, TflSpec) else \
                    multiplier_cost(sp)
                if dsps:
                    cands.append((-luts / dsps, k, dsps))
        for _, k, dsps in sorted(cands):
            if dsps <= left:
                self.stages[k] = replace(self.stages[k], dsp=True)
                left -= dsps
        on = [self.names[k] for k, sp in enumerate(self.stages)
              if isinstance(sp, MULT_SPECS) and sp.dsp]
        self.notes.append(f"DSP blocks: {DSP_BUDGET - left} of {DSP_BUDGET} "
                          f"({used} for 8-bit engine products, products of "
                          f"{', '.join(on) or 'no multiplier stage'}); other products in LUTs")

    # ------------------------------------------------------------------ shortcut FIFOs
    def size_fifos(self, in_stream: Stream) -> dict[tuple[int, int], int]:
        n = len(self.stages)
        latency = [_latency(s) for s in self.stages]
        self.latency = latency
        anc: list[set[int]] = []
        for k in range(n):
            a = {-1}
            for s in self.sources[k]:
                a |= {s} | (anc[s] if s >= 0 else set())
            anc.append(a)
        fifos: dict[tuple[int, int], int] = {}
        self.bounds: dict[tuple[int, int], int] = {}
        out_beats = {-1: in_stream.frame_beats}
        pixel_beats = {-1: in_stream.beats}
        for k, spec in enumerate(self.stages):
            pixels = _out_pixels(spec)
            out_beats[k] = pixels * spec.out_beats
            pixel_beats[k] = spec.out_beats
        for j, srcs in enumerate(self.sources):
            if len(srcs) < 2:
                continue
            common = set.intersection(*[({s} | (anc[s] if s >= 0 else set())) for s in srcs])
            fork = max(common)
            branch = []
            for s in srcs:
                own = ({s} | (anc[s] if s >= 0 else set())) if s != fork else set()
                own = {x for x in own if x > fork and (fork == -1 or fork in anc[x])}
                barrier = any(self.frame_stage[x] for x in own)
                cyc = sum(latency[x] + (self.stages[x].compute_cycles if self.frame_stage[x]
                                        else 0) for x in own)
                branch.append((own, barrier, cyc))
            for p, (s, (own, barrier, cyc)) in enumerate(zip(srcs, branch, strict=True)):
                others = [b for q, b in enumerate(branch) if q != p]
                edge = self._fork_edge(fork, j, p, own)
                if barrier:
                    continue
                frame_beats = out_beats[fork]
                if any(b[1] for b in others):
                    need = frame_beats
                    long = max(b[2] for b in others if b[1])
                    per_beat = max(1, self._fork_rate(fork, frame_beats))
                    depth = need + min(frame_beats, math.ceil(long / per_beat)) + 2
                else:
                    need = 0
                    skew = max(0, max((b[2] for b in others), default=0) - cyc)
                    if isinstance(self.stages[j], ConcatSpec) and \
                            any(not b[1] for b in branch[:p]):
                        # an earlier port reads this pixel from the fork first (see above)
                        need = pixel_beats[fork]
                        depth = need + skew + 2
                    elif skew == 0:
                        continue
                    else:
                        depth = skew + 2
                self.bounds[edge] = need
                user = self.user_fifos.get(edge)
                if user is not None:
                    if user < max(need, 2):
                        raise EdgeError(f"fpga: shortcut FIFO into stage {self.names[edge[0]]} "
                                        f"port {edge[1]}: depth {user} < {need} beats (one "
                                        f"frame of the fork); the network would deadlock")
                    depth = user
                fifos[edge] = max(depth, fifos.get(edge, 0))
                self.notes.append(f"{self.names[edge[0]]} port {edge[1]}: shortcut FIFO "
                                  f"{fifos[edge]} beats (deadlock bound {need})")
        return fifos

    def _fork_edge(self, fork: int, j: int, p: int, own: set[int]) -> tuple[int, int]:
        """The edge leaving the fork towards port p of stage j (where its FIFO goes)."""
        if not own:
            return j, p
        first = min(own)
        if fork not in self.sources[first]:
            return j, p  # pragma: no cover - a branch that merges others before the join
        return first, self.sources[first].index(fork)

    def _fork_rate(self, fork: int, frame_beats: int) -> int:
        """Cycles per beat the fork emits at full rate (its producer's compute / beats)."""
        if fork < 0:
            return 1
        return max(1, self.stages[fork].compute_cycles // max(frame_beats, 1))


def tfl_spec(layer: L.Layer, lanes: int, beats: int, pixels: int, channels: int,
             in_values: tuple[Values, ...], out_values: Values) -> TflSpec:
    """The stream-stage spec of a TFLite int8 layer: its per-channel constants by name
    (scalars broadcast to `channels`), output zero point and clamp range."""
    if isinstance(layer, L.TflRequant):
        op, names = "requant", ("factor", "bias", "mult", "shift")
    elif isinstance(layer, L.TflPRelu):
        op, names = "prelu", ("alpha", "mult1", "shift1", "mult2", "shift2")
    else:
        op = "add"
        names = ("mult1", "shift1", "mult_out", "shift_out") + (
            ("mult2", "shift2") if len(in_values) == 2 else ("const",))
    cols = tuple((n, np.broadcast_to(np.asarray(getattr(layer, n), np.int64),
                                     (channels,)).copy()) for n in names)
    return TflSpec(lanes, beats, pixels, channels, op=op, in_values=in_values,
                   out_values=out_values, cols=cols, rounding=getattr(layer, "rounding", ""),
                   zero_point=int(layer.zero_point), lo=int(layer.lo), hi=int(layer.hi))


def _latency(spec) -> int:
    """A stage's pipeline depth (the component is built only to read it, never elaborated)."""
    comp = build_stage(spec)
    comp._MustUse__silence = True  # not an unused design: a throwaway for its latency
    return comp.latency


def _out_pixels(spec) -> int:
    if isinstance(spec, (EngineSpec, PoolSpec)):
        return spec.out_hw[0] * spec.out_hw[1]
    if isinstance(spec, GapSpec):
        return 1
    return spec.pixels


def plan_graph(graph: Graph, pe=None, simd=None, fuse: bool = True,
               fifo_depths: dict[tuple[int, int], int] | None = None,
               narrow: bool = True) -> P.Plan:
    """Hardware plan of a graph with real-valued layers (see the module docstring).

    narrow=False keeps every stream stage at its producer's lanes (no BeatSplit stages)."""
    return _Builder(graph, pe, simd, fuse, fifo_depths, narrow).build()
