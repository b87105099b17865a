"""A whole network: stages chained by valid/ready streams, integers out.

Each stage owns its input frame buffer, so the only thing between two stages is a stream of
beats (the producer's PE values per beat); `wiring.connect` checks the widths match. The last
stage's values leave as signed 32-bit lanes: the int32 tensor that feeds the IR's `Scores`.

Non-chain networks (residual shortcuts, concatenations: issue #11) pass `sources`: for each
stage, the producers of its input ports in order (-1 = the network input). A stream read by
several ports goes through a `Fork`; `fifos` puts a `StreamFifo` of the planned depth on a
given (stage, port) edge (the shortcut buffer, sized in converters/fpga/dag.py).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .avg_pool import AvgPoolEngine, AvgPoolSpec
from .engine import LayerEngine
from .fixed_stages import (
    AddStage,
    BeatSplit,
    ConcatStage,
    Fork,
    GapStage,
    PReluStage,
    QuantizeStage,
    RequantStage,
    StreamFifo,
)
from .pool import MaxPoolEngine
from .specs import (
    AddSpec,
    ConcatSpec,
    EngineSpec,
    GapSpec,
    PoolSpec,
    PReluSpec,
    QuantizeSpec,
    RequantSpec,
    SplitSpec,
    StageSpec,
    TflSpec,
    ThresholdSpec,
    Values,
)
from .tflite_stages import TflStage
from .threshold_stage import ThresholdStage

OUT_BITS = 32


def build_stage(spec: StageSpec) -> wiring.Component:
    if isinstance(spec, EngineSpec):
        return LayerEngine(spec)
    if isinstance(spec, AvgPoolSpec):  # a PoolSpec too: first
        return AvgPoolEngine(spec)
    if isinstance(spec, PoolSpec):
        return MaxPoolEngine(spec)
    if isinstance(spec, ThresholdSpec):
        return ThresholdStage(spec)
    if isinstance(spec, RequantSpec):
        return RequantStage(spec)
    if isinstance(spec, PReluSpec):
        return PReluStage(spec)
    if isinstance(spec, GapSpec):
        return GapStage(spec)
    if isinstance(spec, AddSpec):
        return AddStage(spec)
    if isinstance(spec, ConcatSpec):
        return ConcatStage(spec)
    if isinstance(spec, SplitSpec):
        return BeatSplit(spec)
    if isinstance(spec, QuantizeSpec):
        return QuantizeStage(spec)
    if isinstance(spec, TflSpec):
        return TflStage(spec)
    raise TypeError(f"unknown stage spec {type(spec).__name__}")


def decode_lane(code, values: Values):
    """A value code as an integer expression (bipolar 1 -> +1, 0 -> -1; ternary code - 1)."""
    if values.kind == "bipolar":
        return Mux(code[0], 1, -1)
    if values.kind == "ternary":
        return Cat(code, 0).as_signed() - 1
    return code.as_signed() if values.signed else code


class Network(wiring.Component):
    """Stages in order; `names[k]` names stage k's submodule (already sanitised)."""

    def __init__(self, stages: list[StageSpec], names: list[str],
                 sources: list[list[int]] | None = None,
                 fifos: dict[tuple[int, int], int] | None = None):
        if not stages:
            raise ValueError("a network needs at least one stage")
        self.specs = stages
        self.names = names
        self.sources = sources
        self.fifos = dict(fifos or {})
        self.stages = [build_stage(s) for s in stages]
        last = stages[-1]
        self.out_lanes = last.out_lanes
        self.out_values = last.out_values
        if sources is None:
            self.in_width = self.stages[0].i.payload.shape().width
        else:
            port = next(p for k, src in enumerate(sources) for p, s in
                        zip(input_ports(self.stages[k]), src, strict=True) if s == -1)
            self.in_width = port.payload.shape().width
        super().__init__({
            "i": In(stream.Signature(self.in_width)),
            "o": Out(stream.Signature(self.out_lanes * OUT_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        for name, stage in zip(self.names, self.stages, strict=True):
            m.submodules[name] = stage
        if self.sources is None:
            wiring.connect(m, wiring.flipped(self.i), self.stages[0].i)
            for a, b in zip(self.stages, self.stages[1:], strict=False):
                wiring.connect(m, a.o, b.i)
        else:
            self._wire(m)
        last = self.stages[-1].o
        vb = self.out_values.bits
        lanes = []
        for k in range(self.out_lanes):
            lane = Signal(signed(OUT_BITS), name=f"out{k}")
            m.d.comb += lane.eq(decode_lane(last.payload[k * vb:(k + 1) * vb], self.out_values))
            lanes.append(lane)
        m.d.comb += [
            self.o.valid.eq(last.valid),
            last.ready.eq(self.o.ready),
            self.o.payload.eq(Cat(*lanes)),
        ]
        return m

    def _wire(self, m: Module) -> None:
        """Connect every producer to its consumer ports (forks and shortcut FIFOs between)."""
        readers: dict[int, list[tuple[int, int]]] = {}
        for k, src in enumerate(self.sources):
            for p, s in enumerate(src):
                readers.setdefault(s, []).append((k, p))
        for s in sorted(readers):
            out = wiring.flipped(self.i) if s == -1 else self.stages[s].o
            ports = readers[s]
            if len(ports) > 1:
                fork = Fork(out.payload.shape().width, len(ports))
                m.submodules[f"fork{s + 1}"] = fork
                wiring.connect(m, out, fork.i)
                outs = fork.outputs
            else:
                outs = [out]
            for o, (k, p) in zip(outs, ports, strict=True):
                dst = input_ports(self.stages[k])[p]
                depth = self.fifos.get((k, p))
                if depth:
                    fifo = StreamFifo(o.payload.shape().width, depth)
                    m.submodules[f"fifo_{self.names[k]}_{p}"] = fifo
                    wiring.connect(m, o, fifo.i)
                    o = fifo.o
                wiring.connect(m, o, dst)


def input_ports(stage) -> list:
    """A stage's input streams in port order (`i`, or `i0`, `i1`, ... for joins)."""
    return stage.inputs if hasattr(stage, "inputs") else [stage.i]
