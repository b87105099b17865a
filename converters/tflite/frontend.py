"""TFLite / Larq Compute Engine graph -> source-form IR.

Operators are walked in the file's (execution) order, one handler per operator. Every TFLite
tensor is a constant (NumPy) or a value computed from the input (`Val`). TFLite is NHWC and the
IR is NCHW, so a `Val` also records how the IR holds it (`layout`):

- "raw": exactly the TFLite tensor without the batch (the model input);
- "chw": TFLite [1, H, W, C] held as IR (C, H, W);
- "hwc_flat": TFLite [1, H*W*C] (a flattened map, HWC order) still held as IR (C, H, W): the
  IR flattens only where a dense layer needs it, so float ops and a binarisation between the
  RESHAPE and the dense layer stay per-channel (as the passes need);
- "vec": TFLite [1, K] held as IR (K,); `perm[j]` is the IR index of TFLite element j (a
  flattened map is CHW in the IR, HWC in TFLite). Dense weights and constants are permuted to
  match instead of moving data.

Larq Compute Engine ops: `LceQuantize` packs `x < 0` as bit 1 (so it is the IR's "ge0"
binarisation, +1 for x >= 0); `LceDequantize` unpacks to ±1 floats (the IR already holds ±1);
`LceBconv2d` is a binary conv whose padded taps are +1 (`pad_values=1`) or missing
(`pad_values=0`, LCE corrects for them), with either a float output `y * multiplier + bias`
or a bitpacked output `bit = popcount > threshold`; `LceBMaxPool2d` max-pools ±1 values.

Real-valued shortcuts (issue #11, Bi-Real / QuickNet-style files): an ADD of two computed
tensors is `AddTensors`, PRELU and RELU (also fused into ADD/MUL/SUB/DIV/CONV_2D/
DEPTHWISE_CONV_2D/CONCATENATION) are `PRelu`, MEAN over H, W and a whole-map
AVERAGE_POOL_2D are `GlobalAvgPool`, a float AVERAGE_POOL_2D with a smaller window (the
downsampling shortcut) is `AvgPool`, CONCATENATION on the channels is `Concat`, and a binary
DEPTHWISE_CONV_2D (±1 data from LceDequantize, ±a weights) is a `GroupConv2d` with one group
per channel (with real weights or on real-valued data, calibrated to 8 bits like CONV_2D).
The passes lower them to fixed point as for ONNX.

int8 tensors (LCE's int8 conversion: int8 model input/output and a default int8 range) run
TFLite's own integer kernels bit for bit (sdk/tflite_int8.py). A `Val` with `qp` (scale,
zero point) holds the centred codes q - z as "int" data (the user feeds the codes q):
CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED are an `Int8Weights` conv (grouped for the
depthwise one)/dense plus a `TflRequant`, MUL by a
constant a `TflRequant`, ADD a `TflAdd`, PRELU a `TflPRelu`, MEAN over H, W a per-channel sum
(`GroupConv2d` of ones) plus a `TflRequant`, MAX_POOL_2D, RESHAPE and CONCATENATION (equal
scales, as TFLite requires) the plain layers, LceQuantize of int8 data the "ge0" binarisation (bit 1
iff q < z), DEQUANTIZE a float `Affine` and QUANTIZE a `Quantize` with TFLite's rounding; an
int8 model output gets its zero point back (the output holds the codes). Other operators on
int8 tensors, int8->int8 QUANTIZE, uint8/int16 tensors, per-channel activation or operand
quantisation and int8 MEAN with keep_dims are refused in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk import tflite_int8 as ti
from edge_sdk.converters.onnx.calibrate import Calibration, quantise_weights
from edge_sdk.converters.onnx.weights import classify
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph, TensorInfo, infer

from . import lce, quant, schema
from .flatbuf import FormatError
from .schema import Operator, Tensor

# Float inputs holding integers, as for ONNX (covers uint8 and int8 data); `input_range` overrides.
DEFAULT_FLOAT_RANGE = (-255, 255)


@dataclass
class Val:
    """A tensor computed from the model input: its IR tensor and how the IR holds it."""

    tensor: str
    info: TensorInfo
    layout: str  # "raw" | "chw" | "hwc_flat" | "vec"
    tshape: tuple[int, ...]  # the TFLite shape without the batch (unpacked channels)
    perm: np.ndarray | None = None  # "vec": IR index of each TFLite index (None = identity)
    qp: tuple[float, int] | None = None  # int8 tensor: (scale, zero point); holds q - z


# Operators that read int8 tensors (their handlers check how); any other one is refused.
INT8_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "DEQUANTIZE", "QUANTIZE", "LceQuantize", "PRELU",
            "MAX_POOL_2D", "MUL", "ADD", "CONCATENATION", "MEAN", "FULLY_CONNECTED", "RESHAPE"}


def tflite_pads(size: tuple[int, int], kernel, stride, dilation, padding: str):
    """IR pads (top, left, bottom, right) of TFLite's SAME / VALID rule."""
    if padding == "VALID":
        return (0, 0, 0, 0)
    before, after = [], []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return (before[0], before[1], after[0], after[1])


def _hwc_to_chw(h: int, w: int, c: int) -> np.ndarray | None:
    """perm[j] = CHW index of HWC element j; None when both orders agree."""
    if c == 1 or h * w == 1:
        return None
    return np.arange(h * w * c).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


class Frontend:
    def __init__(self, model: schema.Model, input_range=None,
                 calibration: Calibration | None = None):
        self.m = model
        self.file = model.file
        self.input_range = input_range
        self.calibration = calibration
        self.vals: dict[int, Val] = {}
        self.chw_views: dict[str, Val] = {}
        self.layers: list[L.Layer] = []
        self.infos: dict[str, TensorInfo] = {}
        self.counts: dict[str, int] = {}
        self.op: Operator | None = None
        self.skip: set[int] = set()
        self.users: dict[int, list[Operator]] = {}
        self.qparams = quant.read(model.file) if any(t.quantized for t in model.tensors) else {}
        for op in model.operators:
            for t in op.inputs:
                if t >= 0:
                    self.users.setdefault(t, []).append(op)

    # ------------------------------------------------------------------ helpers
    def where(self) -> str:
        op = self.op
        if op is None:
            return f"{self.file}: "
        out = self.m.tensors[op.outputs[0]].name if op.outputs else "?"
        return f"{self.file}: operator #{op.index} {op.name} (output '{out}'): "

    def fail(self, reason: str):
        raise EdgeError(self.where() + reason)

    def emit(self, layer_cls, inputs: list[str], **kw) -> tuple[str, TensorInfo]:
        kind = layer_cls.kind
        i = self.counts.get(kind, 0)
        self.counts[kind] = i + 1
        name = f"{kind}{i}"
        src = ""
        if self.op is not None:
            src = f"#{self.op.index} {self.op.name}"
        layer = layer_cls(name=name, inputs=inputs, output=name, source=src, **kw)
        try:
            info = infer(layer, [self.infos[t] for t in inputs])
        except EdgeError as exc:
            self.fail(str(exc))
        self.layers.append(layer)
        self.infos[name] = info
        return name, info

    def tensor(self, idx: int) -> Tensor:
        return self.m.tensors[idx]

    def const(self, idx: int, what: str) -> np.ndarray:
        if idx < 0:
            self.fail(f"the {what} input is missing")
        t = self.tensor(idx)
        if t.data is None:
            self.fail(f"{what} '{t.name}' must be a constant")
        if t.quantized:
            self.fail(f"{what} '{t.name}' is int8/uint8-quantized; quantized TFLite models are not "
                      "supported (only float and LCE bitpacked tensors)")
        return t.data

    # ------------------------------------------------------------------ int8 helpers
    def qp(self, idx: int) -> tuple[float, int]:
        """(scale, zero point) of a per-tensor int8-quantized tensor."""
        t = self.tensor(idx)
        q = self.qparams.get(idx)
        if t.type_code != 9 or q is None:
            self.fail(f"tensor '{t.name}' ({t.type_name}) is not int8-quantized")
        if not q.per_tensor and (np.any(q.scale != q.scale[0]) or
                                 np.any(q.zero_point != q.zero_point[0])):
            self.fail(f"tensor '{t.name}' has per-channel quantisation; only weights may")
        zp = int(q.zero_point[0])
        if not -128 <= zp <= 127:
            self.fail(f"tensor '{t.name}': zero point {zp} outside int8")
        return float(q.scale[0]), zp

    def qconst(self, idx: int, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An int8 constant: (codes int64, scales float32 [C or 1], zero points int64)."""
        if idx < 0:
            self.fail(f"the {what} input is missing")
        t = self.tensor(idx)
        if t.data is None:
            self.fail(f"{what} '{t.name}' must be a constant")
        q = self.qparams.get(idx)
        if t.type_code != 9 or q is None:
            self.fail(f"{what} '{t.name}' ({t.type_name}) must be int8-quantized here")
        if np.any(q.zero_point < -128) or np.any(q.zero_point > 127):
            self.fail(f"{what} '{t.name}': zero point outside int8")
        return t.data.astype(np.int64), q.scale, q.zero_point

    def int8_out(self, name: str, info: TensorInfo, v: Val, idx: int | None = None) -> Val:
        idx = self.op.outputs[0] if idx is None else idx
        return Val(name, info, v.layout, v.tshape, v.perm, self.qp(idx))

    def act8(self, activation: str, out_idx: int | None = None) -> tuple[int, int]:
        s, zp = self.qp(self.op.outputs[0] if out_idx is None else out_idx)
        return ti.act_range(activation, s, zp, self.where().rstrip(": "))

    def mult(self, real: float, what: str) -> tuple[int, int]:
        try:
            return ti.quantize_multiplier(real)
        except ValueError as exc:
            self.fail(f"{what}: {exc}")

    def val(self, idx: int) -> Val:
        if idx < 0:
            self.fail("a required input is missing")
        v = self.vals.get(idx)
        if v is None:
            t = self.tensor(idx)
            what = "a constant" if t.data is not None else "not computed from the model input"
            self.fail(f"input '{t.name}' is {what}; expected data flowing from the model input")
        return v

    def put(self, v: Val, out_index: int = 0) -> None:
        idx = self.op.outputs[out_index]
        t = self.tensor(idx)
        if t.quantized and (v.qp is None or t.type_code != 9 or self.qp(idx) != v.qp):
            self.fail(f"output '{t.name}' is {t.type_name}-quantized; only int8 outputs of the "
                      "int8 operators (LCE int8 conversion) are supported")
        if v.qp is not None and not t.quantized:
            self.fail(f"output '{t.name}' of an int8 operator is not int8-quantized")
        declared = t.shape[1:] if t.shape else None
        expect = v.tshape
        if t.type_code == 2 and self.op.custom and expect:  # bitpacked: last dim is words
            expect = expect[:-1] + (math.ceil(expect[-1] / 32),)
        if declared is not None and t.shape and tuple(declared) != tuple(expect):
            self.fail(f"shape mismatch: the file declares {list(t.shape)}, the operator computes "
                      f"[1, {', '.join(map(str, expect))}]")
        self.vals[idx] = v

    def act_none(self, activation: str) -> None:
        if activation != "NONE":
            self.fail(f"fused activation {activation} is not supported")

    def fused(self, v: Val, activation: str) -> Val:
        """A fused activation: RELU on real-valued data is a `PRelu` with slope 0 (what the
        TFLite converter makes of a Keras ReLU after an ADD); the others are refused."""
        if activation == "NONE":
            return v
        if activation != "RELU":
            self.fail(f"fused activation {activation} is not supported (only RELU)")
        return self.relu(v, f"fused activation {activation}")

    def relu(self, v: Val, what: str) -> Val:
        if v.info.kind != "float":
            self.fail(f"{what} on {v.info.kind} data is not supported (only on real-valued data, "
                      "after a BatchNorm, Mul, Add or residual ADD)")
        zero = np.zeros(v.info.shape[0], np.float32)
        name, info = self.emit(L.PRelu, [v.tensor], slope=zero)
        return Val(name, info, v.layout, v.tshape, v.perm)

    # ------------------------------------------------------------------ layouts
    def as_chw(self, v: Val) -> Val:
        if v.layout == "chw":
            return v
        if v.layout == "raw" and len(v.tshape) == 3:
            if v.tensor in self.chw_views:  # one view per tensor, however many convs read it
                return self.chw_views[v.tensor]
            h, w, c = v.tshape
            if _hwc_to_chw(h, w, c) is None:  # same element order: a reshape moves no data
                name, info = self.emit(L.Reshape, [v.tensor], shape=(c, h, w))
            else:
                name, info = self.emit(L.Transpose, [v.tensor], perm=(2, 0, 1))
            self.chw_views[v.tensor] = Val(name, info, "chw", v.tshape, qp=v.qp)
            return self.chw_views[v.tensor]
        if v.layout == "hwc_flat":
            return Val(v.tensor, v.info, "chw", (v.info.shape[1], v.info.shape[2],
                                                 v.info.shape[0]), qp=v.qp)
        self.fail(f"expected an image tensor [1, H, W, C], got [1, {', '.join(map(str, v.tshape))}]")

    def as_vec(self, v: Val) -> Val:
        """The IR tensor flat (emits the Flatten a hwc_flat / chw value still needs)."""
        if v.layout == "vec":
            return v
        if v.layout == "raw":
            if len(v.tshape) == 1:
                return Val(v.tensor, v.info, "vec", v.tshape, qp=v.qp)
            name, info = self.emit(L.Flatten, [v.tensor])
            return Val(name, info, "vec", (info.shape[0],), qp=v.qp)
        c, h, w = v.info.shape
        name, info = self.emit(L.Flatten, [v.tensor])
        return Val(name, info, "vec", (info.shape[0],), _hwc_to_chw(h, w, c), v.qp)

    def per_channel(self, c: np.ndarray, v: Val) -> np.ndarray:
        """A constant broadcast against the TFLite tensor, as one value per IR channel."""
        c = np.asarray(c, dtype=np.float32)
        try:
            full = np.broadcast_to(c, (1,) + v.tshape)
        except ValueError:
            self.fail(f"shape mismatch: constant of shape {list(c.shape)} does not broadcast to "
                      f"[1, {', '.join(map(str, v.tshape))}]")
        if np.broadcast_shapes(c.shape, (1,) + v.tshape) != (1,) + v.tshape:
            self.fail(f"shape mismatch: constant of shape {list(c.shape)} would change the data "
                      "shape")
        full = full[0]
        if v.layout == "chw":
            ir = full.transpose(2, 0, 1)
        elif v.layout == "hwc_flat":
            ch, h, w = v.info.shape
            ir = full.reshape(h, w, ch).transpose(2, 0, 1)
        elif v.perm is not None:
            ir = np.empty_like(full)
            ir[v.perm] = full
        else:
            ir = full
        flat = ir.reshape(ir.shape[0], -1) if ir.ndim else ir.reshape(1, 1)
        if not np.all(flat == flat[:, :1]):
            self.fail("only per-channel constants are supported here")
        return np.ascontiguousarray(flat[:, 0], dtype=np.float32)

    def affine(self, v: Val, ops: list[L.FloatOp]) -> Val:
        if not ops:
            return v
        name, info = self.emit(L.Affine, [v.tensor], ops=ops)
        return Val(name, info, v.layout, v.tshape, v.perm)

    def binarize(self, v: Val, mode: str) -> Val:
        if mode == "ge0" and v.info.kind == "bipolar":
            return v  # already ±1: x >= 0 keeps it
        name, info = self.emit(L.Binarize, [v.tensor], mode=mode)
        return Val(name, info, v.layout, v.tshape, v.perm)

    # ------------------------------------------------------------------ walk
    def run(self) -> Graph:
        m = self.m
        if len(m.inputs) != 1:
            raise EdgeError(f"{self.file}: expected one model input, found {len(m.inputs)}")
        if len(m.outputs) != 1:
            raise EdgeError(f"{self.file}: expected one model output, found {len(m.outputs)}")
        self._model_input(self.tensor(m.inputs[0]))
        for op in m.operators:
            self.op = op
            if op.index in self.skip:
                continue
            if not op.outputs:
                self.fail("operator without outputs")
            handler = getattr(self, f"op_{op.name}", None)
            if handler is None:
                kind = "custom operator" if op.custom else "operator"
                self.fail(f"unsupported {kind} {op.name}")
            if op.name not in INT8_OPS and any(
                    t in self.vals and self.vals[t].qp is not None for t in op.inputs):
                self.fail(f"{op.name} on int8 tensors is not supported")
            try:
                handler(op)
            except FormatError as exc:  # options tables are read lazily, here
                self.fail(f"builtin options are not a valid FlatBuffer table: {exc}")
        self.op = None
        out_t = self.tensor(m.outputs[0])
        out = self.vals.get(m.outputs[0])
        if out is None:
            raise EdgeError(f"{self.file}: output '{out_t.name}' is not computed from the input")
        if out.layout in ("chw", "hwc_flat") or out.perm is not None:
            raise EdgeError(f"{self.file}: output '{out_t.name}' is a feature map "
                            f"[1, {', '.join(map(str, out.tshape))}]; only flat [N, K] outputs "
                            "are supported (the IR holds maps as NCHW)")
        if out.qp is not None:  # the model's int8 codes: q = (q - z) + z
            zp = np.full(out.info.shape[0], out.qp[1], np.float32)
            name, info = self.emit(L.Affine, [out.tensor], ops=[L.Add(zp)])
            out = Val(name, info, out.layout, out.tshape, out.perm)
        src = {"file": Path(self.file).name, "format": "tflite", "schema_version": m.version,
               "producer": m.description, "input_name": self.tensor(m.inputs[0]).name,
               "output_name": out_t.name}
        return Graph(Path(self.file).stem, self.layers, ["input"], [out.tensor], src)

    def _model_input(self, t: Tensor) -> None:
        if t.data is not None:
            raise EdgeError(f"{self.file}: the model input '{t.name}' is a constant")
        if t.quantized and t.type_code == 9 and len(t.shape) >= 2:
            self._int8_input(t)
            return
        if t.quantized or t.type_code not in (0, 9, 3, 7):
            raise EdgeError(f"{self.file}: input '{t.name}' of type {t.type_name}"
                            f"{' (quantized)' if t.quantized else ''} is not supported; "
                            "float32 inputs holding integers are")
        if len(t.shape) < 2:
            raise EdgeError(f"{self.file}: input '{t.name}' needs a batch dimension and data "
                            f"dimensions, has shape {list(t.shape)}")
        batch = t.signature[0] if t.signature else t.shape[0]
        if batch not in (1, -1) or (t.signature and any(d < 0 for d in t.signature[1:])):
            raise EdgeError(f"{self.file}: input '{t.name}' must have batch 1 or a dynamic batch "
                            "and static other dimensions")
        lo, hi = {0: DEFAULT_FLOAT_RANGE, 9: (-128, 127), 3: (0, 255), 7: (-32768, 32767)}[
            t.type_code]
        if self.input_range is not None:
            lo, hi = (int(v) for v in self.input_range)
            if lo > hi:
                raise EdgeError(f"input range [{lo}, {hi}] is empty")
        shape = tuple(t.shape[1:])
        layer = L.Input(name="input", inputs=[], output="input", source=t.name, shape=shape,
                        lo=lo, hi=hi)
        self.layers.append(layer)
        self.infos["input"] = infer(layer, [])
        self.vals[t.index] = Val("input", self.infos["input"], "raw", shape)

    def _int8_input(self, t: Tensor) -> None:
        """An int8 model input: the user gives the codes q; the IR holds q - z."""
        batch = t.signature[0] if t.signature else t.shape[0]
        if batch not in (1, -1) or (t.signature and any(d < 0 for d in t.signature[1:])):
            raise EdgeError(f"{self.file}: input '{t.name}' must have batch 1 or a dynamic batch "
                            "and static other dimensions")
        if self.input_range is not None:
            raise EdgeError(f"{self.file}: input '{t.name}' is int8-quantized; its range is "
                            "[-128, 127] (no input range option)")
        scale, zp = self.qp(t.index)
        shape = tuple(t.shape[1:])
        layer = L.Input(name="input", inputs=[], output="input", source=t.name, shape=shape,
                        lo=-128 - zp, hi=127 - zp, zero_point=-zp)
        self.layers.append(layer)
        self.infos["input"] = infer(layer, [])
        self.vals[t.index] = Val("input", self.infos["input"], "raw", shape, qp=(scale, zp))

    # ------------------------------------------------------------------ int8 ops
    def op_DEQUANTIZE(self, op: Operator):
        """int8 -> float, as the interpreter computes it (below)."""
        self._inputs(op, 1)
        v = self.val(op.inputs[0])
        if v.qp is None:
            self.fail("DEQUANTIZE of a tensor that is not int8")
        c = v.info.shape[0] if v.info.shape else 1
        # x86 builds run the NEON kernel through NEON_2_SSE: float32(q * s) + float32(-z * s),
        # two roundings (measured against LCE's interpreter; the scalar tail of a flat size
        # that is not a multiple of 8 computes float32(s * (q - z)) instead, not modelled).
        s, zp = np.float32(v.qp[0]), v.qp[1]
        ops = [L.Add(np.full(c, zp, np.float32)), L.Mul(np.full(c, s, np.float32)),
               L.Add(np.full(c, np.float32(-np.float64(zp) * np.float64(s)), np.float32))]
        name, info = self.emit(L.Affine, [v.tensor], ops=ops)
        self.put(Val(name, info, v.layout, v.tshape, v.perm))

    def op_QUANTIZE(self, op: Operator):
        """float -> int8 with TFLite's rounding (half away from zero of x / scale)."""
        self._inputs(op, 1)
        v = self.val(op.inputs[0])
        if v.qp is not None:
            self.fail("QUANTIZE of int8 data (a requantisation) is not supported")
        if v.info.kind != "float":
            self.fail(f"QUANTIZE of {v.info.kind} data is not supported (real-valued only)")
        scale, zp = self.qp(op.outputs[0])
        name, info = self.emit(L.Quantize, [v.tensor], scale=scale, zero_point=zp, lo=-128,
                               hi=127, rounding="tflite")
        self.put(self.int8_out(name, info, v))

    def _conv_int8(self, op: Operator, x: Val, o) -> None:
        w, w_scale, w_zp = self.qconst(op.inputs[1], "filter")
        if w.ndim != 4 or w.shape[3] != x.info.shape[0]:
            self.fail(f"shape mismatch: filter {list(w.shape)} for {x.info.shape[0]} channels")
        rows = w.transpose(0, 3, 1, 2).reshape(w.shape[0], -1)
        acc = self._conv(x, L.Int8Weights(rows.astype(np.int8)), w.shape[1:3], o.stride,
                         o.dilation, o.padding, 0)
        self._requant_int8(op, x, acc, w_scale, w_zp, o.activation, "ruy")

    def _depthwise_int8(self, op: Operator, x: Val, o) -> None:
        """int8 DEPTHWISE_CONV_2D: a `GroupConv2d` (one group per input channel) and a
        `TflRequant` with MultiplyByQuantizedMultiplier's own rounding: TFLite's int8 depthwise
        kernels do not go through ruy (measured on LCE's interpreter, int8_dw fixture)."""
        w, w_scale, w_zp = self.qconst(op.inputs[1], "filter")
        rows = self._depthwise_rows(w, x, o)
        acc = self._conv(x, L.Int8Weights(rows.astype(np.int8)), w.shape[1:3], o.stride,
                         o.dilation, o.padding, 0, groups=x.info.shape[0])
        self._requant_int8(op, x, acc, w_scale, w_zp, o.activation, "")

    def _requant_int8(self, op: Operator, x: Val, acc: Val, w_scale, w_zp, activation: str,
                      rounding: str) -> None:
        """The int32 accumulators of an int8 conv to int8 codes: bias, per-channel
        QuantizeMultiplier(s_in * s_w / s_out) in double, activation clamp."""
        oc = acc.info.shape[0]
        if np.any(w_zp != 0):
            self.fail("int8 filter with a nonzero zero point (TFLite requires 0)")
        if w_scale.size not in (1, oc):
            self.fail(f"{w_scale.size} filter scales for {oc} output channels")
        bias = np.zeros(oc, np.int64)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bt = self.tensor(op.inputs[2])
            if bt.data is None or bt.type_code != 2 or bt.data.shape != (oc,):
                self.fail(f"the bias of an int8 {op.name} must be a constant int32 [O]")
            bias = bt.data.astype(np.int64)
        s_in = np.float64(np.float32(x.qp[0]))
        s_out, zp = self.qp(op.outputs[0])
        scales = np.broadcast_to(w_scale, (oc,))
        mults = [self.mult(float(s_in * np.float64(s) / np.float64(np.float32(s_out))),
                           "conv multiplier") for s in scales]
        lo, hi = self.act8(activation)
        name, info = self.emit(L.TflRequant, [acc.tensor], factor=np.ones(oc, np.int64),
                               bias=bias, mult=np.array([m for m, _ in mults], np.int64),
                               shift=np.array([e for _, e in mults], np.int64), zero_point=zp,
                               lo=lo, hi=hi, rounding=rounding)
        self.put(self.int8_out(name, info, acc))

    def _fc_int8(self, op: Operator, x: Val, activation: str) -> None:
        """int8 FULLY_CONNECTED: an `Int8Weights` dense layer and a `TflRequant`. Per-tensor
        weights take TFLite's GetQuantizedConvolutionMultipler (the scale product in float32),
        per-channel ones the conv rule (double)."""
        w, w_scale, w_zp = self.qconst(op.inputs[1], "weights")
        k = x.info.shape[0]
        if w.ndim != 2 or w.shape[1] != k:
            self.fail(f"shape mismatch: weights {list(w.shape)} for {k} inputs")
        o = w.shape[0]
        if np.any(w_zp != 0):
            self.fail("int8 weights with a nonzero zero point (TFLite requires 0)")
        if w_scale.size not in (1, o):
            self.fail(f"{w_scale.size} weight scales for {o} outputs")
        if x.perm is not None:
            wi = np.empty_like(w)
            wi[:, x.perm] = w
            w = wi
        bias = np.zeros(o, np.int64)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bt = self.tensor(op.inputs[2])
            if bt.data is None or bt.type_code != 2 or bt.data.shape != (o,):
                self.fail("the bias of an int8 FULLY_CONNECTED must be a constant int32 [O]")
            bias = bt.data.astype(np.int64)
        name, info = self.emit(L.Dense, [x.tensor], weights=L.Int8Weights(w.astype(np.int8)))
        acc = Val(name, info, "vec", (o,))
        s_in, s_out = np.float32(x.qp[0]), np.float32(self.qp(op.outputs[0])[0])
        if w_scale.size == 1:
            reals = [float(np.float32(s_in * np.float32(w_scale[0]))) / float(s_out)] * o
        else:
            reals = [float(s_in) * float(s) / float(s_out) for s in w_scale]
        mults = [self.mult(r, "FULLY_CONNECTED multiplier") for r in reals]
        lo, hi = self.act8(activation)
        name, info = self.emit(L.TflRequant, [name], factor=np.ones(o, np.int64), bias=bias,
                               mult=np.array([m for m, _ in mults], np.int64),
                               shift=np.array([e for _, e in mults], np.int64),
                               zero_point=self.qp(op.outputs[0])[1], lo=lo, hi=hi,
                               rounding="ruy")
        self.put(self.int8_out(name, info, acc))

    def _const_channels(self, codes: np.ndarray, v: Val) -> np.ndarray:
        """An int8 constant operand as one code per IR channel (per_channel does the layout
        checks; codes are small integers, exact in float32)."""
        return self.per_channel(codes.astype(np.float32), v).astype(np.int64)

    def _mul_int8(self, op: Operator, act: str) -> None:
        v, _, _ = self._elementwise_q(op)
        cidx = next(t for t in op.inputs if t not in self.vals)
        codes, cs, czp = self.qconst(cidx, "operand")
        if cs.size != 1:
            self.fail("a per-channel-quantized MUL operand is not supported")
        k = self._const_channels(codes, v) - int(czp[0])
        s_out, zp = self.qp(op.outputs[0])
        m, e = self.mult(float(np.float64(np.float32(v.qp[0])) * np.float64(cs[0])
                               / np.float64(np.float32(s_out))), "MUL multiplier")
        c = k.shape[0]
        lo, hi = self.act8(act)
        name, info = self.emit(L.TflRequant, [v.tensor], factor=k, bias=np.zeros(c, np.int64),
                               mult=np.full(c, m, np.int64), shift=np.full(c, e, np.int64),
                               zero_point=zp, lo=lo, hi=hi)
        self.put(self.int8_out(name, info, v))

    def _elementwise_q(self, op: Operator) -> tuple[Val, None, bool]:
        """(value, None, constant_first) of an int8 binary op with one constant operand."""
        if len(op.inputs) != 2:
            self.fail("expected two inputs")
        a, b = op.inputs
        if a in self.vals and b not in self.vals:
            return self.val(a), None, False
        if b in self.vals and a not in self.vals:
            return self.val(b), None, True
        self.fail("only a computed tensor combined with a constant is supported")

    def _add_int8(self, op: Operator, act: str) -> None:
        both = all(t in self.vals for t in op.inputs)
        if both:
            a, b = self.val(op.inputs[0]), self.val(op.inputs[1])
            if b.qp is None or a.tshape != b.tshape or a.layout != b.layout or a.info.shape != \
                    b.info.shape or not ((a.perm is None and b.perm is None) or (
                    a.perm is not None and b.perm is not None
                    and np.array_equal(a.perm, b.perm))):
                self.fail("int8 ADD of two tensors needs two int8 tensors of one shape and "
                          "layout (no broadcasting)")
            s1, s2 = np.float32(a.qp[0]), np.float32(b.qp[0])
        else:
            a, _, _ = self._elementwise_q(op)
            cidx = next(t for t in op.inputs if t not in self.vals)
            codes, cs, czp = self.qconst(cidx, "operand")
            if cs.size != 1:
                self.fail("a per-channel-quantized ADD operand is not supported")
            k = self._const_channels(codes, a) - int(czp[0])
            s1, s2 = np.float32(a.qp[0]), np.float32(cs[0])
        s_out, zp = self.qp(op.outputs[0])
        twice = 2.0 * float(max(s1, s2))
        m1, e1 = self.mult(float(s1) / twice, "ADD input multiplier")
        m2, e2 = self.mult(float(s2) / twice, "ADD input multiplier")
        mo, eo = self.mult(twice / float(np.float32((1 << ti.ADD_LEFT_SHIFT) * np.float32(s_out))),
                           "ADD output multiplier")
        lo, hi = self.act8(act)
        c = a.info.shape[0] if a.info.shape else 1

        def full(val: int) -> np.ndarray:
            return np.full(c, val, np.int64)

        kw = {"mult1": full(m1), "shift1": full(e1), "mult_out": full(mo), "shift_out": full(eo),
                  "zero_point": zp, "lo": lo, "hi": hi}
        if both:
            name, info = self.emit(L.TflAdd, [a.tensor, b.tensor], mult2=full(m2),
                                   shift2=full(e2), **kw)
        else:
            const = ti.mbqm(k << ti.ADD_LEFT_SHIFT, full(m2), full(e2), self.where())
            name, info = self.emit(L.TflAdd, [a.tensor], const=const.astype(np.int64), **kw)
        self.put(self.int8_out(name, info, a))

    def _prelu_int8(self, op: Operator, v: Val) -> None:
        codes, a_s, a_zp = self.qconst(op.inputs[1], "alpha")
        if a_s.size != 1:
            self.fail("per-channel-quantized alpha is not supported")
        alpha = self._const_channels(codes, v) - int(a_zp[0])
        s_in, s_a = np.float32(v.qp[0]), np.float32(a_s[0])
        s_out, zp = self.qp(op.outputs[0])
        s_out = np.float32(s_out)
        # TFLite computes these two ratios in float (activations.cc), then widens to double.
        m1, e1 = self.mult(float(np.float32(s_in / s_out)), "PRELU multiplier")
        m2, e2 = self.mult(float(np.float32(np.float32(s_in * s_a) / s_out)),
                           "PRELU multiplier")
        c = alpha.shape[0]
        name, info = self.emit(L.TflPRelu, [v.tensor], alpha=alpha, mult1=np.full(c, m1),
                               shift1=np.full(c, e1), mult2=np.full(c, m2),
                               shift2=np.full(c, e2), zero_point=zp, lo=-128, hi=127)
        self.put(self.int8_out(name, info, v))

    def _mean_int8(self, op: Operator, x: Val, keep: bool) -> None:
        """int8 MEAN over H, W: exact per-channel sums, then TFLite's rounding as a table."""
        c, h, w = x.info.shape
        if keep:
            self.fail("int8 MEAN with keep_dims (TFLite's optimized kernel) is not supported")
        n = h * w
        ones = L.IntWeights(np.ones((c, n), np.int8))
        s, _ = self.emit(L.GroupConv2d, [x.tensor], weights=ones, in_channels=c,
                             kernel=(h, w), strides=(1, 1), pads=(0, 0, 0, 0),
                             dilations=(1, 1), groups=c)
        s_out, zp_out = self.qp(op.outputs[0])
        # The interpreter's int8 mean: one requantisation of the centred sum with 1/n folded
        # into the multiplier (sdk/tflite_int8.py mean_multiplier).
        try:
            m, e = ti.mean_multiplier(float(np.float32(x.qp[0])) / float(np.float32(s_out)), n)
        except ValueError as exc:
            self.fail(f"MEAN multiplier: {exc}")
        name, info = self.emit(L.TflRequant, [s], factor=np.ones(c, np.int64),
                               bias=np.zeros(c, np.int64), mult=np.full(c, m, np.int64),
                               shift=np.full(c, e, np.int64), zero_point=zp_out, lo=-128, hi=127)
        name, info = self.emit(L.Flatten, [name])
        self.put(Val(name, info, "vec", (c,), None, (s_out, zp_out)))

    # ------------------------------------------------------------------ plain TFLite ops
    def op_CONV_2D(self, op: Operator):
        o = schema.conv_options(op)
        x = self.as_chw(self.val(op.inputs[0]))
        if x.qp is not None:
            self._conv_int8(op, x, o)
            return
        w = self.const(op.inputs[1], "filter")
        if w.ndim != 4:
            self.fail(f"filter must be [O, kh, kw, I], got shape {list(w.shape)}")
        if w.shape[3] != x.info.shape[0]:
            self.fail(f"shape mismatch: the filter takes {w.shape[3]} channels, the data has "
                      f"{x.info.shape[0]}")
        rows = w.transpose(0, 3, 1, 2).reshape(w.shape[0], -1)
        weights, scale, x = self._weights(rows, x, op)
        out = self._conv(x, weights, w.shape[1:3], o.stride, o.dilation, o.padding, 0)
        self.put(self.fused(self._scale_bias(out, scale, op), o.activation))

    def _weights(self, rows: np.ndarray, v: Val, op: Operator
                 ) -> tuple[L.Weights, np.ndarray | None, Val]:
        """A float CONV_2D / FULLY_CONNECTED's weights [O, K] (IR order) as IR weights, the
        per-row float scale of the accumulator (or None) and the data the layer reads.

        Binary/ternary (±a per row) first; otherwise, with a calibration set, real weights
        quantised to 8 bits as the ONNX path does (converters/onnx/calibrate.py), a `Quantize`
        before real-valued data (integer data, e.g. the model input, is read as it is)."""
        if v.info.kind != "float":  # ±a weights on real-valued data: an 8-bit layer too
            try:
                cw = classify(rows, self.where())
                return L.IntWeights(cw.values), cw.scale, v
            except EdgeError as exc:
                if self.calibration is None:
                    raise EdgeError(f"{exc}; float 8-bit layers need a calibration set "
                                    "(--calibrate X.npy)") from None
        elif self.calibration is None:
            self.fail("a float layer on real-valued data needs a calibration set "
                      "(--calibrate X.npy) to run as an 8-bit layer")
        rows = np.asarray(rows, np.float32)
        if not np.all(np.isfinite(rows)):
            self.fail("weights hold NaN or infinity")
        codes, w_scale = quantise_weights(rows)
        unit = w_scale
        if v.info.kind == "float":
            from .calibrate import key

            s_a = self.calibration.act_scale(key(op.inputs[0]))
            if s_a is None:  # pragma: no cover - calibrate() measures every linear input
                self.fail("the calibration set did not reach this layer's input")
            name, info = self.emit(L.Quantize, [v.tensor], scale=s_a, zero_point=0, lo=-127,
                                   hi=127, in_source=False)
            v = Val(name, info, v.layout, v.tshape, v.perm)
            unit = (w_scale * np.float32(s_a)).astype(np.float32)
        return L.Int8Weights(codes, float_values=rows, unit=unit), unit, v

    def _scale_bias(self, out: Val, scale: np.ndarray | None, op: Operator) -> Val:
        """The float ops after a float CONV_2D / FULLY_CONNECTED: per-row weight scale, bias."""
        ops: list[L.FloatOp] = [L.Mul(scale)] if scale is not None else []
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            ops.append(L.Add(self.per_channel(self.const(op.inputs[2], "bias"), out)))
        return self.affine(out, ops)

    def _conv(self, x: Val, weights: np.ndarray | L.Weights, kernel, stride, dilation,
              padding: str, pad_value: int, groups: int = 1) -> Val:
        if min(stride) < 1 or min(dilation) < 1:
            self.fail(f"strides {list(stride)} and dilations {list(dilation)} must be >= 1")
        c, h, w = x.info.shape
        pads = tflite_pads((h, w), kernel, stride, dilation, padding)
        if isinstance(weights, np.ndarray):
            weights = L.IntWeights(weights)
        extra = {"groups": groups} if groups != 1 else {}
        name, info = self.emit(L.GroupConv2d if groups != 1 else L.Conv2d, [x.tensor],
                               weights=weights, in_channels=c,
                               kernel=tuple(int(k) for k in kernel),
                               strides=tuple(int(s) for s in stride), pads=pads,
                               dilations=tuple(int(d) for d in dilation),
                               pad_value=pad_value if any(pads) else 0, **extra)
        o, oh, ow = info.shape
        return Val(name, info, "chw", (oh, ow, o))

    def op_FULLY_CONNECTED(self, op: Operator):
        activation, fmt, keep = schema.fc_options(op)
        v = self.val(op.inputs[0])
        if v.qp is None:
            self.act_none(activation)
        if fmt != 0:
            self.fail("only the DEFAULT weights format is supported")
        if keep and len(v.tshape) != 1:
            self.fail("keep_num_dims on a multi-dimensional input is not supported")
        x = self.as_vec(v)
        if x.qp is not None:
            self._fc_int8(op, x, activation)
            return
        w = self.const(op.inputs[1], "weights")
        if w.ndim != 2 or w.shape[1] != x.info.shape[0]:
            self.fail(f"shape mismatch: weights {list(w.shape)} for {x.info.shape[0]} inputs")
        if x.perm is not None:
            wi = np.empty_like(w)
            wi[:, x.perm] = w
            w = wi
        weights, scale, x = self._weights(w, x, op)
        name, info = self.emit(L.Dense, [x.tensor], weights=weights)
        out = Val(name, info, "vec", (w.shape[0],))
        self.put(self._scale_bias(out, scale, op))

    def op_MAX_POOL_2D(self, op: Operator):
        o = schema.pool_options(op)
        x = self.as_chw(self.val(op.inputs[0]))
        if x.qp is not None:  # TFLite: same scale in and out, a max of codes, then the clamp
            if self.qp(op.outputs[0]) != x.qp:
                self.fail("int8 MAX_POOL_2D with different input and output quantisation")
            if self.act8(o.activation) != (-128, 127):
                self.fail(f"fused activation {o.activation} on an int8 pool is not supported")
            self._pool(x, o.kernel, o.stride, o.padding, x.qp)
            return
        self.act_none(o.activation)
        self._pool(x, o.kernel, o.stride, o.padding)

    def _pool(self, x: Val, kernel, stride, padding: str, qp=None):
        if min(kernel) < 1 or min(stride) < 1:
            self.fail(f"pool window {list(kernel)} and strides {list(stride)} must be >= 1")
        _, h, w = x.info.shape
        pads = tflite_pads((h, w), kernel, stride, (1, 1), padding)
        name, info = self.emit(L.MaxPool, [x.tensor], kernel=tuple(int(k) for k in kernel),
                               strides=tuple(int(s) for s in stride), pads=pads)
        c, oh, ow = info.shape
        self.put(Val(name, info, "chw", (oh, ow, c), None, qp))

    def op_RESHAPE(self, op: Operator):
        v = self.val(op.inputs[0])
        target = schema.reshape_new_shape(op)
        if target is None:
            if len(op.inputs) < 2 or op.inputs[1] < 0:
                self.fail("no target shape (neither options nor a shape input)")
            target = [int(d) for d in np.asarray(self.const(op.inputs[1], "shape")).reshape(-1)]
        size = math.prod(v.tshape)
        known = math.prod(d for d in target if d != -1)
        if target.count(-1) > 1 or any(d < -1 or d == 0 for d in target) or known == 0:
            self.fail(f"unsupported target shape {target}")
        full = [d if d != -1 else size // known for d in target]
        if math.prod(full) != size or full[0] != 1:
            self.fail(f"shape mismatch: cannot reshape [1, {', '.join(map(str, v.tshape))}] to "
                      f"{target} without changing the batch")
        shape = tuple(full[1:])
        if shape == v.tshape:
            self.put(v)
        elif len(shape) == 1:
            self.put(self._flat(v))
        elif len(shape) == 3:
            self.put(self._image(v, shape))
        else:
            self.fail(f"reshape to rank {len(full)} is not supported")

    def _flat(self, v: Val) -> Val:
        if v.layout == "chw":
            return Val(v.tensor, v.info, "hwc_flat", (math.prod(v.tshape),), qp=v.qp)
        if v.layout == "raw" and len(v.tshape) != 1:
            return self.as_vec(v)
        return v  # already flat

    def _image(self, v: Val, shape: tuple[int, int, int]) -> Val:
        h, w, c = shape
        if v.layout == "hwc_flat" and v.info.shape == (c, h, w):
            return Val(v.tensor, v.info, "chw", shape, qp=v.qp)
        if v.layout in ("vec", "raw") and v.perm is None and len(v.tshape) == 1 \
                and _hwc_to_chw(h, w, c) is None:
            name, info = self.emit(L.Reshape, [v.tensor], shape=(c, h, w))
            return Val(name, info, "chw", shape, qp=v.qp)
        self.fail(f"reshape to an image [1, {h}, {w}, {c}] with several channels and pixels is "
                  "not supported (it would need an NHWC -> NCHW transpose)")

    def op_SOFTMAX(self, op: Operator):
        if op.outputs[0] not in self.m.outputs or self.users.get(op.outputs[0]):
            self.fail("SOFTMAX is supported only as the model's last operator")
        x = self.val(op.inputs[0])
        if x.layout not in ("vec", "raw") or len(x.tshape) != 1:
            self.fail("SOFTMAX is supported on flat [N, K] data only")
        self.put(self.affine(x, [L.Softmax(schema.softmax_beta(op))]))

    def _elementwise(self, op: Operator) -> tuple[Val, np.ndarray, bool]:
        """(value, constant, constant_first) of a binary op with one constant operand."""
        if len(op.inputs) != 2:
            self.fail("expected two inputs")
        a, b = op.inputs
        if a in self.vals and b not in self.vals:
            return self.val(a), self.const(b, "operand"), False
        if b in self.vals and a not in self.vals:
            return self.val(b), self.const(a, "operand"), True
        self.fail("only a computed tensor combined with a constant is supported")

    def _is_int8(self, op: Operator) -> bool:
        return any(t in self.vals and self.vals[t].qp is not None for t in op.inputs)

    def op_MUL(self, op: Operator):
        act = schema.elementwise_activation(op)
        if self._is_int8(op):
            self._mul_int8(op, act)
            return
        v, c, _ = self._elementwise(op)
        self.put(self.fused(self.affine(v, [L.Mul(self.per_channel(c, v))]), act))

    def op_ADD(self, op: Operator):
        act = schema.elementwise_activation(op)
        if self._is_int8(op):
            self._add_int8(op, act)
            return
        if len(op.inputs) == 2 and all(t in self.vals for t in op.inputs):
            self.put(self.fused(self._add_tensors(op), act))
            return
        v, c, _ = self._elementwise(op)
        self.put(self.fused(self.affine(v, [L.Add(self.per_channel(c, v))]), act))

    def _add_tensors(self, op: Operator) -> Val:
        """ADD of two computed tensors: a residual shortcut (`AddTensors`), one shape, no
        broadcasting, held the same way by the IR."""
        a, b = self.val(op.inputs[0]), self.val(op.inputs[1])
        if a.tshape != b.tshape:
            self.fail(f"ADD of shapes [1, {', '.join(map(str, a.tshape))}] and "
                      f"[1, {', '.join(map(str, b.tshape))}]: only equal shapes (no "
                      "broadcasting) are supported for two computed tensors")
        if a.layout == "raw" or b.layout == "raw":
            self.fail("ADD of the model input itself is not supported")
        same_perm = (a.perm is None and b.perm is None) or (
            a.perm is not None and b.perm is not None and np.array_equal(a.perm, b.perm))
        if a.layout != b.layout or a.info.shape != b.info.shape or not same_perm:
            self.fail("ADD of two tensors the IR holds in different layouts is not supported")
        kinds = {a.info.kind, b.info.kind}
        if "float" not in kinds and kinds != {"int"}:
            self.fail(f"ADD of {' and '.join(sorted(kinds))} tensors is not supported (a "
                      "residual ADD needs real-valued data)")
        name, info = self.emit(L.AddTensors, [a.tensor, b.tensor])
        return Val(name, info, a.layout, a.tshape, a.perm)

    def op_SUB(self, op: Operator):
        act = schema.elementwise_activation(op)
        v, c, const_first = self._elementwise(op)
        pc = self.per_channel(c, v)
        if const_first:  # c - x = (-x) + c, exactly as float32 computes it
            ops = [L.Mul(np.full_like(pc, -1.0)), L.Add(pc)]
        else:
            ops = [L.Add(-pc)]
        self.put(self.fused(self.affine(v, ops), act))

    def op_DIV(self, op: Operator):
        act = schema.elementwise_activation(op)
        v, c, const_first = self._elementwise(op)
        if const_first:
            self.fail("division by a computed tensor is not supported")
        pc = self.per_channel(c, v)
        if np.any(pc == 0):
            self.fail("division by zero")
        self.put(self.fused(self.affine(v, [L.Div(pc)]), act))

    # ------------------------------------------------------------------ real-valued ops (#11)
    def _inputs(self, op: Operator, n: int) -> None:
        if len(op.inputs) < n:
            self.fail(f"expected {n} input(s), found {len(op.inputs)}")

    def op_RELU(self, op: Operator):
        self._inputs(op, 1)
        self.put(self.relu(self.val(op.inputs[0]), "RELU"))

    def op_PRELU(self, op: Operator):
        if len(op.inputs) != 2:
            self.fail("expected input and alpha")
        v = self.val(op.inputs[0])
        if v.qp is not None:
            self._prelu_int8(op, v)
            return
        if v.info.kind != "float":
            self.fail(f"PRELU on {v.info.kind} data is not supported (only on real-valued data, "
                      "after a BatchNorm, Mul, Add or residual ADD)")
        alpha = self.per_channel(self.const(op.inputs[1], "alpha"), v)
        if not np.all(np.isfinite(alpha)):
            self.fail("alpha holds NaN or infinity")
        name, info = self.emit(L.PRelu, [v.tensor], slope=alpha)
        self.put(Val(name, info, v.layout, v.tshape, v.perm))

    def op_MEAN(self, op: Operator):
        """MEAN over H and W of an image (Keras GlobalAveragePooling2D)."""
        if len(op.inputs) != 2:
            self.fail("expected input and axes")
        v = self.val(op.inputs[0])
        axes = [int(d) for d in np.asarray(self.const(op.inputs[1], "axes")).reshape(-1)]
        if len(v.tshape) != 3 or v.layout == "hwc_flat" or sorted(d % 4 for d in axes) != [1, 2]:
            self.fail(f"MEAN is supported over H and W of an image [1, H, W, C] (axes [1, 2]), "
                      f"got axes {axes} on [1, {', '.join(map(str, v.tshape))}]")
        if v.qp is not None:
            self._mean_int8(op, self.as_chw(v), schema.reducer_keep_dims(op))
            return
        self._gap(self.as_chw(v), schema.reducer_keep_dims(op))

    def _gap(self, x: Val, keepdims: bool) -> None:
        if x.info.kind not in ("float", "int"):
            self.fail(f"a global average of {x.info.kind} data is not supported (only of "
                      "real-valued or integer data)")
        name, info = self.emit(L.GlobalAvgPool, [x.tensor], keepdims=keepdims)
        c = info.shape[0]
        self.put(Val(name, info, "chw", (1, 1, c)) if keepdims else Val(name, info, "vec", (c,)))

    def op_AVERAGE_POOL_2D(self, op: Operator):
        """Float AVERAGE_POOL_2D: over the whole map a global average, any other window an
        `AvgPool` (TFLite's order, padding excluded from the divisor); int8 is refused."""
        o = schema.pool_options(op)
        self.act_none(o.activation)
        self._inputs(op, 1)
        x = self.as_chw(self.val(op.inputs[0]))
        if x.qp is not None:
            self.fail("int8 AVERAGE_POOL_2D is not supported")
        _, h, w = x.info.shape
        whole = tuple(o.kernel) == (h, w) and (
            o.padding == "VALID" or (o.stride[0] >= h and o.stride[1] >= w))
        if whole:
            self._gap(x, True)
            return
        if min(o.kernel) < 1 or min(o.stride) < 1:
            self.fail(f"pool window {list(o.kernel)} and strides {list(o.stride)} must be >= 1")
        if x.info.kind not in ("float", "int"):
            self.fail(f"an average pool of {x.info.kind} data is not supported (only of "
                      "real-valued or integer data)")
        kernel = tuple(int(k) for k in o.kernel)
        pads = tflite_pads((h, w), kernel, o.stride, (1, 1), o.padding)
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            self.fail(f"AVERAGE_POOL_2D window {list(kernel)} with SAME padding {list(pads)} "
                      "has windows of padding only")
        name, info = self.emit(L.AvgPool, [x.tensor], kernel=kernel,
                               strides=tuple(int(s) for s in o.stride), pads=pads,
                               count_include_pad=False, float_kernel="rows")
        c, oh, ow = info.shape
        self.put(Val(name, info, "chw", (oh, ow, c)))

    def op_CONCATENATION(self, op: Operator):
        """CONCATENATION on the channels (the last axis) of images, or of flat vectors."""
        axis, act = schema.concat_options(op)
        self._inputs(op, 1)
        vs = [self.val(t) for t in op.inputs]
        rank = len(vs[0].tshape) + 1
        if axis % rank != rank - 1:
            self.fail(f"CONCATENATION is supported on the channels (last axis), got axis {axis} "
                      f"of rank {rank}")
        if rank == 4:
            vs = [self.as_chw(v) for v in vs]
            if len({v.info.shape[1:] for v in vs}) != 1:
                self.fail("shape mismatch: the images to concatenate differ in height or width")
        elif rank != 2 or any(v.layout not in ("vec", "raw") or v.perm is not None
                              or len(v.tshape) != 1 for v in vs):
            self.fail("CONCATENATION of these tensors is not supported (images [1, H, W, C] or "
                      "plain vectors [1, K])")
        qps = {v.qp for v in vs}
        if qps != {None}:
            if len(qps) != 1 or self.qp(op.outputs[0]) not in qps:
                self.fail("int8 CONCATENATION of tensors with different scales or zero points "
                          "(TFLite's int8 kernel requires equal ones)")
            if self.act8(act) != (-128, 127):
                self.fail(f"fused activation {act} on an int8 concatenation is not supported")
            name, info = self.emit(L.Concat, [v.tensor for v in vs])
            if rank == 4:
                c, h, w = info.shape
                self.put(Val(name, info, "chw", (h, w, c), None, vs[0].qp))
            else:
                self.put(Val(name, info, "vec", (info.shape[0],), None, vs[0].qp))
            return
        kinds = {v.info.kind for v in vs}
        if not (kinds <= {"bipolar", "ternary"} or kinds <= {"int", "float"}):
            self.fail(f"CONCATENATION of {' and '.join(sorted(kinds))} data is not supported")
        name, info = self.emit(L.Concat, [v.tensor for v in vs])
        if rank == 4:
            c, h, w = info.shape
            out = Val(name, info, "chw", (h, w, c))
        else:
            out = Val(name, info, "vec", (info.shape[0],))
        self.put(self.fused(out, act))

    def op_DEPTHWISE_CONV_2D(self, op: Operator):
        """A `GroupConv2d` with one group per input channel. Binary (Larq
        QuantDepthwiseConv2D: ±1 data from LceDequantize, ±a float weights with the BatchNorm
        folded in), int8 (LCE's int8 conversion), or a float depthwise conv with real weights
        (QuickNet's stem), which a calibration set makes an 8-bit layer as for CONV_2D."""
        o = schema.depthwise_options(op)
        self._inputs(op, 2)
        x = self.as_chw(self.val(op.inputs[0]))
        if x.qp is not None:
            self._depthwise_int8(op, x, o)
            return
        if x.info.kind == "float" and self.calibration is None:
            self.fail("DEPTHWISE_CONV_2D on real-valued data (a float depthwise conv) needs a "
                      "calibration set (--calibrate X.npy) to run as an 8-bit layer")
        w = self.const(op.inputs[1], "filter")
        rows = self._depthwise_rows(w, x, o)
        weights, scale, x = self._weights(rows, x, op)
        out = self._conv(x, weights, w.shape[1:3], o.stride, o.dilation, o.padding, 0,
                         groups=x.info.shape[0])
        self.put(self.fused(self._scale_bias(out, scale, op), o.activation))

    def _depthwise_rows(self, w: np.ndarray, x: Val, o) -> np.ndarray:
        """A depthwise filter [1, kh, kw, C * multiplier] as IR rows [O, kh*kw] (output
        channel c * multiplier + j reads input channel c: one input channel per row)."""
        c = x.info.shape[0]
        if w.ndim != 4 or w.shape[0] != 1:
            self.fail(f"filter must be [1, kh, kw, C * multiplier], got shape {list(w.shape)}")
        if o.multiplier < 1 or w.shape[3] != c * o.multiplier:
            self.fail(f"shape mismatch: the filter has {w.shape[3]} channels, the data {c} "
                      f"with depth multiplier {o.multiplier}")
        return w[0].transpose(2, 0, 1).reshape(w.shape[3], -1)

    def op_SIGN(self, op: Operator):
        """SIGN; the Larq spelling sign(sign(x) + c), 0 < |c| < 1, is one ±1 binarisation."""
        x = self.val(op.inputs[0])
        pattern = self._sign_add_sign(op)
        if pattern is None:
            self.put(self.binarize(x, "sign"))
            return
        add, sign2, c = pattern
        self.skip.update((add.index, sign2.index))
        self.op = sign2
        self.put(self.binarize(x, "ge0" if c > 0 else "gt0"))

    def _sign_add_sign(self, op: Operator):
        out = op.outputs[0]
        users = self.users.get(out, [])
        if out in self.m.outputs or len(users) != 1 or users[0].name != "ADD":
            return None
        add = users[0]
        other = [t for t in add.inputs if t != out]
        if len(other) != 1 or other[0] < 0 or self.tensor(other[0]).data is None:
            return None
        c = np.unique(np.asarray(self.tensor(other[0]).data, dtype=np.float64))
        if c.size != 1 or not 0 < abs(float(c[0])) < 1:
            return None
        if schema.elementwise_activation(add) != "NONE":
            return None
        mid = add.outputs[0]
        users2 = self.users.get(mid, [])
        if mid in self.m.outputs or len(users2) != 1 or users2[0].name != "SIGN":
            return None
        return add, users2[0], float(c[0])

    # ------------------------------------------------------------------ Larq Compute Engine ops
    def op_LceQuantize(self, op: Operator):
        self.put(self.binarize(self.val(op.inputs[0]), "ge0"))

    def op_LceDequantize(self, op: Operator):
        v = self.val(op.inputs[0])
        if v.info.kind != "bipolar":
            self.fail("LceDequantize of data that is not ±1")
        self.put(v)

    def op_LceBconv2d(self, op: Operator):
        a = lce.bconv_attributes(op.custom_options, self.where())
        if a.activation not in ("NONE", "RELU"):
            self.fail(f"fused activation {a.activation} is not supported (only RELU)")
        if len(op.inputs) < 2:
            self.fail("expected input and filter")
        src = self.val(op.inputs[0])
        x = self.as_chw(self.binarize(src, "ge0"))
        channels = x.info.shape[0]
        if a.channels_in not in (None, channels):
            self.fail(f"shape mismatch: channels_in={a.channels_in}, the data has {channels}")
        ft = self.tensor(op.inputs[1])
        data = self.const(op.inputs[1], "filter")
        groups = lce.bconv_groups(data, ft.type_code, channels, data.shape[0], self.where())
        values = lce.filter_values(data, ft.type_code, channels // groups, self.where())
        kernel = values.shape[1:3]
        flat = values.transpose(0, 3, 1, 2).reshape(values.shape[0], -1)
        out = self._conv(x, flat, kernel, a.stride, a.dilation, a.padding, a.pad_values,
                         groups=groups)
        out_t = self.tensor(op.outputs[0])
        if a.activation == "RELU" and out_t.type_code != 0:
            self.fail("fused RELU with a bitpacked output is not supported")
        if a.activation == "RELU":
            # QuickNet's BN(ReLU(bconv)): LCE clamps the ±1 dot product at 0, then applies
            # the BN as its post-activation multiplier and bias (both signs).
            zero = np.zeros(out.info.shape[0], np.float32)
            name, info = self.emit(L.PRelu, [out.tensor], slope=zero)
            out = Val(name, info, out.layout, out.tshape)
        if out_t.type_code == 0:
            mult = self.const(self._arg(op, 2, "post_activation_multiplier"),
                              "post_activation_multiplier")
            bias = self.const(self._arg(op, 3, "post_activation_bias"), "post_activation_bias")
            self.put(self.affine(out, [L.Mul(self.per_channel(mult, out)),
                                       L.Add(self.per_channel(bias, out))]))
        elif out_t.type_code == 2:
            if a.padding == "SAME" and a.pad_values == 0 and any(self.layers[-1].pads):
                self.fail("bitpacked output with zero padding (LCE itself refuses it)")
            thr = np.asarray(self.const(self._arg(op, 4, "thresholds"), "thresholds"))
            if thr.shape != (values.shape[0],):
                self.fail(f"thresholds of shape {list(thr.shape)} for {values.shape[0]} channels")
            k = int(flat.shape[1])
            # bit 1 (-1) iff popcount > thr; popcount = (K - y) / 2  =>  +1 iff y >= K - 2 thr
            tau = np.clip(k - 2 * thr.astype(np.int64), out.info.lo - 1, out.info.hi + 1)
            name, info = self.emit(L.Threshold, [out.tensor], tau=tau,
                                   flip=np.zeros(tau.shape, bool), zero=np.zeros(tau.shape, bool))
            self.put(Val(name, info, "chw", out.tshape))
        else:
            self.fail(f"output of type {out_t.type_name} is not supported (float32 or bitpacked)")

    def _arg(self, op: Operator, i: int, what: str) -> int:
        if len(op.inputs) <= i or op.inputs[i] < 0:
            self.fail(f"the {what} input is missing")
        return op.inputs[i]

    def op_LceBMaxPool2d(self, op: Operator):
        a = lce.pool_attributes(op.custom_options, self.where())
        x = self.as_chw(self.val(op.inputs[0]))
        if x.info.kind != "bipolar":
            self.fail("LceBMaxPool2d of data that is not ±1")
        self._pool(x, a.kernel, a.stride, a.padding)


def import_tflite(path: str | Path, input_range=None,
                  calibration: np.ndarray | None = None) -> Graph:
    """Read a .tflite file (plain TFLite or Larq Compute Engine) into source-form IR.

    `calibration` (inputs [N, *input shape], NHWC as the file takes them) quantises float
    CONV_2D / FULLY_CONNECTED layers with real weights to 8 bits (calibrate.py)."""
    model = schema.load(path)
    cal = None
    if calibration is not None:
        from .calibrate import calibrate

        cal = calibrate(model, calibration)
    return Frontend(model, input_range, cal).run()
