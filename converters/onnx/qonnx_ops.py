"""What the QONNX quantisers compute, in NumPy, with the reference executor's float arithmetic.

QONNX (the FINN/Brevitas exchange format) writes quantisers as custom nodes. edge-sdk reads them
by evaluating them on constants (weights) and by turning the binarising ones on data into
comparisons (qonnx_lower.py); both need the op's exact values, so each op is written here as
the same sequence of float operations, in the tensors' own dtypes, that qonnx's executor
(`qonnx.core.onnx_exec.execute_onnx`) performs. Only the maths is shared with qonnx, not code.

Ops (domain `qonnx.custom_op.general`, also `onnx.brevitas` for older Brevitas files; FINN's
`finn.custom_op.general` / `finn` domains for MultiThreshold):
- BipolarQuant(x, s): +s where x >= 0, else -s.
- Quant(x, s, z, b) (also IntQuant): q = x / s + z; for b = 1 signed, q = ±1 by q >= 0;
  otherwise q is clamped to the integer range of (b, signed, narrow) and rounded; y = (q - z) s.
- Trunc v1 (x, s, z, in_bits, out_bits) and v2 (x, s, z, in_bits, out_scale, out_bits): round
  x / s + z, divide by a power of two, (v2: clamp,) round with `rounding_mode`, rescale.
- MultiThreshold(x, T [C or 1, B]): the number of thresholds x reaches (x >= t), times
  `out_scale` plus `out_bias`; per channel along the layout's C axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")
FINN_DOMAINS = ("finn.custom_op.general", "finn")
QONNX_OPS = ("BipolarQuant", "Quant", "IntQuant", "MultiThreshold", "Trunc")
QONNX_OPSETS = (1, 2)
READABLE_BITS = (1, 2)  # binary and ternary anywhere
INT8_BITS = (8,)  # weights of 8-bit layers and the data they read (issue #11)
INT8_CODE_MIN, INT8_CODE_MAX = -128, 127


def is_supported(domain: str, op_type: str) -> bool:
    """The custom (domain, op) pairs edge-sdk reads."""
    if domain in QONNX_DOMAINS:
        return op_type in QONNX_OPS
    return domain in FINN_DOMAINS and op_type == "MultiThreshold"


def is_qonnx_node(node: onnx.NodeProto) -> bool:
    return node.domain in QONNX_DOMAINS + FINN_DOMAINS


def domain_version(model: onnx.ModelProto, domain: str) -> int:
    """The opset a QONNX node runs under; qonnx's executor assumes 1 when none is imported."""
    return next((int(o.version) for o in model.opset_import if o.domain == domain), 1)


class QonnxError(ValueError):
    """A node whose parameters are not readable; the caller adds file and node names."""


# ---------------------------------------------------------------------------- rounding
def _round_half_up(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _round_half_down(x):
    return np.sign(x) * np.ceil(np.abs(x) - 0.5)


def _round_up(x):
    return np.sign(x) * np.ceil(np.abs(x))


ROUNDING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ROUND": np.round,  # half to even
    "HALF_EVEN": np.round,
    "CEIL": np.ceil,
    "FLOOR": np.floor,
    "UP": _round_up,  # away from zero
    "DOWN": np.fix,  # towards zero
    "HALF_UP": _round_half_up,
    "HALF_DOWN": _round_half_down,
}


def rounding(mode: str) -> Callable[[np.ndarray], np.ndarray]:
    fn = ROUNDING.get(mode.upper())
    if fn is None:
        raise QonnxError(f"unknown rounding_mode '{mode}' (known: {', '.join(ROUNDING)})")
    return fn


def int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """Integer codes of a quantiser: e.g. 2-bit signed narrow = [-1, 1], unsigned = [0, 3]."""
    if signed:
        return -(2 ** (bits - 1)) + (1 if narrow else 0), 2 ** (bits - 1) - 1
    return 0, 2**bits - (2 if narrow else 1)


# ---------------------------------------------------------------------------- op specs
@dataclass(frozen=True)
class BipolarQuantSpec:
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ones = np.ones(x.shape, dtype=x.dtype)
        return np.where(x >= 0.0, ones, -ones) * self.scale

    def params(self) -> list[np.ndarray]:
        return [self.scale]

    def codes(self) -> int:
        return 2


@dataclass(frozen=True)
class QuantSpec:
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    signed: bool
    narrow: bool
    mode: str

    def integers(self, x: np.ndarray) -> np.ndarray:
        """q - z: the output in units of the scale (integers when z is an integer)."""
        q = x / self.scale
        q = q + self.zero_point
        if self.bits == 1 and self.signed:
            ones = np.ones(q.shape, dtype=q.dtype)
            q = np.where(q >= 0.0, ones, -ones)
        else:
            lo, hi = int_range(self.bits, self.signed, self.narrow)
            q = np.where(q > hi, np.asarray(hi, q.dtype), q)
            q = np.where(q < lo, np.asarray(lo, q.dtype), q)
            q = rounding(self.mode)(q)
        return q - self.zero_point

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.integers(x) * self.scale

    def params(self) -> list[np.ndarray]:
        return [self.scale, self.zero_point]

    def codes(self) -> int:
        if self.bits == 1 and self.signed:
            return 2
        lo, hi = int_range(self.bits, self.signed, self.narrow)
        return hi - lo + 1


@dataclass(frozen=True)
class TruncSpec:
    scale: np.ndarray
    zero_point: np.ndarray
    in_bits: np.ndarray
    out_bits: np.ndarray
    mode: str
    version: int
    out_scale: np.ndarray | None = None  # v2
    signed: bool = True  # v2
    narrow: bool = False  # v2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x / self.scale
        y = y + self.zero_point
        y = np.round(y)
        if self.version == 1:
            y = y / 2.0 ** (self.in_bits - self.out_bits)
            y = rounding(self.mode)(y)
            return (y - self.zero_point) * self.scale
        shift = 2 ** np.round(np.log2(self.out_scale / self.scale))
        y = y / shift
        lo, hi = int_range(int(self.out_bits), self.signed, self.narrow)
        y = np.where(y > hi, np.asarray(hi, y.dtype), y)
        y = np.where(y < lo, np.asarray(lo, y.dtype), y)
        y = rounding(self.mode)(y)
        return (y - self.zero_point / shift) * self.out_scale

    def params(self) -> list[np.ndarray]:
        extra = [self.out_scale] if self.out_scale is not None else []
        return [self.scale, self.zero_point, *extra]

    def codes(self) -> int:
        return 2 ** int(self.out_bits)


@dataclass(frozen=True)
class MultiThresholdSpec:
    """Thresholds already laid out to broadcast against x (the channel on its own axis)."""

    thresholds: np.ndarray  # [*broadcast shape, B]
    out_scale: float
    out_bias: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        count = np.count_nonzero(x[..., None] >= self.thresholds, axis=-1).astype(x.dtype)
        return self.out_scale * count + self.out_bias

    def params(self) -> list[np.ndarray]:
        return [self.thresholds[..., 0]]

    def codes(self) -> int:
        return int(self.thresholds.shape[-1]) + 1

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.codes())))


Spec = BipolarQuantSpec | QuantSpec | TruncSpec | MultiThresholdSpec


# ---------------------------------------------------------------------------- parsing
def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def scalar_int(value: np.ndarray, what: str) -> int:
    v = np.asarray(value)
    if v.size != 1 or not np.isfinite(v).all() or float(v.reshape(-1)[0]) != int(v.reshape(-1)[0]):
        raise QonnxError(f"{what} must be one integer, got {v.reshape(-1)[:4].tolist()}")
    return int(v.reshape(-1)[0])


def _positive(value: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(value)
    if not np.all(np.isfinite(v)):
        hint = (" (Brevitas writes scale=inf for its default bit-width-1 quantisers; train with "
                "its SignedBinary* quantisers)" if np.any(np.isinf(v)) else "")
        raise QonnxError(f"{what} must be finite, got {v.reshape(-1)[:4].tolist()}{hint}")
    if np.any(v <= 0):
        raise QonnxError(f"{what} must be positive, got {v.reshape(-1)[:4].tolist()}")
    return v


def _finite(value: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(value)
    if not np.all(np.isfinite(v)):
        raise QonnxError(f"{what} must be finite")
    return v


def quant_bits(node: onnx.NodeProto, const: Callable[[str], np.ndarray | None]) -> int | None:
    """The bit width of a Quant / IntQuant node, or None when it is not a constant."""
    if len(node.input) < 4:
        return None
    b = const(node.input[3])
    return None if b is None else scalar_int(b, "bit width")


def parse(node: onnx.NodeProto, const: Callable[[str], np.ndarray | None], version: int,
          rank: int | None) -> Spec:
    """The op's parameters from its constant inputs and attributes (input 0 is the data).

    `rank` is the data's rank when known (MultiThreshold needs it to place the channel axis).
    """
    def need(i: int, what: str) -> np.ndarray:
        if len(node.input) <= i or not node.input[i]:
            raise QonnxError(f"missing input {i} ({what})")
        v = const(node.input[i])
        if v is None:
            raise QonnxError(f"{what} ('{node.input[i]}') must be a constant (initializer)")
        return v

    a = _attrs(node)
    op = node.op_type
    if op == "BipolarQuant":
        return BipolarQuantSpec(_positive(need(1, "scale"), "scale"))
    if op in ("Quant", "IntQuant"):
        scale = _positive(need(1, "scale"), "scale")
        zp = _finite(need(2, "zero point"), "zero point")
        bits = scalar_int(need(3, "bit width"), "bit width")
        if bits < 1:
            raise QonnxError(f"bit width {bits} is not positive")
        return QuantSpec(scale, zp, bits, bool(a.get("signed", 1)), bool(a.get("narrow", 0)),
                         str(a.get("rounding_mode", "ROUND")))
    if op == "Trunc":
        if version >= 2:
            if len(node.input) != 6:
                raise QonnxError(f"Trunc (opset {version}) takes 6 inputs, got {len(node.input)}")
            out_bits = need(5, "output bit width")
            out_scale = _positive(need(4, "output scale"), "output scale")
        else:
            if len(node.input) != 5:
                raise QonnxError(f"Trunc (opset {version}) takes 5 inputs, got {len(node.input)}")
            out_bits, out_scale = need(4, "output bit width"), None
        spec = TruncSpec(_positive(need(1, "scale"), "scale"),
                         _finite(need(2, "zero point"), "zero point"),
                         need(3, "input bit width"), out_bits, str(a.get("rounding_mode", "FLOOR")),
                         2 if version >= 2 else 1, out_scale, bool(a.get("signed", 1)),
                         bool(a.get("narrow", 0)))
        scalar_int(spec.in_bits, "input bit width")
        scalar_int(spec.out_bits, "output bit width")
        rounding(spec.mode)
        return spec
    if op == "MultiThreshold":
        return _multithreshold(node, need(1, "thresholds"), a, rank)
    raise QonnxError(f"unsupported QONNX operator {op}")  # pragma: no cover - loader refuses


def _multithreshold(node, thr: np.ndarray, a: dict, rank: int | None) -> MultiThresholdSpec:
    thr = np.asarray(thr)
    if thr.ndim != 2:
        raise QonnxError(f"thresholds must be 2-D [channels, steps], got {list(thr.shape)}")
    if not np.all(np.isfinite(thr)):
        raise QonnxError("thresholds must be finite")
    scale = float(a.get("out_scale", 1.0))
    bias = float(a.get("out_bias", 0.0))
    if not (math.isfinite(scale) and math.isfinite(bias)) or scale == 0:
        raise QonnxError(f"out_scale {scale:g} / out_bias {bias:g} are not usable")
    if thr.shape[0] == 1:
        return MultiThresholdSpec(thr.reshape(thr.shape[1]), scale, bias)
    if rank is None:
        raise QonnxError("the data's rank is unknown, so the channel axis is unknown")
    layout = str(a.get("data_layout", "")) or {2: "NC", 3: "NWC", 4: "NCHW"}.get(rank, "")
    cdim = layout.index("C") if "C" in layout else 1
    if len(layout) not in (0, rank):
        raise QonnxError(f"data_layout '{layout}' does not match data of rank {rank}")
    shape = [1] * rank
    shape[cdim] = thr.shape[0]
    return MultiThresholdSpec(thr.reshape(*shape, thr.shape[1]), scale, bias)
