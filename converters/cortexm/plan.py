"""Lowered IR graph -> a C execution plan: kernel calls, flash tables, arena buffers.

The planner is the only place that knows both the IR and the C layouts. It walks the layers
in order, gives every tensor a `Storage` (layout.py), picks and parameterises one kernel per
computing layer, re-lays the layer's weights/thresholds to match, and refuses (EdgeError,
one line, with the numbers) whatever the kernels cannot compute exactly in int32.

Nothing taken from the model's names reaches the plan: buffers, tables and kernels get
generated identifiers; comments carry only layer indices, kinds and sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ...errors import EdgeError
from ...ir import layers as L
from ...ir.graph import Graph, TensorInfo
from . import arena, layout
from .geometry import Window
from .kernels_conv import binary_conv, int_conv
from .kernels_copy import copy_int, transpose_int, unpack_bits
from .kernels_dense import binary_dense, int_dense
from .kernels_dense_t import binary_dense_t, transposed_weights
from .kernels_pool import pool_bits, pool_int
from .kernels_threshold import Epilogue, threshold_pack
from .layout import Storage
from .plan_fixed import FixedLayers
from .plan_int8 import Int8Layers
from .plan_tflite import TfliteLayers
from .tir_to_c import Kernel

# Every integer tensor must satisfy |x| <= INT_LIMIT: the multi-bit kernels form 2 * (partial
# sum), thresholds form thr - 1, pools start below every value; all stay inside int32.
INT_LIMIT = 2**30 - 1
IN_BUFFER = "in"
OUT_BUFFER = "out"

TRANSPOSED_MAX_K = 2048  # visit list <= 4.2 KB of stack


def transposed_pays(rows: int, kp: int) -> bool:
    """Whether a binary x binary dense of `rows` outputs over `kp` packed input bits runs in
    fewer instructions with the transposed kernel (kernels_dense_t.py) than row by row.

    Cortex-M4 instruction counts measured with bench/cortex_m.py: row by row ~0.33 per MAC;
    transposed ~4 per input bit to build the visit list, ~9 per visited input (at most kp/2)
    per block of 32 rows, ~25 per row to read the bit-sliced counts. Few rows or short rows
    leave the fixed parts unpaid. Inputs are bounded so the visit list (4 * (kp/2 + 16) bytes
    of stack) stays small next to a microcontroller's RAM.
    """
    if kp > TRANSPOSED_MAX_K:
        return False
    transposed = 4 * kp + ((rows + 31) // 32) * 4.5 * kp + 25 * rows
    return transposed < 0.33 * kp * rows


@dataclass(frozen=True)
class KernelSpec:
    """A kernel to generate: `factory(name, *args)`; equal specs share one C function."""

    kind: str
    factory: Callable[..., Kernel]
    args: tuple


@dataclass(frozen=True)
class Arg:
    """A call argument: a buffer id (`in`, `out` or an arena buffer) or a table name."""

    ref: str
    ctype: str  # element type the kernel takes: "uint32_t", "int32_t", or "in"
    table: bool = False


@dataclass
class Step:
    layer: int
    spec: KernelSpec
    args: list[Arg]
    comment: str


@dataclass
class Table:
    """A constant array in flash."""

    name: str
    ctype: str  # "uint32_t" | "int32_t"
    values: np.ndarray


@dataclass(frozen=True)
class LayerCost:
    layer: int
    kind: str
    macs: int
    binary: bool  # both operands ±1 / ternary (XNOR-popcount); False: multi-bit input


@dataclass
class Plan:
    in_dtype: str
    in_range: tuple[int, int]
    in_size: int
    out_size: int
    steps: list[Step] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=dict)  # arena buffer -> word offset
    aliases: dict[str, str] = field(default_factory=dict)  # buffer -> "out"
    arena_words: int = 0
    costs: list[LayerCost] = field(default_factory=list)

    @property
    def weight_bytes(self) -> int:
        return sum(4 * int(t.values.size) for t in self.tables)


def _where(i: int, layer: L.Layer) -> str:
    return f"layer {i} ({layer.kind})"


def input_dtype(lo: int, hi: int) -> str:
    for dtype in ("int8", "int16"):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return dtype
    raise EdgeError(f"input range [{lo}, {hi}] does not fit int16; the Cortex-M backend "
                    "takes int8 or int16 inputs")


class Planner(FixedLayers, Int8Layers, TfliteLayers):
    """Builds a `Plan` for one graph; see `make_plan`. The real-valued layers (issue #11)
    are planned by the `FixedLayers` mixin (plan_fixed.py), the 8-bit ones by `Int8Layers`
    (plan_int8.py), TFLite's int8 layers by `TfliteLayers` (plan_tflite.py)."""

    def __init__(self, graph: Graph, fuse: bool = True):
        self.graph = graph
        self.fuse = fuse
        self.infos = graph.infos()
        self.env: dict[str, Storage] = {}
        self.steps: list[Step] = []
        self.tables: list[Table] = []
        self.costs: list[LayerCost] = []
        self.n_buffers = 0
        self.out_src: Storage | None = None
        self.out_size = 0
        self.scores_step: Step | None = None
        self.in_dtype = "int16"
        self.in_range = (0, 0)
        self.in_size = 0
        self.scratch: dict[str, int] = {}  # buffers that hold no IR tensor -> words

    # ------------------------------------------------------------------ helpers
    def new_buffer(self) -> str:
        self.n_buffers += 1
        return f"b{self.n_buffers - 1}"

    def table(self, ctype: str, values: np.ndarray) -> Arg:
        name = f"edge_t{len(self.tables)}"
        self.tables.append(Table(name, ctype, np.ascontiguousarray(values)))
        return Arg(name, ctype, table=True)

    @staticmethod
    def arg(st: Storage) -> Arg:
        if st.buffer == IN_BUFFER:
            return Arg(IN_BUFFER, "in")
        return Arg(st.buffer, "uint32_t" if st.is_bits else "int32_t")

    def emit(self, i: int, kind: str, factory, args: tuple, call: list[Arg], comment: str):
        self.steps.append(Step(i, KernelSpec(kind, factory, args), call, comment))

    def check_int(self, i: int, layer: L.Layer, info: TensorInfo, limit: int = INT_LIMIT) -> None:
        if info.max_abs > limit:
            raise EdgeError(f"{_where(i, layer)}: values up to {info.max_abs} need more than "
                            f"31 bits; the Cortex-M kernels compute in int32 (limit {limit})")

    @staticmethod
    def window(src: TensorInfo, out: TensorInfo, kernel, strides, pads, dilations) -> Window:
        c, h, w = src.shape
        return Window(c, h, w, out.shape[0], kernel[0], kernel[1], strides[0], strides[1],
                      pads[0], pads[1], dilations[0], dilations[1], out.shape[1], out.shape[2])

    def fused_threshold(self, layer: L.Layer) -> L.Threshold | None:
        """The Threshold that is the only reader of `layer`'s accumulators, if fusing."""
        readers = self.graph.consumers(layer.output)
        if (self.fuse and len(readers) == 1 and isinstance(readers[0], L.Threshold)
                and layer.output not in self.graph.outputs):
            return readers[0]
        return None

    def compute_output(self, layer: L.Layer, info: TensorInfo, channels: int,
                       pixels: int) -> tuple[Storage, Epilogue | None, list[Arg], str]:
        """Where a Dense/Conv writes: int32 accumulators, or (fused threshold) packed bits.

        Returns (storage, epilogue or None, [table arg] or [], comment suffix).
        """
        thr = self.fused_threshold(layer)
        if thr is None:
            return self.int_output(info), None, [], ""
        tab, flip, zero = layout.threshold_table(thr, info.lo, info.hi)
        dst = Storage(self.new_buffer(), layout.BITS, info.size, channels, pixels, zero)
        self.env[thr.output] = dst
        suffix = f" + threshold (layer {self.graph.layers.index(thr)})" + (
            ", zero ties" if zero else "")
        return dst, Epilogue(channels, flip, zero), [self.table("int32_t", tab)], suffix

    def bits_as_chw(self, i: int, layer: L.Layer, st: Storage, shape: tuple[int, ...]) -> None:
        c, h, w = shape
        if st.channels != c or st.pixels != h * w:
            raise EdgeError(f"{_where(i, layer)}: reads ±1 data laid out as {st.channels} "
                            f"channels x {st.pixels} pixels as a [{c}, {h}, {w}] map; the "
                            "Cortex-M backend cannot re-pack bits between layouts")

    # ------------------------------------------------------------------ layers
    def run(self) -> Plan:
        g = self.graph
        if len(g.inputs) != 1 or len(g.outputs) != 1:
            raise EdgeError(f"the Cortex-M backend takes one input and one output, the model "
                            f"has {len(g.inputs)} and {len(g.outputs)}")
        if not g.lowered:
            raise EdgeError("the Cortex-M backend needs lowered IR (passes.pipeline.lower)")
        handlers = {
            L.Input: self.on_input, L.Dense: self.on_dense, L.Conv2d: self.on_conv,
            L.Threshold: self.on_threshold, L.MaxPool: self.on_pool, L.Flatten: self.on_view,
            L.Reshape: self.on_view, L.Transpose: self.on_transpose, L.Scores: self.on_scores, L.Quantize: self.on_quantize,
            **self.fixed_handlers(), **self.tflite_handlers(),
        }
        for i, layer in enumerate(g.layers):
            handler = handlers.get(type(layer))
            if handler is None:
                raise EdgeError(f"{_where(i, layer)}: the Cortex-M backend has no kernel for "
                                f"{type(layer).__name__}")
            handler(i, layer)
        producer = g.producer(g.outputs[0])
        if not isinstance(producer, L.Scores) or self.out_src is None:
            raise EdgeError("the model output must come from its Scores layer")
        return self.finish()

    def on_input(self, i: int, layer: L.Input) -> None:
        if self.env:
            raise EdgeError(f"{_where(i, layer)}: the Cortex-M backend takes one input")
        lo, hi = int(layer.lo), int(layer.hi)
        self.in_dtype = input_dtype(lo, hi)
        self.in_range = (lo, hi)
        info = self.infos[layer.output]
        self.in_size = info.size
        self.env[layer.output] = Storage(IN_BUFFER, self.in_dtype, info.size)

    def on_view(self, i: int, layer: L.Layer) -> None:
        self.env[layer.output] = self.env[layer.inputs[0]]

    def on_transpose(self, i: int, layer: L.Transpose) -> None:
        """HWC -> CHW into an int32 buffer (what every kernel reads besides the input)."""
        src = self.env[layer.inputs[0]]
        shape = self.infos[layer.inputs[0]].shape
        if tuple(layer.perm) != (2, 0, 1) or len(shape) != 3 or src.is_bits:
            raise EdgeError(f"{_where(i, layer)}: the Cortex-M backend transposes integer "
                            f"[H, W, C] maps to [C, H, W] only (perm {list(layer.perm)} on "
                            f"{'±1 ' if src.is_bits else ''}data of shape {list(shape)})")
        h, w, c = shape
        dst = self.int_output(self.infos[layer.output])
        self.env[layer.output] = dst
        self.emit(i, "transpose", transpose_int, (h, w, c, src.dtype), [self.arg(src),
                                                                       self.arg(dst)],
                  f"layer {i}: transpose [{h}, {w}, {c}] -> [{c}, {h}, {w}]")

    def int_output(self, info: TensorInfo) -> Storage:
        return Storage(self.new_buffer(), "int32", info.size)

    def on_dense(self, i: int, layer: L.Dense) -> None:
        if L.is_int8(layer.weights):
            self.on_int8_dense(i, layer)
            return
        src = self.env[layer.inputs[0]]
        out = self.infos[layer.output]
        self.check_int(i, layer, out)
        values = layout.weight_values(layer.weights)
        rows, k = values.shape
        ternary = bool((values == 0).any())
        wkind = "ternary" if ternary else "binary"
        if src.is_bits and not (src.mask or ternary) and transposed_pays(rows, src.plane_words * 32):
            w = self.table("uint32_t", transposed_weights(
                values, layout.dense_bits_positions(k, src), src.plane_words))
            dst, ep, t, note = self.compute_output(layer, out, rows, 1)
            self.emit(i, "dense_xnor_t" + ("_thr" if ep else ""), binary_dense_t,
                      (rows, src.plane_words, k, ep), [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: dense {k} -> {rows}, packed input, binary weights "
                      f"(transposed){note}")
        elif src.is_bits:
            w = self.table("uint32_t", layout.dense_bits_weights(values, src))
            dst, ep, t, note = self.compute_output(layer, out, rows, 1)
            kind = "dense_xnor" if not (src.mask or ternary) else "dense_masked"
            self.emit(i, kind + ("_thr" if ep else ""), binary_dense,
                      (rows, src.plane_words, k, src.mask, ternary, ep),
                      [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: dense {k} -> {rows}, packed input, {wkind} weights{note}")
        else:
            w = self.table("uint32_t", layout.int_input_weights(values))
            dst, ep, t, note = self.compute_output(layer, out, rows, 1)
            self.emit(i, "dense_int" + ("_thr" if ep else ""), int_dense,
                      (rows, k, src.dtype, ternary, ep), [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: dense {k} -> {rows}, {src.dtype} input, {wkind} weights{note}")
        self.costs.append(LayerCost(i, "dense", rows * k, src.is_bits))
        if ep is None:
            self.env[layer.output] = dst

    def on_conv(self, i: int, layer: L.Conv2d, values: np.ndarray | None = None,
                macs: int | None = None) -> None:
        """`values` (a grouped conv's block-diagonal weights) replace the layer's own, and
        `macs` its MAC count."""
        if values is None and L.is_int8(layer.weights):
            self.on_int8_conv(i, layer)
            return
        src = self.env[layer.inputs[0]]
        info = self.infos[layer.inputs[0]]
        out = self.infos[layer.output]
        self.check_int(i, layer, out)
        g = self.window(info, out, layer.kernel, layer.strides, layer.pads, layer.dilations)
        if values is None:
            values = layout.weight_values(layer.weights)
        ternary = bool((values == 0).any())
        shape = f"{g.c}x{g.h}x{g.w} -> {g.o}x{g.oh}x{g.ow}, kernel {g.kh}x{g.kw}"
        pad_one = bool(getattr(layer, "pad_value", 0)) and g.bounded
        if pad_one and (not src.is_bits or src.mask):
            raise EdgeError(f"{_where(i, layer)}: +1 padding (Larq pad_values=1) is supported "
                            "for ±1 inputs only")
        if src.is_bits:
            self.bits_as_chw(i, layer, src, info.shape)
            w = self.table("uint32_t", layout.conv_bits_weights(values, g.c, g.kh, g.kw))
            dst, ep, t, note = self.compute_output(layer, out, g.o, g.oh * g.ow)
            kind = "conv_xnor" if not (src.mask or ternary) else "conv_masked"
            kind += "_pad1" if pad_one else ""
            self.emit(i, kind + ("_thr" if ep else ""), binary_conv,
                      (g, src.mask, ternary, ep, pad_one),
                      [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: conv {shape}, packed input"
                      f"{', +1 padding' if pad_one else ''}{note}")
        else:
            w = self.table("uint32_t", layout.int_input_weights(values))
            dst, ep, t, note = self.compute_output(layer, out, g.o, g.oh * g.ow)
            self.emit(i, "conv_int" + ("_thr" if ep else ""), int_conv,
                      (g, src.dtype, ternary, ep), [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: conv {shape}, {src.dtype} input{note}")
        if macs is None:
            macs = out.size * values.shape[1]
        self.costs.append(LayerCost(i, layer.kind, macs, src.is_bits))
        if ep is None:
            self.env[layer.output] = dst

    def on_threshold(self, i: int, layer: L.Threshold, limit: int = INT_LIMIT) -> None:
        """`limit`: the largest |input| accepted (the kernel forms s * x and thr - 1 with
        |thr| <= limit + 1, so anything up to 2**31 - 3 is exact)."""
        if layer.output in self.env:
            return  # fused into the Dense/Conv that produces its input
        src = self.env[layer.inputs[0]]
        info = self.infos[layer.inputs[0]]
        if src.is_bits:
            raise EdgeError(f"{_where(i, layer)}: thresholds ±1 data; the Cortex-M backend "
                            "thresholds integer accumulators only")
        self.check_int(i, layer, info, limit)
        channels = info.shape[0]
        pixels = info.size // channels
        tab, flip, zero = layout.threshold_table(layer, info.lo, info.hi)
        t = self.table("int32_t", tab)
        dst = Storage(self.new_buffer(), layout.BITS, info.size, channels, pixels, zero)
        self.emit(i, "threshold", threshold_pack, (channels, pixels, src.dtype, flip, zero),
                  [self.arg(src), t, self.arg(dst)],
                  f"layer {i}: threshold {channels} channels x {pixels} pixels"
                  + (", with zero ties" if zero else ""))
        self.env[layer.output] = dst

    def on_pool(self, i: int, layer: L.MaxPool) -> None:
        src = self.env[layer.inputs[0]]
        info = self.infos[layer.inputs[0]]
        out = self.infos[layer.output]
        kh, kw = layer.kernel
        pt, pl, pb, pr = layer.pads
        if max(pt, pb) >= kh or max(pl, pr) >= kw:
            raise EdgeError(f"{_where(i, layer)}: pads {list(layer.pads)} must be smaller than "
                            f"the kernel {list(layer.kernel)}")
        g = self.window(info, out, layer.kernel, layer.strides, layer.pads, (1, 1))
        shape = f"{g.c}x{g.h}x{g.w} -> {g.c}x{g.oh}x{g.ow}, window {kh}x{kw}"
        if src.is_bits:
            if layer.select_min is not None and np.any(layer.select_min):
                raise EdgeError(f"{_where(i, layer)}: min-pooling ±1 data is not supported")
            self.bits_as_chw(i, layer, src, info.shape)
            dst = Storage(self.new_buffer(), layout.BITS, out.size, g.c, g.oh * g.ow, src.mask)
            self.emit(i, "pool_bits", pool_bits, (g, src.mask), [self.arg(src), self.arg(dst)],
                      f"layer {i}: max-pool {shape}, packed")
        else:
            self.check_int(i, layer, info)
            dst = self.int_output(out)
            sel = layer.select_min is not None and bool(np.any(layer.select_min))
            call = [self.arg(src)]
            if sel:
                signs = np.where(np.asarray(layer.select_min, dtype=bool), -1, 1)
                call.append(self.table("int32_t", signs.astype(np.int32)))
            self.emit(i, "pool_int", pool_int, (g, src.dtype, sel), [*call, self.arg(dst)],
                      f"layer {i}: max-pool {shape}, integers" + (", min on some" if sel else ""))
        self.env[layer.output] = dst

    def on_scores(self, i: int, layer: L.Scores) -> None:
        if self.out_src is not None:
            raise EdgeError(f"{_where(i, layer)}: the Cortex-M backend takes one Scores layer")
        src = self.env[layer.inputs[0]]
        info = self.infos[layer.inputs[0]]
        self.out_src = src
        self.out_size = info.size
        out = Arg(OUT_BUFFER, "int32_t")
        if src.is_bits:
            self.emit(i, "unpack", unpack_bits, (src.channels, src.pixels, src.mask),
                      [self.arg(src), out], f"layer {i}: scores, unpack {info.size} values")
        else:
            self.check_int(i, layer, info)
            self.emit(i, "copy", copy_int, (info.size, src.dtype), [self.arg(src), out],
                      f"layer {i}: scores, copy {info.size} values")
        self.scores_step = self.steps[-1]

    # ------------------------------------------------------------------ buffers
    def finish(self) -> Plan:
        plan = Plan(self.in_dtype, self.in_range, self.in_size, self.out_size)
        steps = self.steps
        src = self.out_src
        # The producer of the scores writes straight into `out` when nothing else reads it.
        # (Every kernel's output is its last argument.)
        copy = self.scores_step
        if src is not None and src.dtype == "int32" and src.buffer != IN_BUFFER:
            readers = [s for s in steps if s is not copy
                       and any(a.ref == src.buffer for a in s.args[:-1])]
            if not readers:
                steps = [s for s in steps if s is not copy]
                plan.aliases[src.buffer] = OUT_BUFFER
        lives: dict[str, list[int]] = {}
        for n, step in enumerate(steps):
            for a in step.args:
                if a.table or a.ref in (IN_BUFFER, OUT_BUFFER) or a.ref in plan.aliases:
                    continue
                lives.setdefault(a.ref, []).append(n)
        words = self.buffer_words()
        live = [arena.Live(b, words[b], min(ns), max(ns)) for b, ns in lives.items()]
        plan.offsets, plan.arena_words = arena.plan(live)
        plan.steps, plan.tables, plan.costs = steps, self.tables, self.costs
        return plan

    def buffer_words(self) -> dict[str, int]:
        words: dict[str, int] = dict(self.scratch)
        for st in self.env.values():
            if st.buffer not in (IN_BUFFER, OUT_BUFFER):
                words[st.buffer] = max(words.get(st.buffer, 0), st.words)
        return words


def make_plan(graph: Graph, fuse: bool = True) -> Plan:
    """Plan the C for a lowered graph; raises EdgeError for anything the backend cannot map.

    fuse: compute a Threshold inside the Dense/Conv kernel that is its only input, so the
    int32 accumulators never reach the arena.
    """
    return Planner(graph, fuse).run()
