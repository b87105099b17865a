"""A whole network: stages chained by valid/ready streams, integers out.

Each stage owns its input frame buffer, so the only thing between two stages is a stream of
beats (the producer's PE values per beat); `wiring.connect` checks the widths match. The last
stage's values leave as signed 32-bit lanes: the int32 tensor that feeds the IR's `Scores`.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import LayerEngine
from .pool import MaxPoolEngine
from .specs import EngineSpec, PoolSpec, StageSpec, ThresholdSpec, Values
from .threshold_stage import ThresholdStage

OUT_BITS = 32


def build_stage(spec: StageSpec) -> wiring.Component:
    if isinstance(spec, EngineSpec):
        return LayerEngine(spec)
    if isinstance(spec, PoolSpec):
        return MaxPoolEngine(spec)
    if isinstance(spec, ThresholdSpec):
        return ThresholdStage(spec)
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

    def __init__(self, stages: list[StageSpec], names: list[str]):
        if not stages:
            raise ValueError("a network needs at least one stage")
        self.specs = stages
        self.names = names
        self.stages = [build_stage(s) for s in stages]
        last = stages[-1]
        self.out_lanes = last.out_lanes
        self.out_values = last.out_values
        self.in_width = self.stages[0].i.payload.shape().width
        super().__init__({
            "i": In(stream.Signature(self.in_width)),
            "o": Out(stream.Signature(self.out_lanes * OUT_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        for name, stage in zip(self.names, self.stages, strict=True):
            m.submodules[name] = stage
        wiring.connect(m, wiring.flipped(self.i), self.stages[0].i)
        for a, b in zip(self.stages, self.stages[1:], strict=False):
            wiring.connect(m, a.o, b.i)
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
