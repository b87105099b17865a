"""The theoretical schedule: cycles per stage, latency per inference, initiation interval.

Stages overlap through their ping-pong frame buffers, so in steady state a new inference enters
every II = max over stages of max(compute cycles, frame write cycles) cycles. One inference's
latency is the input write, then per stage: its compute cycles (it starts once its whole input
frame is in) plus its pipeline depth plus the queue/handshake hops to the next buffer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ...hw.specs import (
    AddSpec,
    ConcatSpec,
    EngineSpec,
    GapSpec,
    PoolSpec,
    PReluSpec,
    QuantizeSpec,
    RequantSpec,
    SplitSpec,
    TflSpec,
    ThresholdSpec,
)

STREAM_KINDS = {RequantSpec: "requant", PReluSpec: "prelu", AddSpec: "add",
                ConcatSpec: "concat", GapSpec: "gap", SplitSpec: "split",
                QuantizeSpec: "quantize", TflSpec: "tflite"}

HOP = 3  # cycles from a result's queue write to the next frame buffer reporting it full
OUT_HOP = 2  # ... to the top-level output stream


@dataclass
class StageTiming:
    name: str
    layers: str
    kind: str
    pe: int | None
    simd: int | None
    compute_cycles: int
    write_cycles: int
    depth: int
    macs: int
    bits: str  # "ixb" multi-bit x binary/ternary, "bxb" binary x binary, ...


@dataclass
class Schedule:
    """Cycles of one inference (`cycles_per_inference`, first input beat to last output beat)
    and the steady-state initiation interval, both in clock cycles."""

    cycles_per_inference: int
    initiation_interval: int
    stages: list[StageTiming] = field(default_factory=list)
    input_beats: int = 0
    output_beats: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Schedule:
        stages = [StageTiming(**s) for s in data.get("stages", [])]
        return cls(data["cycles_per_inference"], data["initiation_interval"], stages,
                   data.get("input_beats", 0), data.get("output_beats", 0))


def stage_timing(name: str, layers: str, spec, component) -> StageTiming:
    if isinstance(spec, EngineSpec):
        w = "8" if spec.int8_weights else "t" if spec.ternary_weights else "b"
        a = {"int": "i", "bipolar": "b", "ternary": "t"}[spec.frame.values.kind]
        return StageTiming(name, layers, "conv" if spec.out_hw != (1, 1) or spec.window.padded
                           else "dense", spec.pe, spec.simd, spec.compute_cycles,
                           spec.frame.write_cycles, component.latency, spec.macs, f"{a}x{w}")
    if isinstance(spec, PoolSpec):
        from ...hw.avg_pool import AvgPoolSpec  # hw.avg_pool imports the pool engine

        kind = ("relayout" if spec.window.kernel == (1, 1)
                else "avgpool" if isinstance(spec, AvgPoolSpec) else "maxpool")
        return StageTiming(name, layers, kind, None, spec.frame.lanes, spec.compute_cycles,
                           spec.frame.write_cycles, component.latency, 0, "")
    if isinstance(spec, ThresholdSpec):
        return StageTiming(name, layers, "threshold", None, spec.lanes, spec.compute_cycles,
                           spec.compute_cycles, component.latency, 0, "")
    if type(spec) in STREAM_KINDS:
        return StageTiming(name, layers, STREAM_KINDS[type(spec)], None, spec.lanes,
                           spec.compute_cycles, spec.compute_cycles, component.latency, 0, "")
    raise TypeError(type(spec).__name__)


def schedule(timings: list[StageTiming], input_beats: int, output_beats: int) -> Schedule:
    ii = max(max(t.compute_cycles, t.write_cycles) for t in timings)
    ready = timings[0].write_cycles  # first stage's frame complete
    for k, t in enumerate(timings):
        done = ready + t.compute_cycles + t.depth
        if k + 1 < len(timings):
            nxt = timings[k + 1]
            # the next frame completes with the last result, or when its writer has kept up
            ready = max(done + HOP, ready + t.depth + HOP + nxt.write_cycles)
        else:
            ready = done + OUT_HOP
    return Schedule(cycles_per_inference=ready, initiation_interval=ii, stages=timings,
                    input_beats=input_beats, output_beats=output_beats)


def schedule_graph(timings: list[StageTiming], sources: list[list[int]], frame: list[bool],
                   input_beats: int, output_beats: int) -> Schedule:
    """The schedule of a non-chain network (dag.py), an estimate of the same model as
    `schedule`, tracking each stream's first and last beat: a frame stage (engine, pool)
    starts once its whole input is in and emits over its compute cycles; a stream stage
    (and the global average, which accumulates as beats arrive) emits its first beat a
    pipeline depth after its inputs' first, its last no earlier than its own rate allows
    nor before its inputs' last. II = the slowest stage, as for chains."""
    ii = max(max(t.compute_cycles, t.write_cycles) for t in timings)
    first, last = {-1: 0}, {-1: input_beats}
    for k, t in enumerate(timings):
        f_in = max(first[s] for s in sources[k])
        l_in = max(last[s] for s in sources[k])
        if frame[k] and t.kind != "gap":
            first[k] = l_in + HOP + t.depth
            last[k] = l_in + HOP + t.compute_cycles + t.depth
        else:
            first[k] = f_in + t.depth + HOP
            last[k] = max(l_in + t.depth + HOP, first[k] + t.compute_cycles)
            if t.kind == "gap":
                first[k] = last[k]
    return Schedule(cycles_per_inference=last[len(timings) - 1] + OUT_HOP,
                    initiation_interval=ii, stages=timings, input_beats=input_beats,
                    output_beats=output_beats)
