"""The IR graph container and the per-tensor facts (shape, value kind, range) derived from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import fixedpoint as fx
from ..errors import EdgeError
from . import layers as L


@dataclass(frozen=True)
class TensorInfo:
    """What flows on one edge, without the batch dimension.

    kind: "int" (multi-bit integers, e.g. an input or an accumulator), "bipolar" (exactly ±1),
    "ternary" ({-1, 0, +1}: ±1 data that may hold Sign(0) = 0), "float" (source form only),
    "fixed" (real values as int32 q with real = q * 2**-frac, see sdk/fixedpoint.py).
    lo/hi bound the integer values (inclusive), from which accumulator widths follow.
    """

    shape: tuple[int, ...]
    kind: str
    lo: int
    hi: int
    frac: int = 0

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def max_abs(self) -> int:
        return max(abs(self.lo), abs(self.hi))

    @property
    def bits(self) -> int:
        """Signed bits that hold every value: ceil(log2(max|v| + 1)) + 1."""
        return max(1, math.ceil(math.log2(self.max_abs + 1))) + 1


@dataclass
class Graph:
    name: str
    layers: list[L.Layer]
    inputs: list[str]
    outputs: list[str]
    source: dict = field(default_factory=dict)

    @property
    def lowered(self) -> bool:
        return not any(isinstance(layer, L.SOURCE_ONLY) for layer in self.layers)

    def producer(self, tensor: str) -> L.Layer:
        for layer in self.layers:
            if layer.output == tensor:
                return layer
        raise KeyError(tensor)

    def consumers(self, tensor: str) -> list[L.Layer]:
        return [layer for layer in self.layers if tensor in layer.inputs]

    def infos(self) -> dict[str, TensorInfo]:
        """Shapes and ranges of every tensor; raises EdgeError on inconsistent shapes."""
        out: dict[str, TensorInfo] = {}
        for layer in self.layers:
            ins = []
            for name in layer.inputs:
                if name not in out:
                    raise EdgeError(f"layer '{layer.name}': input tensor '{name}' is not defined")
                ins.append(out[name])
            out[layer.output] = infer(layer, ins)
        return out


def conv_out(size: int, k: int, s: int, p0: int, p1: int, d: int = 1) -> int:
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def _where(layer: L.Layer) -> str:
    src = f" (from '{layer.source}')" if layer.source else ""
    return f"layer '{layer.name}'{src}"


def infer(layer: L.Layer, ins: list[TensorInfo]) -> TensorInfo:
    """Output facts of one layer, checking that its input fits."""
    if isinstance(layer, L.Input):
        return TensorInfo(tuple(layer.shape), "int", int(layer.lo), int(layer.hi))
    if isinstance(layer, L.REAL_VALUED):
        return _infer_real(layer, ins)
    if isinstance(layer, L.Quantize):
        return _infer_quantize(layer, ins)
    if isinstance(layer, L.TFLITE_INT8):
        from .. import tflite_int8

        return tflite_int8.infer(layer, ins)
    (x,) = ins
    if x.kind in ("float", "fixed") and not isinstance(
            layer, (L.Affine, L.Binarize, L.MaxPool, L.Scores, L.Flatten, L.Reshape,
            L.Transpose)):
        raise EdgeError(f"{_where(layer)}: needs integer or ±1 data, got real-valued data")
    if isinstance(layer, L.GroupConv2d):
        return _infer_group_conv(layer, x)
    if isinstance(layer, L.Dense):
        k = layer.weights.k
        if len(x.shape) != 1 or x.shape[0] != k:
            raise EdgeError(
                f"{_where(layer)}: shape mismatch: weights take K={k} inputs, input is {x.shape}"
            )
        m = _acc_bound(layer, x)
        return TensorInfo((layer.weights.rows,), "int", -m, m)
    if isinstance(layer, L.Conv2d):
        if len(x.shape) != 3 or x.shape[0] != layer.in_channels:
            raise EdgeError(
                f"{_where(layer)}: shape mismatch: conv takes {layer.in_channels} input "
                f"channels (CHW), input is {x.shape}"
            )
        kh, kw = layer.kernel
        if layer.weights.k != layer.in_channels * kh * kw:
            raise EdgeError(f"{_where(layer)}: weight size does not match its kernel")
        oh = conv_out(x.shape[1], kh, layer.strides[0], layer.pads[0], layer.pads[2],
                      layer.dilations[0])
        ow = conv_out(x.shape[2], kw, layer.strides[1], layer.pads[1], layer.pads[3],
                      layer.dilations[1])
        if oh < 1 or ow < 1:
            raise EdgeError(f"{_where(layer)}: shape mismatch: conv output would be empty")
        m = _acc_bound(layer, x)
        return TensorInfo((layer.weights.rows, oh, ow), "int", -m, m)
    if isinstance(layer, L.Affine):
        for op in layer.ops:
            if not isinstance(op, L.Softmax) and L.channels_of(op) != x.shape[0]:
                raise EdgeError(
                    f"{_where(layer)}: shape mismatch: {L.channels_of(op)} per-channel "
                    f"parameters for {x.shape[0]} channels"
                )
        return TensorInfo(x.shape, "float", x.lo, x.hi)
    if isinstance(layer, L.Binarize):
        return TensorInfo(x.shape, "ternary" if layer.mode == "sign" else "bipolar", -1, 1)
    if isinstance(layer, L.Threshold):
        if layer.tau.shape[0] != x.shape[0]:
            raise EdgeError(f"{_where(layer)}: shape mismatch: thresholds vs channels")
        kind = "ternary" if bool(np.any(layer.zero)) else "bipolar"
        return TensorInfo(x.shape, kind, -1, 1)
    if isinstance(layer, L.MaxPool):
        if len(x.shape) != 3:
            raise EdgeError(f"{_where(layer)}: max-pool needs CHW data, got {x.shape}")
        oh = conv_out(x.shape[1], layer.kernel[0], layer.strides[0], layer.pads[0], layer.pads[2])
        ow = conv_out(x.shape[2], layer.kernel[1], layer.strides[1], layer.pads[1], layer.pads[3])
        if oh < 1 or ow < 1:
            raise EdgeError(f"{_where(layer)}: shape mismatch: pool output would be empty")
        return TensorInfo((x.shape[0], oh, ow), x.kind, x.lo, x.hi, x.frac)
    if isinstance(layer, L.Flatten):
        return TensorInfo((x.size,), x.kind, x.lo, x.hi, x.frac)
    if isinstance(layer, L.Reshape):
        if math.prod(layer.shape) != x.size:
            raise EdgeError(f"{_where(layer)}: shape mismatch: cannot reshape {x.shape} to "
                            f"{layer.shape}")
        return TensorInfo(tuple(layer.shape), x.kind, x.lo, x.hi, x.frac)
    if isinstance(layer, L.Transpose):
        if sorted(layer.perm) != list(range(len(x.shape))):
            raise EdgeError(f"{_where(layer)}: perm {list(layer.perm)} is not a permutation of "
                            f"the {len(x.shape)} dims of {x.shape}")
        return TensorInfo(tuple(x.shape[p] for p in layer.perm), x.kind, x.lo, x.hi, x.frac)
    if isinstance(layer, L.Scores):
        if x.kind == "fixed":
            return TensorInfo(x.shape, "float", x.lo, x.hi, x.frac)
        return TensorInfo(x.shape, "float" if layer.ops else x.kind, x.lo, x.hi)
    raise EdgeError(f"{_where(layer)}: unknown layer type {type(layer).__name__}")


def _acc_bound(layer: L.Layer, x: TensorInfo) -> int:
    """Largest |accumulator|: K * max|x| for ±1/0 weights, max row sum |w| * max|x| for
    8-bit weights (their codes reach -128)."""
    weights = layer.weights
    if L.is_int8(weights):
        v = np.asarray(weights.values)
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.integer) or (v.size and (
                int(v.min()) < L.INT8_MIN or int(v.max()) > L.INT8_MAX)):
            raise EdgeError(f"{_where(layer)}: 8-bit weights must be integers in "
                            f"[{L.INT8_MIN}, {L.INT8_MAX}]")
        return weights.row_l1 * x.max_abs
    return weights.k * x.max_abs


def _infer_quantize(layer: L.Quantize, ins: list[TensorInfo]) -> TensorInfo:
    """Quantize takes real-valued (or integer) data and gives q - zero_point in
    [lo - zp, hi - zp], whatever the mode."""
    if len(ins) != 1:
        raise EdgeError(f"{_where(layer)}: takes one input")
    (x,) = ins
    if x.kind in ("bipolar", "ternary"):
        raise EdgeError(f"{_where(layer)}: quantises real-valued data, got ±1 data")
    if not (np.isfinite(layer.scale) and layer.scale > 0):
        raise EdgeError(f"{_where(layer)}: scale {layer.scale!r} must be positive and finite")
    if layer.lo > layer.hi or not layer.lo <= layer.zero_point <= layer.hi:
        raise EdgeError(f"{_where(layer)}: bad integer range [{layer.lo}, {layer.hi}] or zero "
                        f"point {layer.zero_point}")
    zp = int(layer.zero_point)
    return TensorInfo(x.shape, "int", int(layer.lo) - zp, int(layer.hi) - zp)


def _infer_group_conv(layer: L.GroupConv2d, x: TensorInfo) -> TensorInfo:
    g, c = layer.groups, layer.in_channels
    if len(x.shape) != 3 or x.shape[0] != c:
        raise EdgeError(f"{_where(layer)}: shape mismatch: conv takes {c} input channels (CHW), "
                        f"input is {x.shape}")
    kh, kw = layer.kernel
    if g < 1 or c % g or layer.weights.rows % g or layer.weights.k != c // g * kh * kw:
        raise EdgeError(f"{_where(layer)}: weight size does not match its kernel and "
                        f"{g} groups")
    oh = conv_out(x.shape[1], kh, layer.strides[0], layer.pads[0], layer.pads[2],
                  layer.dilations[0])
    ow = conv_out(x.shape[2], kw, layer.strides[1], layer.pads[1], layer.pads[3],
                  layer.dilations[1])
    if oh < 1 or ow < 1:
        raise EdgeError(f"{_where(layer)}: shape mismatch: conv output would be empty")
    m = _acc_bound(layer, x)
    return TensorInfo((layer.weights.rows, oh, ow), "int", -m, m)


def _avg_pool_shape(layer: L.AvgPool, x: TensorInfo) -> tuple[int, int, int]:
    """[C, OH, OW] of a windowed average pool, checking its window (pads < kernel keeps
    every window's divisor >= 1)."""
    if len(x.shape) != 3:
        raise EdgeError(f"{_where(layer)}: average pool needs CHW data, got {x.shape}")
    kh, kw = layer.kernel
    t, lft, b, r = layer.pads
    if min(kh, kw, *layer.strides) < 1 or min(layer.pads) < 0:
        raise EdgeError(f"{_where(layer)}: bad window: kernel {list(layer.kernel)}, strides "
                        f"{list(layer.strides)}, pads {list(layer.pads)}")
    if max(t, b) >= kh or max(lft, r) >= kw:
        raise EdgeError(f"{_where(layer)}: pads {list(layer.pads)} must be smaller than the "
                        f"kernel {list(layer.kernel)} (a window of padding only has no mean)")
    if layer.float_kernel not in ("mlas", "rows"):
        raise EdgeError(f"{_where(layer)}: unknown float kernel {layer.float_kernel!r}")
    oh = conv_out(x.shape[1], kh, layer.strides[0], t, b)
    ow = conv_out(x.shape[2], kw, layer.strides[1], lft, r)
    if oh < 1 or ow < 1:
        raise EdgeError(f"{_where(layer)}: shape mismatch: pool output would be empty")
    return (x.shape[0], oh, ow)


def _fixed(x: TensorInfo) -> tuple[int, int]:
    """(max |q|, frac) of data entering a fixed-point layer: integers have frac 0."""
    if x.kind == "fixed":
        return x.max_abs, x.frac
    if x.kind in ("int", "bipolar", "ternary"):
        return x.max_abs, 0
    raise EdgeError(f"unexpected {x.kind} data")  # pragma: no cover - float handled by callers


def _infer_real(layer: L.Layer, ins: list[TensorInfo]) -> TensorInfo:
    """Real-valued layers: "float" in source form (or on float data), "fixed" once lowered."""
    x = ins[0]
    if isinstance(layer, L.AddTensors):
        if len(ins) != 2 or ins[0].shape != ins[1].shape:
            raise EdgeError(f"{_where(layer)}: shape mismatch: adds "
                            f"{' and '.join(str(list(i.shape)) for i in ins)}")
    elif isinstance(layer, L.Concat):
        if len({i.shape[1:] for i in ins}) != 1 or any(not i.shape for i in ins):
            raise EdgeError(f"{_where(layer)}: shape mismatch: concatenates "
                            f"{', '.join(str(list(i.shape)) for i in ins)} on the channels")
        shape = (sum(i.shape[0] for i in ins),) + x.shape[1:]
        kinds = {i.kind for i in ins}
        if kinds <= {"bipolar", "ternary"}:
            return TensorInfo(shape, "ternary" if "ternary" in kinds else "bipolar", -1, 1)
        if kinds == {"int"}:
            return TensorInfo(shape, "int", min(i.lo for i in ins), max(i.hi for i in ins))
    elif len(ins) != 1:
        raise EdgeError(f"{_where(layer)}: takes one input")  # pragma: no cover
    channels = x.shape[0] if x.shape else 0
    if isinstance(layer, L.Requant):
        for op in layer.ops:
            if not isinstance(op, L.Softmax) and L.channels_of(op) != channels:
                raise EdgeError(f"{_where(layer)}: shape mismatch: {L.channels_of(op)} "
                                f"per-channel parameters for {channels} channels")
    if isinstance(layer, L.PRelu) and np.asarray(layer.slope).shape != (channels,):
        raise EdgeError(f"{_where(layer)}: shape mismatch: {np.asarray(layer.slope).size} "
                        f"slopes for {channels} channels")
    if isinstance(layer, L.FixedThreshold):
        if layer.tau is None:
            return TensorInfo(x.shape, "ternary" if layer.mode == "sign" else "bipolar", -1, 1)
        kind = "ternary" if bool(np.any(layer.zero)) else "bipolar"
        return TensorInfo(x.shape, kind, -1, 1)
    shape = x.shape
    if isinstance(layer, L.Concat):
        shape = (sum(i.shape[0] for i in ins),) + x.shape[1:]
    if isinstance(layer, L.GlobalAvgPool):
        if len(x.shape) != 3:
            raise EdgeError(f"{_where(layer)}: global average pool needs CHW data, got "
                            f"{x.shape}")
        shape = (x.shape[0], 1, 1) if layer.keepdims else (x.shape[0],)
    if isinstance(layer, L.AvgPool):
        shape = _avg_pool_shape(layer, x)
    if any(i.kind == "float" for i in ins):
        return TensorInfo(shape, "float", 0, 0)
    m, frac = _fixed(x)
    if isinstance(layer, L.Requant):
        if layer.frac is None:
            return TensorInfo(shape, "float", 0, 0)
        b = fx.affine_bound(m, layer.mult, layer.add, layer.shift)
        return TensorInfo(shape, "fixed", -b, b, layer.frac)
    if isinstance(layer, (L.AddTensors, L.Concat)):
        if layer.frac is None:
            return TensorInfo(shape, "float", 0, 0)
        bounds = [fx.align_bound(*_fixed(i), layer.frac) for i in ins]
        b = max(bounds) if isinstance(layer, L.Concat) else sum(bounds)
        return TensorInfo(shape, "fixed", -b, b, layer.frac)
    if isinstance(layer, L.PRelu):
        if layer.slope_q is None:
            return TensorInfo(shape, "float", 0, 0)
        b = fx.prelu_bound(m, layer.slope_q)
        return TensorInfo(shape, "fixed", -b, b, frac)
    if isinstance(layer, L.GlobalAvgPool):
        b = fx.gap_bound(m, x.shape[1] * x.shape[2])
        return TensorInfo(shape, "fixed", -b, b, frac)
    if isinstance(layer, L.AvgPool):
        if layer.frac is None:  # not lowered yet: real values, whatever it reads
            return TensorInfo(shape, "float", 0, 0)
        extra = layer.frac - frac
        if not 0 <= extra < fx.GAP_SHIFT:
            raise EdgeError(f"{_where(layer)}: output frac {layer.frac} is not within "
                            f"[{frac}, {frac + fx.GAP_SHIFT - 1}] (input frac {frac})")
        counts = fx.avg_pool_counts(x.shape[1:], layer.kernel, layer.strides, layer.pads,
                                    layer.count_include_pad)
        b = fx.avg_pool_bound(m, counts, fx.GAP_SHIFT - extra)
        return TensorInfo(shape, "fixed", -b, b, frac + extra)
    raise EdgeError(f"{_where(layer)}: unknown layer type {type(layer).__name__}")
