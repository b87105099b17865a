"""Lower real-valued tensors to fixed point (rules: sdk/fixedpoint.py).

Runs after FoldThresholds and FoldScores, so what is left are the float ops whose result stays
real-valued (a binary conv's BatchNorm feeding a residual add, RPReLU's shifts...) and signs of
real-valued tensors (ReActNet's RSign, the sign of a residual sum). In graph order, each layer
gets its static worst-case bound and binary point `frac`, and its integer parameters:

- `Affine` -> `Requant` (keeps the float ops for the faithful mode, adds mult/add/shift);
- `Binarize` of real-valued data (after an optional affine read by it alone) -> `FixedThreshold`;
- `AddTensors`, `Concat` get their output frac; `PRelu` its quantised slopes.

- `AvgPool` gets its output frac (the input's for fixed-point data, finer for integers).

Layers that keep the input's frac (PRelu, GlobalAvgPool, MaxPool, Flatten) need nothing more.
"""

from __future__ import annotations

import math

import numpy as np

from .. import fixedpoint as fx
from ..errors import EdgeError
from ..ir import layers as L
from ..ir.graph import TensorInfo
from ..thresholds import solve_threshold
from .affine_forms import channel_forms
from .base import Pass, sole_consumer


def real_bound(info: TensorInfo) -> float:
    """Largest |real value| of a tensor (integers: frac 0)."""
    return info.max_abs * 2.0 ** -(info.frac if info.kind == "fixed" else 0)


def _frac_in(info: TensorInfo) -> int:
    return info.frac if info.kind == "fixed" else 0


def _where(layer: L.Layer) -> str:
    return f"layer '{layer.name}'" + (f" (from '{layer.source}')" if layer.source else "")


class FoldFloatSigns(Pass):
    """Binarize of a real-valued tensor -> FixedThreshold (its tau comes in FixedPoint)."""

    def run(self, graph) -> bool:
        changed = False
        for layer in list(graph.layers):
            if not isinstance(layer, L.Binarize):
                continue
            infos = graph.infos()
            src, ops, pre = layer.inputs[0], [], ""
            producer = _producer(graph, src)
            source = layer.source
            if isinstance(producer, L.Affine):
                if infos[producer.inputs[0]].kind != "float":
                    continue  # a sign of integers: FoldThresholds folds it, affine and all
                if sole_consumer(graph, src) is layer:
                    src, ops, pre = producer.inputs[0], producer.ops, producer.source
                    source = ", ".join(s for s in (producer.source, layer.source) if s)
                    graph.layers.remove(producer)
            if infos[src].kind != "float":
                continue  # FoldThresholds handles signs of integers
            if _onto_accumulator(graph, layer, src, ops, pre, infos):
                changed = True
                continue
            new = L.FixedThreshold(layer.name, [src], layer.output, source, ops=list(ops),
                                   mode=layer.mode)
            graph.layers[graph.layers.index(layer)] = new
            changed = True
        return changed


def _onto_accumulator(graph, layer: L.Binarize, src: str, ops: list, pre: str, infos) -> bool:
    """Sign of an affine result that is also used elsewhere (ReActNet's RSign on a BN output
    that also feeds the shortcut): give the sign its own copy of the affine, composed with
    its ops, on the integer accumulator, so FoldThresholds makes it an exact Threshold rather
    than a compare of rounded fixed-point values."""
    shared = _producer(graph, src)
    if not isinstance(shared, L.Affine) or infos[shared.inputs[0]].kind == "float":
        return False
    composed = list(shared.ops) + list(ops)
    try:
        channel_forms(composed, infos[src].shape[0])
    except ValueError:
        return False
    where = ", ".join(s for s in (shared.source, pre) if s)
    affine = L.Affine(f"{layer.name}_ops", [shared.inputs[0]], f"{layer.name}_ops", where,
                      ops=composed)
    graph.layers.insert(graph.layers.index(layer), affine)
    layer.inputs = [affine.output]
    return True


def _producer(graph, tensor: str):
    try:
        return graph.producer(tensor)
    except KeyError:
        return None


class FixedPoint(Pass):
    def run(self, graph) -> bool:
        changed = False
        for i, layer in enumerate(list(graph.layers)):
            infos = graph.infos()
            ins = [infos[t] for t in layer.inputs]
            if any(x.kind == "float" for x in ins) and not isinstance(
                    layer, (L.Affine, *L.REAL_VALUED, L.MaxPool, L.Flatten, L.Reshape, L.Transpose,
                            L.Scores, L.Quantize)):
                raise EdgeError(f"{_where(layer)}: cannot take real-valued data")
            if isinstance(layer, L.Affine):
                graph.layers[i] = _requant(layer, ins[0])
            elif isinstance(layer, L.AddTensors):
                layer.frac = fx.frac_for(sum(real_bound(x) for x in ins))
            elif isinstance(layer, L.Concat):
                if infos[layer.output].kind == "float":
                    layer.frac = fx.frac_for(max(real_bound(x) for x in ins))
            elif isinstance(layer, L.AvgPool):
                layer.frac = fx.avg_pool_frac(real_bound(ins[0]), _frac_in(ins[0]))
            elif isinstance(layer, L.PRelu):
                layer.slope_q = fx.prelu_params(np.asarray(layer.slope, np.float64))
            elif isinstance(layer, L.FixedThreshold):
                _solve(layer, ins[0])
            elif isinstance(layer, L.Quantize):
                try:
                    layer.mult, layer.shift = fx.quantize_params(layer.scale, _frac_in(ins[0]))
                except ValueError as exc:
                    raise EdgeError(f"{_where(layer)}: {exc}") from None
            else:
                continue
            out = graph.infos()[graph.layers[i].output]
            if out.kind == "fixed" and out.max_abs > fx.INT32_MAX:
                raise EdgeError(f"{_where(layer)}: fixed-point values need more than int32 "
                                f"(bound {out.max_abs})")
            changed = True
        return changed


def _requant(layer: L.Affine, x: TensorInfo) -> L.Requant:
    if any(isinstance(op, L.Softmax) for op in layer.ops):
        raise EdgeError(f"{_where(layer)}: Softmax inside the model is not supported")
    channels = x.shape[0]
    try:
        forms = channel_forms(layer.ops, channels)
    except ValueError as exc:
        raise EdgeError(f"{_where(layer)}: {exc}") from None
    # g(v) = (p v + q) / sqrt(s) + r  ->  scale * v + bias (float64 from the exact rationals)
    scale = np.array([float(f.p) / math.sqrt(f.s) for f in forms])
    bias = np.array([float(f.q) / math.sqrt(f.s) + float(f.r) for f in forms])
    bound = float(np.max(np.abs(scale) * real_bound(x) + np.abs(bias), initial=0.0))
    frac = fx.frac_for(bound)
    mult, add, shift = fx.affine_params(scale, bias, _frac_in(x), frac)
    if int(np.max(np.abs(mult), initial=0)) > fx.INT32_MAX:
        raise EdgeError(f"{_where(layer)}: a multiplier does not fit int32")
    worst = max((x.max_abs * abs(m) + abs(r) for m, r in zip(mult.tolist(), add.tolist())),
                default=0)
    if worst > fx.INT64_MAX:
        raise EdgeError(f"{_where(layer)}: the affine product does not fit int64")
    return L.Requant(layer.name, layer.inputs, layer.output, layer.source, ops=layer.ops,
                     mult=mult, add=add, shift=shift, frac=frac)


def _solve(layer: L.FixedThreshold, x: TensorInfo) -> None:
    channels = x.shape[0]
    frac = _frac_in(x)
    to_real = L.Mul(np.full(channels, 2.0 ** -frac, dtype=np.float32))  # exact: a power of 2
    try:
        forms = channel_forms([to_real, *layer.ops], channels)
        solved = [solve_threshold(f, layer.mode, x.lo, x.hi) for f in forms]
    except ValueError as exc:
        raise EdgeError(f"{_where(layer)}: {exc}") from None
    layer.tau = np.array([s.tau for s in solved], dtype=np.int64)
    layer.flip = np.array([s.flip for s in solved], dtype=bool)
    layer.zero = np.array([s.zero for s in solved], dtype=bool)


# Which targets run what (issue #11). The Cortex-M backend's planner refuses on its own; the
# FPGA planner calls refuse_on_target first. A new target starts with none of these.
SUPPORTED_ON = {"cortex-m", "fpga"}  # every real-valued layer and grouped convs
INT8_ON = {"cortex-m", "fpga"}  # 8-bit conv/dense and Quantize kernels
TFLITE_INT8_ON = {"cortex-m", "fpga"}  # TflRequant / TflAdd / TflPRelu (sdk/tflite_int8.py)


def tflite_int8_targets() -> set[str]:
    return set(TFLITE_INT8_ON)


def refuse_on_target(graph, target: str) -> None:
    """Backends call this first: refuses real-valued layers on targets without kernels yet.

    By layer type only (every fixed-point tensor comes from one of these layers), so that a
    backend's own checks still report graphs that are malformed in other ways."""
    for layer in graph.layers:
        if isinstance(layer, L.TFLITE_INT8) and target not in tflite_int8_targets():
            raise EdgeError(f"{_where(layer)}: TFLite int8 {type(layer).__name__} is not "
                            f"supported by the {target} backend yet")
    if target not in INT8_ON:
        for layer in graph.layers:
            if isinstance(layer, L.Quantize) or (
                    isinstance(layer, (L.Dense, L.Conv2d)) and L.is_int8(layer.weights)):
                what = "Quantize" if isinstance(layer, L.Quantize) else \
                    f"8-bit {type(layer).__name__}"
                raise EdgeError(f"{_where(layer)}: {what} (8-bit weights or activations) is "
                                f"not supported by the {target} backend yet")
    if target in SUPPORTED_ON:
        return
    for layer in graph.layers:
        if isinstance(layer, (*L.REAL_VALUED, L.GroupConv2d)):
            raise EdgeError(f"{_where(layer)}: {type(layer).__name__} is not supported by the "
                            f"{target} backend yet")


def has_real_valued(graph) -> bool:
    """Whether `run` and `run --fixed-point` may differ: real-valued layers, Quantize, or a
    float layer quantised by calibration (Int8Weights.float_values)."""
    return any(isinstance(layer, (*L.REAL_VALUED, L.Quantize))
               or getattr(getattr(layer, "weights", None), "float_values", None) is not None
               for layer in graph.layers)
