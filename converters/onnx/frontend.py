"""ONNX graph -> source-form IR.

The normalised graph is walked in order. Every ONNX tensor maps to either a constant (NumPy) or
a value flowing through the network (an IR tensor), or a pending comparison that a `Where`
turns into a binarisation. Each supported op has one handler; anything else is refused with the
node's name and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_sdk.errors import EdgeError, where
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph, TensorInfo, infer

from . import qonnx_lower
from .calibrate import Calibration, quantise_weights
from .loader import load
from .normalize import normalise
from .weights import classify, int8_codes

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}
INT_RANGES = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127),
              onnx.TensorProto.INT16: (-32768, 32767), onnx.TensorProto.UINT16: (0, 65535)}
# Float inputs holding integers: covers uint8 and int8 data (and ±1). `input_range` overrides.
DEFAULT_FLOAT_RANGE = (-255, 255)


@dataclass
class Val:
    """A tensor computed from the model input."""

    tensor: str  # IR tensor name
    info: TensorInfo
    clip_ok: bool = False  # behind a Clip that only a following sign may absorb


@dataclass
class Cond:
    """A pending comparison g >= 0 (ge0) or g > 0 (gt0) on IR tensor `tensor`."""

    tensor: str
    mode: str


@dataclass
class Step:
    """A comparison cast to numbers and scaled: `hi` where it holds, `lo` elsewhere.

    STE code written as `(x >= 0).float() * 2 - 1` exports as Cast, Mul, Sub; once the two
    values are +1 and -1 it is a binarisation like Where(x >= 0, 1, -1).
    """

    cond: Cond
    hi: float = 1.0
    lo: float = 0.0


class Frontend:
    def __init__(self, model: onnx.ModelProto, file: str, input_range=None,
                 calibration: Calibration | None = None):
        self.model = model
        self.file = file
        self.input_range = input_range
        self.calibration = calibration
        self.consts: dict[str, np.ndarray] = {}
        self.vals: dict[str, Val | Cond] = {}
        self.layers: list[L.Layer] = []
        self.infos: dict[str, TensorInfo] = {}
        self.counts: dict[str, int] = {}
        self.node: onnx.NodeProto | None = None
        self.tensor_map: dict[str, str] = {}  # ONNX tensor -> IR tensor holding its values

    # ------------------------------------------------------------------ helpers
    def where(self) -> str:
        n = self.node
        return where(self.file, n.name if n is not None else None, n.op_type if n else None)

    def fail(self, reason: str):
        raise EdgeError(self.where() + reason)

    def emit(self, layer_cls, inputs: list[str], **kw) -> Val:
        kind = layer_cls.kind
        i = self.counts.get(kind, 0)
        self.counts[kind] = i + 1
        name = f"{kind}{i}"
        src = self.node.name or self.node.op_type if self.node is not None else ""
        layer = layer_cls(name=name, inputs=inputs, output=name, source=src, **kw)
        info = infer(layer, [self.infos[t] for t in inputs])
        self.layers.append(layer)
        self.infos[name] = info
        return Val(name, info)

    def const(self, name: str, what: str = "input") -> np.ndarray:
        if name not in self.consts:
            self.fail(f"{what} '{name}' must be a constant (initializer)")
        return self.consts[name]

    def val(self, name: str) -> Val:
        v = self.vals.get(name)
        if isinstance(v, (Cond, Step)):
            self.fail(f"comparison result '{name}' is used as data before it is a ±1 "
                      "binarisation (expected Where(c, 1, -1) or Cast(c) * 2 - 1)")
        if v is None:
            self.fail(f"input '{name}' is neither a constant nor computed from the model input")
        if v.clip_ok and self.node.op_type not in ("Sign", "Where", "GreaterOrEqual", "Greater",
                                                   "Less", "LessOrEqual", "Identity"):
            self.fail("a Clip is only supported directly before a sign/comparison (where it "
                      "does not change the sign)")
        return v

    def attrs(self) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    def per_channel(self, c: np.ndarray, v: Val) -> np.ndarray:
        """A constant broadcast against [1, *shape] that varies at most along channels."""
        c = np.asarray(c, dtype=np.float64)
        full = (1,) + v.info.shape
        try:
            b = np.broadcast_to(c, np.broadcast_shapes(c.shape, full))
        except ValueError:
            self.fail(f"shape mismatch: constant of shape {list(c.shape)} does not broadcast to "
                      f"{list(full)}")
        if b.shape != full:
            self.fail(f"shape mismatch: constant of shape {list(c.shape)} would change the data "
                      f"shape {list(full)}")
        flat = b.reshape(full[1], -1) if len(full) > 1 else b.reshape(1, -1)
        if not np.all(flat == flat[:, :1]):
            self.fail("only per-channel constants are supported here")
        return flat[:, 0].astype(np.float32)

    # ------------------------------------------------------------------ walk
    def run(self) -> Graph:
        g = self.model.graph
        for t in g.initializer:
            self.consts[t.name] = numpy_helper.to_array(t)
        inputs = [vi for vi in g.input if vi.name not in self.consts]
        if len(inputs) != 1:
            raise EdgeError(f"{self.file}: expected one model input, found {len(inputs)}")
        if len(g.output) != 1:
            raise EdgeError(f"{self.file}: expected one model output, found {len(g.output)}")
        self._input(inputs[0])
        for node in g.node:
            self.node = node
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain == qonnx_lower.EDGE_DOMAIN and node.op_type == "Quantize":
                handler = self.op_edge_Quantize
            elif node.domain not in ("", "ai.onnx"):
                handler = None
            if handler is None:
                dom = f"{node.domain}." if node.domain not in ("", "ai.onnx") else ""
                self.fail(f"unsupported operator {dom}{node.op_type}")
            handler(node)
            self._record(node)
        self.node = None
        out_name = g.output[0].name
        out = self.vals.get(out_name)
        if not isinstance(out, Val):
            raise EdgeError(f"{self.file}: output '{out_name}' is not computed from the input")
        if out.clip_ok:
            raise EdgeError(f"{self.file}: a Clip before the output is not supported")
        opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        src = {"file": Path(self.file).name, "format": "onnx", "opset": int(opset),
               "producer": f"{self.model.producer_name} {self.model.producer_version}".strip(),
               "input_name": self._input_name, "output_name": out_name,
               "tensors": dict(self.tensor_map)}
        return Graph(Path(self.file).stem, self.layers, ["input"], [out.tensor], src)

    def _record(self, node: onnx.NodeProto) -> None:
        """Note which IR tensor holds the values of each output of `node`, so the layer diff
        (`edge-sdk diff`) can ask the source's executor for exactly those tensors. Skipped:
        data behind a Clip that only the following sign absorbs (the IR keeps it unclipped),
        the model input (the IR holds it quantised) and casts that could round."""
        if node.op_type == "Cast" and self.attrs().get("to") not in (onnx.TensorProto.FLOAT,
                                                                     onnx.TensorProto.DOUBLE):
            return
        for name in node.output:
            v = self.vals.get(name)
            if isinstance(v, Val) and not v.clip_ok and v.tensor != "input":
                self.tensor_map[name] = v.tensor

    def _input(self, vi: onnx.ValueInfoProto) -> None:
        tt = vi.type.tensor_type
        dims = tt.shape.dim
        if len(dims) < 2:
            raise EdgeError(f"{self.file}: input '{vi.name}' needs a batch dimension and data "
                            f"dimensions, has rank {len(dims)}")
        shape = []
        for d in dims[1:]:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise EdgeError(f"{self.file}: input '{vi.name}' has a dynamic non-batch "
                                "dimension; only the batch may be dynamic")
            shape.append(int(d.dim_value))
        if tt.elem_type in FLOAT_TYPES:
            lo, hi = DEFAULT_FLOAT_RANGE
        elif tt.elem_type in INT_RANGES:
            lo, hi = INT_RANGES[tt.elem_type]
        else:
            raise EdgeError(f"{self.file}: input '{vi.name}' has unsupported element type "
                            f"{onnx.TensorProto.DataType.Name(tt.elem_type)}")
        if self.input_range is not None:
            lo, hi = (int(v) for v in self.input_range)
            if lo > hi:
                raise EdgeError(f"input range [{lo}, {hi}] is empty")
        self._input_name = vi.name
        layer = L.Input(name="input", inputs=[], output="input", source=vi.name,
                        shape=tuple(shape), lo=lo, hi=hi)
        self.layers.append(layer)
        self.infos["input"] = infer(layer, [])
        self.vals[vi.name] = Val("input", self.infos["input"])

    # ------------------------------------------------------------------ plumbing ops
    def op_Constant(self, node):
        a = self.attrs()
        if "value" in a:
            self.consts[node.output[0]] = numpy_helper.to_array(a["value"])
        elif "value_float" in a or "value_floats" in a:
            self.consts[node.output[0]] = np.asarray(
                a.get("value_float", a.get("value_floats")), np.float32)
        elif "value_int" in a or "value_ints" in a:
            self.consts[node.output[0]] = np.asarray(
                a.get("value_int", a.get("value_ints")), np.int64)
        else:
            self.fail("only numeric Constant nodes are supported")

    def _alias(self, node):
        src = node.input[0]
        if src in self.consts:
            self.consts[node.output[0]] = self.consts[src]
        else:
            self.vals[node.output[0]] = self.vals.get(src) or self.val(src)

    op_Identity = _alias

    def op_Dropout(self, node):
        if len(node.output) > 1 and node.output[1]:
            self.fail("Dropout with a mask output is not supported")
        self._alias(node)

    def op_Cast(self, node):
        to = self.attrs().get("to")
        v = self.vals.get(node.input[0])
        if isinstance(v, Val) and to in FLOAT_TYPES:
            self.vals[node.output[0]] = v
            return
        if isinstance(v, Cond) and to in FLOAT_TYPES:
            self.vals[node.output[0]] = Step(v)
            return
        self.fail("only Cast to a float type, of data or of a comparison, is supported")

    def _step_arith(self, node, op: str) -> bool:
        """Mul/Add/Sub of a `Step` by a scalar constant; emits the binarisation at ±1."""
        a, b = node.input[0], node.input[1]
        st, other, swapped = (self.vals.get(a), b, False)
        if not isinstance(st, Step):
            st, other, swapped = self.vals.get(b), a, True
        if not isinstance(st, Step):
            return False
        c = np.unique(np.asarray(self.const(other, "constant"), np.float64))
        if c.size != 1:
            self.fail("a cast comparison may only be scaled and shifted by scalars")
        c = float(c[0])
        if op == "Mul":
            hi, lo = st.hi * c, st.lo * c
        elif op == "Add":
            hi, lo = st.hi + c, st.lo + c
        else:  # Sub
            hi, lo = (c - st.hi, c - st.lo) if swapped else (st.hi - c, st.lo - c)
        if (hi, lo) in ((1.0, -1.0), (-1.0, 1.0)):
            self.vals[node.output[0]] = self._binarize_cond(st.cond, plus_when_true=hi == 1.0)
        else:
            self.vals[node.output[0]] = Step(st.cond, hi, lo)
        return True

    def op_Flatten(self, node):
        v = self.val(node.input[0])
        axis = self.attrs().get("axis", 1)
        if axis not in (1, -len(v.info.shape)):
            self.fail(f"Flatten with axis={axis} would merge the batch dimension")
        out = v if len(v.info.shape) == 1 else self.emit(L.Flatten, [v.tensor])
        self.vals[node.output[0]] = out

    def op_Reshape(self, node):
        v = self.val(node.input[0])
        s = [int(d) for d in self.const(node.input[1], "shape")]
        if self.attrs().get("allowzero", 0) and 0 in s:
            self.fail("Reshape with allowzero=1 and a 0 in the shape is not supported")
        full = (1,) + v.info.shape
        try:
            resolved = np.empty(full, dtype=np.uint8).reshape(
                [full[i] if d == 0 and i < len(full) else d for i, d in enumerate(s)]
            ).shape
        except ValueError:
            self.fail(f"shape mismatch: cannot reshape {list(full)} to {s}")
        if not s or s[0] not in (0, 1, -1) or resolved[0] != 1:
            self.fail(f"Reshape to {s} changes the batch dimension")
        shape = tuple(resolved[1:])
        if shape == v.info.shape:
            out = v
        elif len(shape) == 1:
            out = self.emit(L.Flatten, [v.tensor])
        else:
            out = self.emit(L.Reshape, [v.tensor], shape=shape)
        self.vals[node.output[0]] = out

    def op_Transpose(self, node):
        """A permutation of the data dimensions (the batch stays first): the IR `Transpose`.
        Keras-to-ONNX exporters start image models with one, NHWC input to NCHW."""
        v = self.val(node.input[0])
        rank = len(v.info.shape) + 1
        perm = [int(p) for p in self.attrs().get("perm", range(rank - 1, -1, -1))]
        if sorted(perm) != list(range(rank)):
            self.fail(f"perm {perm} is not a permutation of {rank} dimensions")
        if perm[0] != 0:
            self.fail(f"Transpose with perm {perm} moves the batch dimension")
        if perm == list(range(rank)):
            self.vals[node.output[0]] = v
            return
        self.vals[node.output[0]] = self.emit(L.Transpose, [v.tensor],
                                              perm=tuple(p - 1 for p in perm[1:]))

    # ------------------------------------------------------------------ linear layers
    def _dense(self, v: Val, w_ok: np.ndarray, bias: np.ndarray | None, alpha: float = 1.0):
        if len(v.info.shape) != 1:
            self.fail(f"dense layer needs flat [N, K] data, got [N, {', '.join(map(str, v.info.shape))}]")
        if w_ok.ndim != 2:
            self.fail(f"weights must be 2-D, got shape {list(w_ok.shape)}")
        if w_ok.shape[1] != v.info.shape[0]:
            self.fail(f"shape mismatch: weights take K={w_ok.shape[1]} inputs, the data has "
                      f"{v.info.shape[0]}")
        weights, scale, v = self._weights(w_ok, v)
        out = self.emit(L.Dense, [v.tensor], weights=weights)
        return self._post_linear(out, scale, bias, alpha)

    def _weights(self, w: np.ndarray, v: Val) -> tuple[L.Weights, np.ndarray | None, Val]:
        """The layer's weights [O, ...] (the layer's order) as IR weights, their per-row
        float scale for the accumulator (or None), and the data the layer reads.

        Binary/ternary (±a per row) first; then integer codes in [-127, 127] (8-bit
        layers, exact); then, with a calibration set, float weights quantised to 8 bits
        (calibrate.py), a `Quantize` inserted before real-valued data."""
        try:
            cw = classify(w, self.where())
            return L.IntWeights(cw.values), cw.scale, v
        except EdgeError as exc:
            codes = int8_codes(w)
            if codes is not None:
                return L.Int8Weights(codes), None, v
            if self.calibration is None:
                raise EdgeError(f"{exc}; float 8-bit layers need a calibration set "
                                "(--calibrate X.npy)") from None
        return self._calibrated(w, v)

    def _calibrated(self, w: np.ndarray, v: Val) -> tuple[L.Weights, np.ndarray, Val]:
        rows = np.asarray(w, np.float32).reshape(np.shape(w)[0], -1)
        if not np.all(np.isfinite(rows)):
            self.fail("weights hold NaN or infinity")
        codes, w_scale = quantise_weights(rows)
        unit = w_scale
        if v.info.kind == "float":
            s_a = self.calibration.act_scale(self.node.input[0])
            if s_a is None:  # pragma: no cover - calibrate() measures every linear input
                self.fail("the calibration set did not reach this layer's input")
            v = self.emit(L.Quantize, [v.tensor], scale=s_a, zero_point=0, lo=-127, hi=127,
                          in_source=False)
            unit = (w_scale * np.float32(s_a)).astype(np.float32)
        weights = L.Int8Weights(codes, float_values=rows, unit=unit)
        return weights, unit, v

    def op_edge_Quantize(self, node):
        """edge_sdk.Quantize (from an 8-bit QONNX Quant on data, qonnx_lower.py)."""
        v = self.val(node.input[0])
        if v.info.kind in ("bipolar", "ternary"):
            self.fail("an 8-bit quantiser of ±1 data is not supported")
        a = self.attrs()
        if self._absorb_input_quantizer(v, a):
            self.vals[node.output[0]] = self.vals[node.input[0]]
            return
        self.vals[node.output[0]] = self.emit(
            L.Quantize, [v.tensor], scale=float(a["scale"]), zero_point=int(a["zero_point"]),
            lo=int(a["lo"]), hi=int(a["hi"]), in_source=True)

    def _post_linear(self, out: Val, scale, bias, alpha=1.0) -> Val:
        ops: list[L.FloatOp] = []
        if scale is not None:
            ops.append(L.Mul(scale))
        if alpha != 1.0:
            ops.append(L.Mul(np.full(out.info.shape[0], alpha, dtype=np.float32)))
        if bias is not None:
            ops.append(L.Add(self.per_channel(bias, out)))
        return self.emit(L.Affine, [out.tensor], ops=ops) if ops else out

    def op_Gemm(self, node):
        a = self.attrs()
        if a.get("transA", 0):
            self.fail("Gemm with transA=1 is not supported")
        v = self.val(node.input[0])
        b = np.asarray(self.const(node.input[1], "weight"))
        w = b if a.get("transB", 0) else b.T
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.asarray(self.const(node.input[2], "bias"), np.float32) * np.float32(
                a.get("beta", 1.0))
        self.vals[node.output[0]] = self._dense(v, w, bias, float(np.float32(a.get("alpha", 1.0))))

    def op_MatMul(self, node):
        if node.input[0] in self.consts:
            self.fail("MatMul with a constant on the left is not supported")
        v = self.val(node.input[0])
        b = np.asarray(self.const(node.input[1], "weight"))
        if b.ndim != 2:
            self.fail(f"MatMul weights must be 2-D, got shape {list(b.shape)}")
        self.vals[node.output[0]] = self._dense(v, b.T, None)

    def op_Conv(self, node):
        a = self.attrs()
        v = self.val(node.input[0])
        w = np.asarray(self.const(node.input[1], "weight"))
        if w.ndim != 4:
            self.fail(f"only 2-D convolutions are supported (weight rank {w.ndim})")
        groups = int(a.get("group", 1))
        if len(v.info.shape) != 3:
            self.fail(f"conv needs CHW data, got {list(v.info.shape)}")
        o, c, kh, kw = (int(d) for d in w.shape)
        if groups < 1 or c * groups != v.info.shape[0] or o % groups:
            self.fail(f"shape mismatch: weights take {c} input channels per group x {groups} "
                      f"groups, the data has {v.info.shape[0]}")
        ks = tuple(a.get("kernel_shape", (kh, kw)))
        if ks != (kh, kw):
            self.fail(f"kernel_shape {list(ks)} does not match the weights {[kh, kw]}")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        dil = tuple(int(d) for d in a.get("dilations", (1, 1)))
        pads = self._pads(a, v.info.shape[1:], (kh, kw), strides, dil)
        weights, scale, v = self._weights(w, v)
        kw_args = {"groups": groups} if groups != 1 else {}
        out = self.emit(L.GroupConv2d if groups != 1 else L.Conv2d, [v.tensor],
                        weights=weights, in_channels=c * groups,
                        kernel=(kh, kw), strides=strides, pads=pads, dilations=dil, **kw_args)
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = np.asarray(self.const(node.input[2], "bias"), np.float32).reshape(1, -1, 1, 1)
        self.vals[node.output[0]] = self._post_linear(out, scale, bias)

    def _pads(self, a, hw, k, strides, dil) -> tuple[int, int, int, int]:
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("NOTSET", ""):
            p = [int(x) for x in a.get("pads", (0, 0, 0, 0))]
            if len(p) != 4 or min(p) < 0:
                self.fail(f"bad pads {p}")
            return (p[0], p[1], p[2], p[3])
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto not in ("SAME_UPPER", "SAME_LOWER"):
            self.fail(f"unknown auto_pad {auto}")
        out = []
        for size, kk, s, d in zip(hw, k, strides, dil):
            total = max((math.ceil(size / s) - 1) * s + (kk - 1) * d + 1 - size, 0)
            small = total // 2
            out.append((small, total - small) if auto == "SAME_UPPER" else (total - small, small))
        return (out[0][0], out[1][0], out[0][1], out[1][1])

    # ------------------------------------------------------------------ float ops
    def _affine(self, node, op: L.FloatOp | list[L.FloatOp], v: Val) -> None:
        ops = op if isinstance(op, list) else [op]
        self.vals[node.output[0]] = self.emit(L.Affine, [v.tensor], ops=ops)

    def _val_const(self, node) -> tuple[Val, np.ndarray, bool]:
        a, b = node.input[0], node.input[1]
        if a in self.consts and b in self.consts:  # pragma: no cover - folded away
            self.fail("constant expression was not folded")
        if b in self.consts:
            return self.val(a), self.consts[b], False
        if a in self.consts:
            return self.val(b), self.consts[a], True
        self.fail(f"{node.op_type} of two computed tensors is not supported (of two tensors "
                  "only Add, a residual connection, is)")

    def op_BatchNormalization(self, node):
        if self.attrs().get("training_mode", 0):
            self.fail("BatchNormalization in training mode is not supported")
        if len([o for o in node.output if o]) > 1:
            self.fail("BatchNormalization with running-statistics outputs is not supported")
        v = self.val(node.input[0])
        gamma, beta, mean, var = (np.asarray(self.const(n), np.float32) for n in node.input[1:5])
        c = v.info.shape[0]
        for name, arr in (("scale", gamma), ("B", beta), ("mean", mean), ("var", var)):
            if arr.shape != (c,):
                self.fail(f"shape mismatch: {name} has shape {list(arr.shape)} for {c} channels")
        if not np.all(np.isfinite(np.stack([gamma, beta, mean, var]))):
            self.fail("parameters hold NaN or infinity")
        eps = float(np.float32(self.attrs().get("epsilon", 1e-5)))
        if np.any(var.astype(np.float32) + np.float32(eps) <= 0):
            self.fail("var + epsilon must be positive")
        self._affine(node, L.BatchNorm(gamma, beta, mean, var, eps), v)

    def op_Mul(self, node):
        if self._step_arith(node, "Mul"):
            return
        v, c, _ = self._val_const(node)
        self._affine(node, L.Mul(self.per_channel(c, v)), v)

    def op_Add(self, node):
        if self._step_arith(node, "Add"):
            return
        if not any(t in self.consts for t in node.input[:2]):
            a, b = self.val(node.input[0]), self.val(node.input[1])
            if a.info.shape != b.info.shape:
                self.fail(f"Add of shapes {list(a.info.shape)} and {list(b.info.shape)}: only "
                          "equal shapes (no broadcasting) are supported for two tensors")
            if "float" not in (a.info.kind, b.info.kind) and a.info.kind != "int":
                self.fail("Add of two ±1 tensors is not supported (not a residual connection)")
            self.vals[node.output[0]] = self.emit(L.AddTensors, [a.tensor, b.tensor])
            return
        v, c, _ = self._val_const(node)
        self._affine(node, L.Add(self.per_channel(c, v)), v)

    def op_Sub(self, node):
        if self._step_arith(node, "Sub"):
            return
        v, c, swapped = self._val_const(node)
        pc = self.per_channel(c, v)
        ops = [L.Mul(np.full_like(pc, -1.0)), L.Add(pc)] if swapped else [L.Add(-pc)]
        self._affine(node, ops, v)

    def op_Div(self, node):
        v, c, swapped = self._val_const(node)
        if swapped:
            self.fail("division by a computed tensor is not supported")
        pc = self.per_channel(c, v)
        if np.any(pc == 0):
            self.fail("division by zero")
        self._affine(node, L.Div(pc), v)

    def op_Neg(self, node):
        v = self.val(node.input[0])
        self._affine(node, L.Mul(np.full(v.info.shape[0], -1.0, np.float32)), v)

    # ------------------------------------------------------------------ activations
    def op_Sign(self, node):
        v = self.val(node.input[0])
        self.vals[node.output[0]] = self.emit(L.Binarize, [v.tensor], mode="sign")

    def _compare(self, node, mode: str, less: bool):
        v, c, swapped = self._val_const(node)
        pc = self.per_channel(c, v)
        # x >= c  <=>  x - c >= 0 ; x <= c  <=>  -(x - c) >= 0 ; swapped operands mirror.
        negate = less != swapped
        ops: list[L.FloatOp] = []
        if np.any(pc != 0):
            ops.append(L.Add(-pc))
        if negate:
            ops.append(L.Mul(np.full_like(pc, -1.0)))
        t = self.emit(L.Affine, [v.tensor], ops=ops).tensor if ops else v.tensor
        self.vals[node.output[0]] = Cond(t, mode)

    def op_GreaterOrEqual(self, node):
        self._compare(node, "ge0", less=False)

    def op_Greater(self, node):
        self._compare(node, "gt0", less=False)

    def op_LessOrEqual(self, node):
        self._compare(node, "ge0", less=True)

    def op_Less(self, node):
        self._compare(node, "gt0", less=True)

    def op_Where(self, node):
        cond = self.vals.get(node.input[0])
        if not isinstance(cond, Cond):
            self.fail("Where is supported as a binarisation: Where(x >= c, 1, -1)")
        a = self.const(node.input[1], "true value")
        b = self.const(node.input[2], "false value")
        ua, ub = np.unique(np.asarray(a)), np.unique(np.asarray(b))
        if ua.size != 1 or ub.size != 1 or {float(ua[0]), float(ub[0])} != {1.0, -1.0}:
            self.fail("Where must choose between constants +1 and -1 to be a binarisation")
        self.vals[node.output[0]] = self._binarize_cond(cond, plus_when_true=float(ua[0]) == 1.0)

    def _binarize_cond(self, cond: Cond, plus_when_true: bool) -> Val:
        t, mode = cond.tensor, cond.mode
        if not plus_when_true:
            # +1 where the comparison fails: not(g >= 0) = (-g > 0), not(g > 0) = (-g >= 0)
            info = self.infos[t]
            t = self.emit(L.Affine, [t], ops=[L.Mul(np.full(info.shape[0], -1.0,
                                                            np.float32))]).tensor
            mode = "gt0" if mode == "ge0" else "ge0"
        return self.emit(L.Binarize, [t], mode=mode)

    def op_Relu(self, node):
        v = self.val(node.input[0])
        if self._narrow_input(v, 0, None):
            self.vals[node.output[0]] = self.vals[node.input[0]]
            return
        if v.info.kind == "float" and v.info.shape:
            zero = np.zeros(v.info.shape[0], np.float32)
            self.vals[node.output[0]] = self.emit(L.PRelu, [v.tensor], slope=zero)
            return
        self.fail("Relu is only supported where it is a no-op (on the model input, which it "
                  "restricts to non-negative integers); on ±1 data it maps -1 to 0")

    def _absorb_input_quantizer(self, v: Val, a: dict) -> bool:
        """An 8-bit quantiser (zero point 0) right on the model input is the model's own
        input quantisation: the Input takes real values and rounds them as the quantiser
        does (layers.Input.rounding), so a real-valued input needs no exact-integer form."""
        if (not self._is_input(v) or any(layer.inputs for layer in self.layers)
                or int(a["zero_point"]) != 0 or self.input_range is not None):
            return False
        layer = self.layers[0]
        if layer.scale != 1.0 or layer.zero_point != 0 or layer.rounding:
            return False
        layer.lo, layer.hi = int(a["lo"]), int(a["hi"])
        layer.scale, layer.rounding = float(a["scale"]), "half_even"
        self.infos["input"] = infer(layer, [])
        self.vals[self._input_name] = Val("input", self.infos["input"])
        return True

    def _narrow_input(self, v: Val, lo: float | None, hi: float | None) -> bool:
        """A Relu/Clip right on the model input declares its domain: narrow the input range.

        Inputs outside the narrowed range are then refused by the golden model rather than
        clamped, so the op stays a no-op on everything that runs.
        """
        if not self._is_input(v) or any(layer.inputs for layer in self.layers):
            return False
        layer = self.layers[0]
        new_lo = layer.lo if lo is None else max(layer.lo, math.ceil(lo))
        new_hi = layer.hi if hi is None else min(layer.hi, math.floor(hi))
        if new_lo > new_hi:
            self.fail(f"clamps the input to an empty integer range [{new_lo}, {new_hi}]")
        layer.lo, layer.hi = new_lo, new_hi
        self.infos["input"] = infer(layer, [])
        self.vals[self._input_name] = Val("input", self.infos["input"])
        return True

    def op_Clip(self, node):
        v = self.val(node.input[0])
        a = self.attrs()
        lo = a.get("min", -np.inf)
        hi = a.get("max", np.inf)
        if len(node.input) > 1 and node.input[1]:
            lo = float(self.const(node.input[1], "min"))
        if len(node.input) > 2 and node.input[2]:
            hi = float(self.const(node.input[2], "max"))
        info = v.info
        if info.kind in ("bipolar", "ternary") and lo <= info.lo and hi >= info.hi:
            self.vals[node.output[0]] = v  # the data already lies inside [lo, hi]
            return
        if self._narrow_input(v, None if lo == -np.inf else lo, None if hi == np.inf else hi):
            self.vals[node.output[0]] = self.vals[node.input[0]]
            return
        if lo < 0 < hi and info.kind in ("int", "float"):
            self.vals[node.output[0]] = Val(v.tensor, v.info, clip_ok=True)
            return
        self.fail(f"Clip({lo:g}, {hi:g}) changes the data here; it is supported only as a no-op "
                  "or directly before a sign")

    def op_PRelu(self, node):
        v = self.val(node.input[0])
        if v.info.kind != "float":
            self.fail("PRelu is supported on real-valued data (after a BatchNorm, Mul or Add)")
        slope = np.asarray(self.const(node.input[1], "slope"), np.float32)
        self.vals[node.output[0]] = self.emit(L.PRelu, [v.tensor],
                                              slope=self.per_channel(slope, v))

    def op_GlobalAveragePool(self, node):
        v = self.val(node.input[0])
        if len(v.info.shape) != 3:
            self.fail(f"GlobalAveragePool needs CHW data, got {list(v.info.shape)}")
        self.vals[node.output[0]] = self.emit(L.GlobalAvgPool, [v.tensor], keepdims=True)

    def op_ReduceMean(self, node):
        v = self.val(node.input[0])
        a = self.attrs()
        if len(node.input) > 1 and node.input[1]:
            axes = [int(d) for d in np.asarray(self.const(node.input[1], "axes")).ravel()]
        else:
            axes = [int(d) for d in a.get("axes", [])]
        rank = len(v.info.shape) + 1
        if len(v.info.shape) != 3 or sorted(d % rank for d in axes) != [2, 3]:
            self.fail(f"ReduceMean is supported over H and W of CHW data (axes [2, 3]), got "
                      f"axes {axes} on {list(v.info.shape)}")
        self.vals[node.output[0]] = self.emit(L.GlobalAvgPool, [v.tensor],
                                              keepdims=bool(a.get("keepdims", 1)),
                                              float_kernel="ReduceMean")

    def op_AveragePool(self, node):
        """Windowed average pool of real-valued or integer data (layers.AvgPool): kernel_shape,
        strides, pads / auto_pad, count_include_pad; ceil_mode only where it does not change the
        output size, no dilations."""
        a = self.attrs()
        v = self.val(node.input[0])
        if len(v.info.shape) != 3:
            self.fail(f"AveragePool needs CHW data, got {list(v.info.shape)}")
        if v.info.kind in ("bipolar", "ternary"):
            self.fail("AveragePool of ±1 data is not supported (its mean is no longer ±1); "
                      "average the real-valued map before the sign")
        k = tuple(int(x) for x in a.get("kernel_shape", ()))
        if len(k) != 2:
            self.fail(f"only 2-D AveragePool is supported (kernel_shape {list(k)})")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        if tuple(int(d) for d in a.get("dilations", (1, 1))) != (1, 1):
            self.fail("AveragePool with dilations is not supported")
        pads = self._pads(a, v.info.shape[1:], k, strides, (1, 1))
        if max(pads[0], pads[2]) >= k[0] or max(pads[1], pads[3]) >= k[1]:
            self.fail(f"AveragePool pads {list(pads)} must be smaller than the kernel "
                      f"{list(k)}")
        if a.get("ceil_mode", 0):
            for size, kk, st, p0, p1 in zip(v.info.shape[1:], k, strides, pads[:2], pads[2:]):
                if (size + p0 + p1 - kk) % st:
                    self.fail("AveragePool with ceil_mode=1 that changes the output size is "
                              "not supported")
        # onnxruntime runs AveragePool-7..18 on MLAS's pooling kernel, AveragePool-19 (the
        # opset that added dilations) on its own loop: two float32 summation orders
        opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        self.vals[node.output[0]] = self.emit(
            L.AvgPool, [v.tensor], kernel=k, strides=strides, pads=pads,
            count_include_pad=bool(a.get("count_include_pad", 0)),
            float_kernel="mlas" if opset < 19 else "rows")

    def op_Concat(self, node):
        vs = [self.val(name) for name in node.input]
        rank = len(vs[0].info.shape) + 1
        axis = int(self.attrs().get("axis", 1))
        if axis % rank != 1:
            self.fail(f"Concat is supported on the channels (axis 1), got axis {axis}")
        kinds = {v.info.kind for v in vs}
        if not (kinds <= {"bipolar", "ternary"} or kinds <= {"int", "float"}):
            self.fail(f"Concat of {' and '.join(sorted(kinds))} data is not supported")
        self.vals[node.output[0]] = self.emit(L.Concat, [v.tensor for v in vs])

    def _is_input(self, v: Val) -> bool:
        return v.tensor == "input"

    def op_MaxPool(self, node):
        a = self.attrs()
        if len([o for o in node.output if o]) > 1:
            self.fail("MaxPool with an Indices output is not supported")
        v = self.val(node.input[0])
        if len(v.info.shape) != 3:
            self.fail(f"MaxPool needs CHW data, got {list(v.info.shape)}")
        k = tuple(int(x) for x in a.get("kernel_shape", ()))
        if len(k) != 2:
            self.fail(f"only 2-D MaxPool is supported (kernel_shape {list(k)})")
        strides = tuple(int(s) for s in a.get("strides", (1, 1)))
        if tuple(a.get("dilations", (1, 1))) != (1, 1):
            self.fail("MaxPool with dilations is not supported")
        pads = self._pads(a, v.info.shape[1:], k, strides, (1, 1))
        if a.get("ceil_mode", 0):
            begin, end = pads[:2], pads[2:]
            for size, kk, s, p0, p1 in zip(v.info.shape[1:], k, strides, begin, end):
                if (size + p0 + p1 - kk) % s:
                    self.fail("MaxPool with ceil_mode=1 that changes the output size is not "
                              "supported")
        self.vals[node.output[0]] = self.emit(L.MaxPool, [v.tensor], kernel=k, strides=strides,
                                              pads=pads)


def import_onnx(path: str | Path, input_range=None, calibration=None) -> Graph:
    """Load, check and normalise an ONNX file and return its source-form IR."""
    return import_model(load(path), str(path), input_range, calibration)


def import_model(model: onnx.ModelProto, file: str, input_range=None,
                 calibration: np.ndarray | None = None) -> Graph:
    """Source-form IR of an already loaded (and vetted) model.

    QONNX quantisers are first rewritten into the standard ops this frontend reads.
    `calibration` (inputs [N, *input shape]) quantises float Conv/Gemm/MatMul layers of a
    plain ONNX model to 8 bits (calibrate.py).
    """
    norm = normalise(model, file)
    if not qonnx_lower.has_qonnx(norm):
        cal = None
        if calibration is not None:
            from .calibrate import calibrate

            cal = calibrate(norm, calibration, file)
        return Frontend(norm, file, input_range, cal).run()
    if calibration is not None:
        raise EdgeError(f"{file}: a calibration set is for plain ONNX models with float "
                        "layers; this QONNX model's quantisers already fix its 8-bit scales")
    graph = Frontend(normalise(qonnx_lower.lower(norm, file), file), file, input_range).run()
    graph.source["format"] = "qonnx"
    return graph
