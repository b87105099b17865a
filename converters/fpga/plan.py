"""IR graph -> hardware stages: which block runs each layer, its folding and its data layout.

Layouts: every activation tensor is stored pixel-major (H, W, C); `perm[h, w, c]` is the C-order
flat index of that value in the IR tensor. Flatten and Reshape therefore move no data: they
change the logical shape, and the dense layer that reads the result gets its weight columns
permuted to the physical order. A dense layer is a window covering its whole input frame.
A Threshold that reads a dense/conv output is fused into that engine; one after a max-pool on
integer accumulators becomes a stand-alone threshold stage.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import EdgeError
from ...hw.specs import (
    EngineSpec,
    FrameSpec,
    PoolSpec,
    StageSpec,
    ThresholdSpec,
    Values,
    WindowSpec,
    ebr_count,
)
from ...hw.threshold import ThresholdConsts
from ...ir import layers as L
from ...ir.graph import Graph, TensorInfo
from ...passes.fixed_point import refuse_on_target
from .folding import MAX_FRAME_EBR, LayerShape, default_folding

Folding = int | Sequence[int | None] | Mapping[str, int] | None
MAX_FOLD = 4096
MAX_LANES = 16384  # PE * SIMD of one layer (~40k LUT4: beyond any iCE40)
POOL_WORD_BITS = 256


def safe_label(text: str, limit: int = 40) -> str:
    """A model identifier reduced to [A-Za-z0-9_] (safe in any HDL name or comment)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", str(text))[:limit] or "_"


@dataclass
class Layout:
    """Where a tensor's values sit in the stream: frame (H, W, C) and beat packing."""

    shape: tuple[int, ...]  # logical IR shape (no batch)
    frame: tuple[int, int, int]
    perm: np.ndarray  # int64 [H, W, C] -> logical flat index
    values: Values
    lanes: int  # values per beat
    beats: int  # beats per pixel

    @property
    def natural_order(self) -> bool:
        """Whether the stream is the tensor's C order read as [C, H, W] of the frame, the
        host's default (the manifest then leaves the perm out)."""
        h, w, c = self.frame
        return np.array_equal(self.perm.reshape(-1), _natural_perm(c, h, w).reshape(-1))

    def to_json(self, with_perm: bool) -> dict:
        out = {"shape": list(self.shape), "frame": list(self.frame), "lanes": self.lanes,
               "beats_per_pixel": self.beats, "kind": self.values.kind, "lo": self.values.lo,
               "hi": self.values.hi, "value_bits": self.values.bits}
        if with_perm:
            out["perm"] = self.perm.reshape(-1).tolist()
        return out


@dataclass
class Plan:
    stages: list[StageSpec]
    names: list[str]  # submodule names: sanitised, unique
    layers: list[str]  # the IR layer names each stage runs (for reports, never for HDL)
    input: Layout
    output: Layout
    notes: list[str] = field(default_factory=list)
    # non-chain networks (converters/fpga/dag.py): each stage's producers (-1 = the input)
    # and the shortcut FIFO depth on (stage, port) edges; None for chains
    sources: list[list[int]] | None = None
    fifos: dict[tuple[int, int], int] | None = None
    # non-chain networks: per stage, the IR tensor it streams out and its layout (None for a
    # relayout stage, which re-cuts its input's beats); the layer diff's probes read it
    outputs: list[tuple[str, Layout] | None] | None = None


def _natural_perm(c: int, h: int, w: int) -> np.ndarray:
    """perm of a CHW tensor stored HWC."""
    return np.arange(c * h * w, dtype=np.int64).reshape(c, h, w).transpose(1, 2, 0).copy()


def _where(layer: L.Layer) -> str:
    return f"layer '{safe_label(layer.name)}'"


def _chain(graph: Graph) -> list[L.Layer]:
    layers = graph.layers
    if not layers or not isinstance(layers[0], L.Input) or len(graph.inputs) != 1:
        raise EdgeError("fpga: the model must have exactly one input")
    if len(graph.outputs) != 1 or not isinstance(layers[-1], L.Scores):
        raise EdgeError("fpga: the model must end in one Scores output")
    for prev, layer in itertools.pairwise(layers):
        if layer.inputs != [prev.output]:
            raise EdgeError(f"fpga: {_where(layer)} does not read the previous layer's output; "
                            f"only chains of layers are supported")
    return layers


def _drafts(layers: list[L.Layer], fuse: bool = True) -> list[tuple[str, list[L.Layer]]]:
    """Group layers into stages: ("engine", [dense|conv, threshold?]), ("pool", [mp]), ...

    fuse=False (debug builds) gives every threshold its own stage, so the accumulators travel
    on a stream where a probe can see them."""
    out: list[tuple[str, list[L.Layer]]] = []
    k = 1
    while k < len(layers) - 1:
        layer = layers[k]
        if isinstance(layer, (L.Dense, L.Conv2d)):
            nxt = layers[k + 1]
            if fuse and isinstance(nxt, L.Threshold):
                out.append(("engine", [layer, nxt]))
                k += 2
                continue
            out.append(("engine", [layer]))
        elif isinstance(layer, L.MaxPool):
            out.append(("pool", [layer]))
        elif isinstance(layer, L.Threshold):
            out.append(("threshold", [layer]))
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            out.append(("reshape", [layer]))
        else:
            raise EdgeError(f"fpga: {_where(layer)}: {type(layer).__name__} layers have no "
                            f"FPGA implementation")
        k += 1
    if not any(kind == "engine" for kind, _ in out):
        raise EdgeError("fpga: the model has no dense or conv layer to put on the FPGA")
    return out


def _in_frame(info: TensorInfo) -> tuple[tuple[int, int, int], np.ndarray]:
    if len(info.shape) == 3:
        c, h, w = info.shape
        return (h, w, c), _natural_perm(c, h, w)
    return (1, 1, info.size), np.arange(info.size, dtype=np.int64).reshape(1, 1, -1)


def input_frame(graph: Graph, infos: Mapping[str, TensorInfo]) -> tuple[tuple[int, int, int],
                                                                          np.ndarray]:
    """Frame and perm of the model input. An NHWC input [H, W, C] whose readers all turn it
    into the [C, H, W] map (TFLite CNNs: a Reshape when C = 1, a Transpose otherwise) streams
    in its own order, pixel by pixel with the channels of a pixel together, which is the
    frame order of that map: neither view moves data on the FPGA (see `view_perm`)."""
    inp = graph.layers[0]
    info = infos[inp.output]
    users = [layer for layer in graph.layers if inp.output in layer.inputs]
    if len(info.shape) == 3 and users:
        h, w, c = info.shape
        if all(tuple(infos[u.output].shape) == (c, h, w) and (
                (isinstance(u, L.Reshape) and c == 1)
                or (isinstance(u, L.Transpose) and tuple(u.perm) == (2, 0, 1)))
               for u in users):
            return (h, w, c), np.arange(h * w * c, dtype=np.int64).reshape(h, w, c)
    return _in_frame(info)


def view_perm(layer: L.Transpose, src_shape: tuple[int, ...], perm: np.ndarray) -> np.ndarray:
    """The stream perm of a Transpose's output: the same beats carry the same values, now
    named by their index in the transposed tensor (perm[j] = IR index of stream value j)."""
    size = math.prod(src_shape)
    src_at = np.arange(size, dtype=np.int64).reshape(src_shape).transpose(layer.perm).ravel()
    new_index = np.empty(size, dtype=np.int64)
    new_index[src_at] = np.arange(size, dtype=np.int64)
    return new_index[perm]


def _is_natural(shape: tuple[int, ...], frame, perm: np.ndarray) -> bool:
    h, w, c = frame
    if len(shape) == 3:
        return tuple(shape) == (c, h, w) and np.array_equal(perm, _natural_perm(c, h, w))
    if len(shape) == 1:
        return h == w == 1 and np.array_equal(perm.reshape(-1), np.arange(c))
    return False


def _engine_shape(layer: L.Layer, frame, infos, in_kind: str) -> LayerShape:
    h, w, c = frame
    out = infos[layer.output]
    if isinstance(layer, L.Dense):
        taps, pixels = h * w, 1
    else:
        taps, pixels = layer.kernel[0] * layer.kernel[1], out.shape[1] * out.shape[2]
    src = infos[layer.inputs[0]]
    vbits = Values(in_kind, src.lo, src.hi).bits
    return LayerShape(out_channels=layer.weights.rows, in_channels=c, taps=taps,
                      out_pixels=pixels, int_bits=vbits if in_kind == "int" else None,
                      acc_bits=out.bits, value_bits=vbits, in_pixels=h * w,
                      weight_bits=8 if L.is_int8(layer.weights) else 1)


def _user_values(option: Folding, what: str, engines: list[L.Layer]) -> list[int | None]:
    """Per-engine explicit values from an int / sequence / {layer name: value} option."""
    if option is None:
        return [None] * len(engines)
    if isinstance(option, bool):
        raise EdgeError(f"fpga: {what} must be a positive integer, got {option!r}")
    if isinstance(option, int):
        if option < 1 or option > MAX_FOLD:
            raise EdgeError(f"fpga: {what} = {option} is outside 1..{MAX_FOLD}")
        return [option] * len(engines)
    if isinstance(option, Mapping):
        names = {layer.name for layer in engines}
        unknown = sorted(set(map(str, option)) - names)
        if unknown:
            raise EdgeError(f"fpga: {what} names unknown layer(s) "
                            f"{', '.join(safe_label(u) for u in unknown)}; dense/conv layers are "
                            f"{', '.join(safe_label(n.name) for n in engines)}")
        values = [option.get(layer.name) for layer in engines]
    else:
        values = list(option)
        if len(values) != len(engines):
            raise EdgeError(f"fpga: {what} lists {len(values)} values for {len(engines)} "
                            f"dense/conv layers")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1
                              or v > MAX_FOLD):
            raise EdgeError(f"fpga: {what} value {v!r} is not an integer in 1..{MAX_FOLD}")
    return values


def _folding(pe: Folding, simd: Folding, engines: list[L.Layer], shapes: list[LayerShape]
             ) -> tuple[list[tuple[int, int]], list[str]]:
    defaults = default_folding(shapes)
    user_pe = _user_values(pe, "pe", engines)
    user_simd = _user_values(simd, "simd", engines)
    global_pe, global_simd = isinstance(pe, int), isinstance(simd, int)
    chosen, notes = [], []
    for layer, shape, (dpe, dsimd), upe, usimd in zip(engines, shapes, defaults, user_pe,
                                                      user_simd, strict=True):
        p = dpe if upe is None else upe
        s = dsimd if usimd is None else usimd
        label = safe_label(layer.name)
        if p > shape.out_channels:
            if not global_pe:
                raise EdgeError(f"fpga: layer '{label}': PE {p} exceeds its "
                                f"{shape.out_channels} output channels")
            p = shape.out_channels
        if s > shape.in_channels:
            if not global_simd:
                raise EdgeError(f"fpga: layer '{label}': SIMD {s} exceeds the "
                                f"{shape.in_channels} input channels of one pixel it reads")
            s = shape.in_channels
        if p * s > MAX_LANES:
            raise EdgeError(f"fpga: layer '{label}': PE {p} x SIMD {s} = {p * s} parallel "
                            f"lanes exceeds {MAX_LANES}; no iCE40 holds that")
        if shape.out_channels % p:
            notes.append(f"{label}: {shape.out_channels} outputs padded to "
                         f"{math.ceil(shape.out_channels / p) * p} for PE {p}")
        if shape.in_channels % s:
            notes.append(f"{label}: {shape.in_channels} inputs per pixel padded to "
                         f"{math.ceil(shape.in_channels / s) * s} for SIMD {s}")
        chosen.append((p, s))
    return chosen, notes


def _frame_in_bram(f: FrameSpec) -> bool | None:
    """Force block RAM for a frame that needs few of them; else let yosys choose registers.

    Yosys keeps small memories in registers even when a couple of block RAMs would do, which
    costs ~1.6 logic cells per bit; a frame as wide as dozens of block RAMs is better in
    registers.
    """
    depth = 2 * f.pixels * f.words
    return True if ebr_count(f.lanes * f.values.bits, depth) <= MAX_FRAME_EBR else None


def _hw_weights(layer: L.Layer, frame, perm: np.ndarray) -> np.ndarray:
    """IR weights [O, K] -> [O, taps, C] in the engine's read order."""
    w = np.asarray(layer.weights.unpack(), dtype=np.int8)
    h, wd, c = frame
    if isinstance(layer, L.Dense):
        return w[:, perm.reshape(h * wd, c)]
    kh, kw = layer.kernel
    return w.reshape(w.shape[0], c, kh * kw).transpose(0, 2, 1).copy()


def plan(graph: Graph, pe: Folding = None, simd: Folding = None, fuse: bool = True,
         fifo_depths: dict[tuple[int, int], int] | None = None, narrow: bool = True) -> Plan:
    """Map a lowered IR graph onto hardware stages; raises EdgeError when it cannot.

    fuse=False: thresholds as stages of their own (the layer diff's debug design).
    Graphs with real-valued layers, grouped convs or a Transpose (issue #11) go to the DAG planner
    (dag.py); `fifo_depths` overrides its shortcut FIFO depths (refused below the bound),
    narrow=False keeps its multiplier stages at their producers' lanes."""
    if not graph.lowered:
        raise EdgeError("fpga: the graph is not lowered (call passes.pipeline.lower first)")
    refuse_on_target(graph, "fpga")
    if any(isinstance(layer, (*L.REAL_VALUED, L.GroupConv2d, L.Quantize, *L.TFLITE_INT8,
                               L.Transpose))
           for layer in graph.layers):
        from .dag import plan_graph

        return plan_graph(graph, pe, simd, fuse, fifo_depths, narrow)
    layers = _chain(graph)
    infos = graph.infos()
    drafts = _drafts(layers, fuse)

    # geometry walk #1: shapes for folding
    inp = infos[layers[0].output]
    in_frame, in_perm = input_frame(graph, infos)
    frame, perm = in_frame, in_perm
    kind = "int"
    engines, shapes = [], []
    for what, group in drafts:
        head = group[0]
        if what == "engine":
            engines.append(head)
            shapes.append(_engine_shape(head, frame, infos, kind))
        frame, perm, kind = _advance(what, group, frame, perm, infos, kind)
    folding, notes = _folding(pe, simd, engines, shapes)

    # walk #2: build the stage specs
    frame, perm = in_frame, in_perm
    values = Values("int", int(inp.lo), int(inp.hi))
    shape = tuple(inp.shape)
    lanes = beats = None
    stages: list[StageSpec] = []
    names: list[str] = []
    labels: list[str] = []
    first_lanes = None
    engine_k = 0
    for what, group in drafts:
        head = group[0]
        if what == "reshape":
            shape = tuple(infos[head.output].shape)
            continue
        h, w, c = frame
        if what in ("engine", "pool") and isinstance(head, (L.Conv2d, L.MaxPool)) \
                and not _is_natural(shape, frame, perm):
            raise EdgeError(f"fpga: {_where(head)}: its input is a reshaped tensor, which this "
                            f"backend cannot lay out for a conv/pool")
        if what == "engine":
            p, s = folding[engine_k]
            engine_k += 1
            my_lanes = s
        elif what == "pool":
            my_lanes = max(1, min(c, POOL_WORD_BITS // values.bits))
        else:
            my_lanes = lanes if lanes is not None else min(c, 32)
        if lanes is None:  # the first stage reads the model input: beats = its words
            lanes = first_lanes = my_lanes
            beats = math.ceil(c / lanes)
        fspec = FrameSpec(h, w, c, my_lanes, values, lanes, beats)
        fspec = replace(fspec, block_ram=_frame_in_bram(fspec))
        if what == "engine":
            stage, values = _engine(head, group, fspec, p, frame, perm, infos)
        elif what == "pool":
            stage = _pool(head, fspec, infos)
        else:
            if values.kind != "int" or not _is_natural(shape, frame, perm):
                raise EdgeError(f"fpga: {_where(head)}: a stand-alone threshold needs integer "
                                f"per-channel data")
            stage = _threshold(head, fspec, values)
            values = stage.out_values
        stages.append(stage)
        names.append(f"s{len(stages) - 1}_{what}")
        labels.append(", ".join(layer.name for layer in group))
        frame, perm, _ = _advance(what, group, frame, perm, infos, values.kind)
        shape = tuple(infos[group[-1].output].shape)
        lanes, beats = stage.out_lanes, stage.out_beats

    out_info = infos[layers[-1].inputs[0]]
    in_layout = Layout(tuple(inp.shape), in_frame, in_perm,
                       Values("int", int(inp.lo), int(inp.hi)), first_lanes,
                       math.ceil(in_frame[2] / first_lanes))
    out_layout = Layout(tuple(out_info.shape), frame, perm, values, lanes, beats)
    return Plan(stages, names, labels, in_layout, out_layout, notes)


def _advance(what, group, frame, perm, infos, kind):
    """Frame and perm after a stage (or reshape)."""
    head = group[0]
    if what == "reshape":
        return frame, perm, kind
    if what == "engine":
        out = infos[head.output]
        kind = infos[group[-1].output].kind
        if isinstance(head, L.Dense):
            o = out.shape[0]
            return (1, 1, o), np.arange(o, dtype=np.int64).reshape(1, 1, o), kind
        o, oh, ow = out.shape
        return (oh, ow, o), _natural_perm(o, oh, ow), kind
    if what == "pool":
        c, oh, ow = infos[head.output].shape
        return (oh, ow, c), _natural_perm(c, oh, ow), kind
    return frame, perm, infos[head.output].kind


def _engine(head, group, fspec: FrameSpec, pe: int, frame, perm, infos):
    out = infos[head.output]
    weights = _hw_weights(head, frame, perm)
    if isinstance(head, L.Dense):
        window = WindowSpec(kernel=(frame[0], frame[1]))
    else:
        window = WindowSpec(kernel=tuple(head.kernel), strides=tuple(head.strides),
                            pads=tuple(head.pads), dilations=tuple(head.dilations),
                            out_hw=(out.shape[1], out.shape[2]),
                            pad_value=int(head.pad_value) if any(head.pads) else 0)
    int8 = L.is_int8(head.weights)
    if window.pad_value and (int8 or fspec.values.kind != "bipolar"):
        raise EdgeError(f"fpga: {_where(head)}: padding with {head.pad_value} is implemented "
                        f"for binary (±1) data and binary/ternary weights only")
    if int8 and isinstance(head, L.Conv2d) and any(head.pads) and head.pad_value != 0:
        raise EdgeError(f"fpga: {_where(head)}: an 8-bit conv padded with {head.pad_value} "
                        f"(not 0) has no FPGA implementation")
    consts, ternary_out = None, False
    if len(group) == 2:
        thr = group[1]
        consts = ThresholdConsts.build(thr.tau, thr.flip, thr.zero, int(out.lo), int(out.hi))
        ternary_out = infos[thr.output].kind == "ternary"
    spec = EngineSpec(frame=fspec, window=window, pe=pe, weights=weights, acc_lo=int(out.lo),
                      acc_hi=int(out.hi), threshold=consts, ternary_out=ternary_out,
                      int8_weights=int8)
    return spec, spec.out_values


def _pool(head: L.MaxPool, fspec: FrameSpec, infos) -> PoolSpec:
    out = infos[head.output]
    window = WindowSpec(kernel=tuple(head.kernel), strides=tuple(head.strides),
                        pads=tuple(head.pads), out_hw=(out.shape[1], out.shape[2]))
    sel = None if head.select_min is None else np.asarray(head.select_min, dtype=bool)
    return PoolSpec(frame=fspec, window=window, select_min=sel)


def _threshold(head: L.Threshold, fspec: FrameSpec, values: Values) -> ThresholdSpec:
    consts = ThresholdConsts.build(head.tau, head.flip, head.zero, values.lo, values.hi)
    return ThresholdSpec(lanes=fspec.producer_lanes, beats=fspec.producer_beats,
                         pixels=fspec.pixels, channels=fspec.channels, in_values=values,
                         consts=consts, ternary_out=bool(np.any(head.zero)))
