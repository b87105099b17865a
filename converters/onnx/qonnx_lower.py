"""QONNX graph -> the standard ONNX ops the frontend reads, value for value.

Runs on a normalised model (constants folded, shapes inferred), walking the nodes in order:

- A quantiser whose data input is a constant (a weight) is evaluated with the reference
  executor's float arithmetic (qonnx_ops.py) and becomes an initializer: binary weights arrive as
  ±scale, 2-bit ones as {-scale, 0, +scale}; anything with more integer levels is refused here,
  naming the Quant node. An 8-bit Quant of a weight (zero point 0, codes in [-128, 127]) is the
  exception (issue #11): the Conv/Gemm/MatMul reading it runs on the integer codes, and the
  weight scale becomes a Mul on its accumulator (`linear_int8`).
- An 8-bit Quant on data (the input of an 8-bit last layer) becomes an `edge_sdk.Quantize`
  node (per-tensor scale, integer zero point, the code range) giving q - z, carried on as a
  tensor scaled by the Quant's scale like the binary magnitudes below.
- A binarising quantiser on data (BipolarQuant, 1-bit Quant, MultiThreshold with one threshold
  per channel, each possibly after Trunc nodes) becomes `Where(x >= t, 1, -1)` (or `x < t`)
  with the exact float32 threshold t of qonnx_threshold.py, times its magnitude a.
- The magnitude a (a scalar) is carried past shape ops and MaxPool, and past the next
  Gemm/MatMul/Conv as a Mul on its accumulator (a * (±1 . W) = (±a) . W), so the linear layer
  still sees ±1 data. Anywhere else the scaled tensor is rebuilt with a Mul.
- Multi-bit data (a 2-bit activation, a Trunc that no binarisation follows) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_sdk.errors import EdgeError, where

from . import qonnx_ops as Q
from .qonnx_threshold import search

COMMUTING = ("Identity", "Dropout", "Flatten", "Reshape", "MaxPool", "Transpose", "Squeeze",
             "Unsqueeze")
LINEAR = ("Gemm", "MatMul", "Conv")
DEFAULT_DOMAINS = ("", "ai.onnx")
EDGE_DOMAIN = "edge_sdk"  # edge_sdk.Quantize: an 8-bit Quant on data, read by the frontend


def has_qonnx(model: onnx.ModelProto) -> bool:
    return any(Q.is_qonnx_node(n) for n in model.graph.node)


@dataclass
class Scaled:
    """A tensor whose real value is `scale * (the ±1 tensor `name`)`."""

    name: str
    scale: np.float32
    rebuilt: bool = False


@dataclass
class Chain:
    """A Trunc output that only a binarising quantiser reads: kept as a function of `source`."""

    source: str
    specs: list  # applied in order
    nodes: list[str]


class Lowering:
    def __init__(self, model: onnx.ModelProto, file: str):
        self.model = model
        self.file = file
        g = model.graph
        self.consts: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t)
                                              for t in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS:
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.ranks, self.elem = _facts(model)
        self.used = {t.name for t in g.initializer} | {v.name for v in g.input}
        for n in g.node:
            self.used.update(n.input)
            self.used.update(n.output)
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in g.output}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.scaled: dict[str, Scaled] = {}
        self.chains: dict[str, Chain] = {}
        self.uneven: set[str] = set()  # ±a_c data, a varying per channel
        # 8-bit weights (issue #11): folded Quant output -> (integer codes, the Quant's scale)
        self.int8: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.node: onnx.NodeProto | None = None

    # ------------------------------------------------------------------ helpers
    def fail(self, reason: str):
        n = self.node
        raise EdgeError(where(self.file, n.name if n else None, n.op_type if n else None) + reason)

    def fresh(self, hint: str) -> str:
        name, k = hint, 0
        while name in self.used:
            k += 1
            name = f"{hint}_{k}"
        self.used.add(name)
        return name

    def const_init(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        self.consts[name] = np.asarray(value)
        return name

    def emit(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        src = (self.node.name or self.node.op_type) if self.node is not None else output
        self.nodes.append(helper.make_node(op, inputs, [output], name=self.fresh(f"{src}/{op}"),
                                           **attrs))
        return output

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name)

    # ------------------------------------------------------------------ walk
    def run(self) -> onnx.ModelProto:
        for node in self.model.graph.node:
            self.node = node
            if Q.is_qonnx_node(node):
                self.quantiser(node)
            else:
                self.standard(node)
        self.node = None
        for out in self.model.graph.output:
            if out.name in self.chains:
                self.node = next(n for n in self.model.graph.node if out.name in n.output)
                self.fail("a Trunc at the model output gives multi-bit data; not supported")
            self.rebuild(out.name)
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        del m.graph.node[:]
        m.graph.node.extend(self.nodes)
        m.graph.initializer.extend(self.inits)
        if any(n.domain == EDGE_DOMAIN for n in self.nodes) and not any(
                o.domain == EDGE_DOMAIN for o in m.opset_import):
            m.opset_import.append(helper.make_opsetid(EDGE_DOMAIN, 1))
        del m.graph.value_info[:]
        return m

    def standard(self, node: onnx.NodeProto) -> None:
        for name in node.input:
            if name in self.chains:
                self.fail(f"reads the output of Trunc '{self.chains[name].nodes[-1]}': Trunc is "
                          "supported only directly before a binarising quantiser (multi-bit "
                          "data otherwise)")
        data = node.input[0] if node.input else ""
        if data in self.uneven:
            if node.op_type in LINEAR:
                self.fail(f"reads '{data}', binary activations whose magnitude differs per "
                          "channel; a layer needs one magnitude for all its inputs (a "
                          "per-tensor activation scale)")
            if node.op_type in COMMUTING:
                self.uneven.update(o for o in node.output if o)
        if (node.op_type in LINEAR and len(node.input) > 1 and node.input[1] in self.int8
                and data not in self.consts):
            self.linear_int8(node, self.scaled.get(data))
            return
        s = self.scaled.get(data)
        if s is not None:  # the ±1 tensor stays usable after a rebuild for another reader
            if node.op_type in COMMUTING and len([o for o in node.output if o]) == 1:
                self.carry(node, s)
                return
            if node.op_type in LINEAR and data not in self.consts:
                self.linear(node, s)
                return
        for name in node.input:
            self.rebuild(name)
        self.nodes.append(node)

    def rebuild(self, name: str) -> None:
        """Materialise a scaled tensor under its original name (once)."""
        s = self.scaled.get(name)
        if s is None or s.rebuilt:
            return
        self.emit("Mul", [s.name, self.const_init(f"{name}__scale", s.scale)], name)
        s.rebuilt = True

    def carry(self, node: onnx.NodeProto, s: Scaled) -> None:
        """A shape op or max-pool commutes with a positive scalar: run it on the ±1 tensor."""
        out = node.output[0]
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[0] = s.name
        new.output[0] = self.fresh(f"{out}__pm1")
        for name in node.input[1:]:
            self.rebuild(name)
        self.nodes.append(new)
        self.scaled[out] = Scaled(new.output[0], s.scale)

    def take_bias(self, node: onnx.NodeProto, new: onnx.NodeProto) -> np.ndarray | None:
        """Move a Gemm/Conv bias out of `new` (the layer then yields its bare accumulator):
        the bias is added after the scale Mul, so the accumulator stays integer. Gemm's beta
        is folded in; a Conv bias is shaped to broadcast over the channel axis."""
        if node.op_type not in ("Gemm", "Conv") or len(node.input) <= 2 or not node.input[2]:
            return None
        bias = self.const(node.input[2])
        if bias is None:
            self.fail("the bias must be a constant")
        del new.input[2:]
        if node.op_type == "Gemm":
            beta = next((helper.get_attribute_value(a) for a in node.attribute
                         if a.name == "beta"), 1.0)
            return np.asarray(bias, np.float32) * np.float32(beta)
        return np.asarray(bias, np.float32).reshape(
            (1, -1) + (1,) * max(0, self.ranks.get(node.output[0], 4) - 2))

    def linear(self, node: onnx.NodeProto, s: Scaled) -> None:
        """(±a) . W + b  ->  a * (±1 . W) + b: the scale becomes a Mul on the accumulator."""
        out = node.output[0]
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[0] = s.name
        bias = self.take_bias(node, new)
        for name in node.input[1:]:
            self.rebuild(name)
        acc = self.fresh(f"{out}__acc")
        new.output[0] = acc
        self.nodes.append(new)
        scaled = out if bias is None else self.fresh(f"{out}__scaled")
        self.emit("Mul", [acc, self.const_init(f"{out}__scale", s.scale)], scaled)
        if bias is not None:
            self.emit("Add", [scaled, self.const_init(f"{out}__bias", bias)], out)

    def linear_int8(self, node: onnx.NodeProto, s: Scaled | None) -> None:
        """A layer whose weights are an 8-bit Quant (codes q, scale s_w per tensor or per
        output channel): the layer runs on the codes, and s_w (times the data's magnitude
        when the data is scaled) becomes a Mul on its integer accumulator, then the bias:
        x . (q s_w) + b = s_w (x . q) + b. The frontend reads integer-coded weights as an
        8-bit layer (Int8Weights)."""
        codes, wscale = self.int8[node.input[1]]
        out = node.output[0]
        trans_b = next((helper.get_attribute_value(a) for a in node.attribute
                        if a.name == "transB"), 0)
        axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b) else 1
        if codes.ndim < 2:
            self.fail(f"8-bit weights of rank {codes.ndim}; expected a 2-D or 4-D weight")
        full = np.moveaxis(np.broadcast_to(wscale, codes.shape), axis, 0)
        full = full.reshape(full.shape[0], -1)
        if not np.all(full == full[:, :1]):
            self.fail("the 8-bit weight scale varies inside an output channel; edge-sdk reads "
                      "per-tensor or per-output-channel scales")
        vec = full[:, 0].astype(np.float32)
        if s is not None:
            vec = (vec * np.float32(s.scale)).astype(np.float32)
        new = onnx.NodeProto()
        new.CopyFrom(node)
        if s is not None:
            new.input[0] = s.name
        new.input[1] = self.const_init(f"{node.input[1]}__codes", codes.astype(np.float32))
        bias = self.take_bias(node, new)
        acc = self.fresh(f"{out}__acc")
        new.output[0] = acc
        self.nodes.append(new)
        shape = (1, -1, 1, 1) if node.op_type == "Conv" else (-1,)
        scaled = out if bias is None else self.fresh(f"{out}__scaled")
        self.emit("Mul", [acc, self.const_init(f"{out}__scale", vec.reshape(shape))], scaled)
        if bias is not None:
            self.emit("Add", [scaled, self.const_init(f"{out}__bias", bias)], out)

    def quantize_data(self, node: onnx.NodeProto, spec: Q.QuantSpec) -> None:
        """An 8-bit Quant on data (the input of an 8-bit last layer): an edge_sdk.Quantize
        node giving q - z (integers), carried as a tensor scaled by the Quant's scale."""
        x, out = node.input[0], node.output[0]
        if x in self.chains:
            self.fail("a Trunc before an 8-bit quantiser is not supported")
        if np.size(spec.scale) != 1:
            self.fail("8-bit quantiser on data with a per-channel scale; edge-sdk reads a "
                      "per-tensor activation scale")
        if np.size(spec.zero_point) != 1:
            self.fail("8-bit quantiser on data with a per-channel zero point")
        z = float(np.asarray(spec.zero_point).reshape(-1)[0])
        lo, hi = Q.int_range(spec.bits, spec.signed, spec.narrow)
        if z != int(z) or not lo <= z <= hi:
            self.fail(f"zero point {z:g} is not an integer code in [{lo}, {hi}]")
        if spec.mode.upper() not in ("ROUND", "HALF_EVEN"):
            self.fail(f"8-bit quantiser on data with rounding_mode {spec.mode}; edge-sdk reads "
                      "ROUND (half to even)")
        self.rebuild(x)
        if self.elem.get(x, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT:
            self.fail("quantisers on data are read for float32 data only")
        scale = float(np.float32(np.asarray(spec.scale).reshape(-1)[0]))
        q = self.fresh(f"{out}__codes")
        self.nodes.append(helper.make_node(
            "Quantize", [x], [q], name=self.fresh(f"{node.name or 'Quant'}/Quantize"),
            domain=EDGE_DOMAIN, scale=scale, zero_point=int(z), lo=int(lo), hi=int(hi)))
        self.scaled[out] = Scaled(q, np.float32(scale))

    # ------------------------------------------------------------------ quantisers
    def spec(self, node: onnx.NodeProto) -> Q.Spec:
        version = Q.domain_version(self.model, node.domain)
        try:
            return Q.parse(node, self.const, version, self.ranks.get(node.input[0]))
        except Q.QonnxError as exc:
            self.fail(str(exc))

    def quantiser(self, node: onnx.NodeProto) -> None:
        spec = self.spec(node)
        x = node.input[0]
        out = node.output[0]
        if x in self.consts:
            self.fold(node, spec, self.consts[x])
            return
        if isinstance(spec, Q.QuantSpec) and spec.bits in Q.INT8_BITS:
            self.quantize_data(node, spec)
            return
        if isinstance(spec, Q.QuantSpec) and spec.bits not in Q.READABLE_BITS:
            self.fail(f"{spec.bits}-bit quantiser on data; edge-sdk reads 1- and 2-bit "
                      "(binary and ternary) quantisers, and 8-bit ones")
        if isinstance(spec, Q.TruncSpec):
            self.trunc(node, spec)
            return
        codes = spec.codes()
        if codes != 2:
            bits = (spec.bits if isinstance(spec, (Q.QuantSpec, Q.MultiThresholdSpec))
                    else codes.bit_length())
            what = ("ternary (3-level) activations are not supported yet" if codes == 3
                    else "multi-bit activations are not supported")
            self.fail(f"{bits}-bit quantiser on data gives {codes} levels: {what}; edge-sdk "
                      "reads binarising quantisers on data (2-bit Quant on weights only)")
        chain = self.chains.pop(x, None)
        specs = (chain.specs if chain else []) + [spec]
        source = chain.source if chain else x
        self.rebuild(source)
        if self.elem.get(source, onnx.TensorProto.FLOAT) != onnx.TensorProto.FLOAT:
            self.fail("quantisers on data are read for float32 data only")
        shape = np.broadcast_shapes(*[np.shape(p) for sp in specs for p in sp.params()])

        def fn(v: np.ndarray) -> np.ndarray:
            y = v
            for sp in specs:
                y = sp(y)
            return np.broadcast_to(np.asarray(y), shape)

        try:
            with np.errstate(over="ignore", invalid="ignore"):  # the search probes ±3.4e38
                b = search(fn, shape)
        except ValueError as exc:
            self.fail(f"not a binarisation: {exc}")
        if b.constant.any():  # outputs that ignore x: compare x * 0 instead (see search())
            mask = self.const_init(f"{out}__varies", (~b.constant).astype(np.float32))
            source = self.emit("Mul", [source, mask], self.fresh(f"{out}__masked"))
        t = self.const_init(f"{out}__threshold", b.threshold)
        cmp = self.fresh(f"{out}__cmp")
        self.emit("GreaterOrEqual" if b.increasing else "Less", [source, t], cmp)
        one = self.const_init(f"{out}__one", np.float32(1.0))
        minus = self.const_init(f"{out}__minus_one", np.float32(-1.0))
        a = np.unique(b.magnitude)
        if a.size == 1 and a[0] == 1.0:
            self.emit("Where", [cmp, one, minus], out)
            return
        pm1 = self.emit("Where", [cmp, one, minus], self.fresh(f"{out}__pm1"))
        if a.size == 1:
            self.scaled[out] = Scaled(pm1, np.float32(a[0]))
        else:  # per-channel magnitudes: rebuild the float values right away
            self.emit("Mul", [pm1, self.const_init(f"{out}__scale", b.magnitude)], out)
            self.uneven.add(out)

    def trunc(self, node: onnx.NodeProto, spec: Q.TruncSpec) -> None:
        out = node.output[0]
        readers = self.readers.get(out, [])
        if len(readers) != 1 or out in self.outputs or not Q.is_qonnx_node(readers[0]):
            self.fail("Trunc is supported only directly before a binarising quantiser "
                      "(BipolarQuant, 1-bit Quant, one-threshold MultiThreshold) that is its "
                      "only reader; elsewhere it gives multi-bit data")
        x = node.input[0]
        prev = self.chains.pop(x, None)
        if prev is None:
            self.chains[out] = Chain(x, [spec], [node.name or "Trunc"])
        else:
            self.chains[out] = Chain(prev.source, prev.specs + [spec],
                                     prev.nodes + [node.name or "Trunc"])

    def fold(self, node: onnx.NodeProto, spec: Q.Spec, value: np.ndarray) -> None:
        """A quantiser of a constant (a weight): its values, as the reference computes them."""
        with np.errstate(all="ignore"):
            y = np.asarray(spec(np.asarray(value)))
        if isinstance(spec, Q.QuantSpec) and spec.bits in Q.INT8_BITS:
            self.fold_int8(node, spec, value, y)
            return
        if isinstance(spec, Q.QuantSpec) and spec.bits not in Q.READABLE_BITS:
            self.fail(f"{spec.bits}-bit quantiser; edge-sdk reads 1- and 2-bit (binary and "
                      "ternary) quantisers only")
        if isinstance(spec, Q.QuantSpec):
            with np.errstate(all="ignore"):
                steps = np.unique(np.asarray(spec.integers(np.asarray(value)), np.float64))
            if np.count_nonzero(np.unique(np.abs(steps))) > 1:
                shown = ", ".join(f"{v:g}" for v in steps[:6]) + (", ..." if steps.size > 6
                                                                    else "")
                self.fail(f"{spec.bits}-bit Quant gives weights at levels {{{shown}}} times the "
                          "scale; edge-sdk reads ±a and {-a, 0, +a} weights only")
        if not np.all(np.isfinite(y)):
            self.fail("the quantised constant holds NaN or infinity")
        name = node.output[0]
        self.consts[name] = y
        self.inits.append(numpy_helper.from_array(y, name))


    def fold_int8(self, node: onnx.NodeProto, spec: Q.QuantSpec, value: np.ndarray,
                  y: np.ndarray) -> None:
        """An 8-bit Quant of a weight: its integer codes, kept for the layer reading it."""
        if np.any(np.asarray(spec.zero_point) != 0):
            self.fail("8-bit weights need zero point 0 (symmetric quantisation)")
        with np.errstate(all="ignore"):
            codes = np.asarray(spec.integers(np.asarray(value)), np.float64)
        if not np.all(np.isfinite(codes)) or not np.all(np.isfinite(y)):
            self.fail("the quantised weights hold NaN or infinity")
        lo, hi = int(codes.min(initial=0)), int(codes.max(initial=0))
        if lo < Q.INT8_CODE_MIN or hi > Q.INT8_CODE_MAX:
            self.fail(f"8-bit weight codes reach [{lo}, {hi}]; edge-sdk's 8-bit layers take "
                      f"[{Q.INT8_CODE_MIN}, {Q.INT8_CODE_MAX}] (signed 8-bit codes)")
        name = node.output[0]
        self.consts[name] = y
        self.inits.append(numpy_helper.from_array(y, name))
        self.int8[name] = (codes, np.asarray(spec.scale, np.float32))


def _twin(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each QONNX node as an Identity: every one of them keeps its input shape."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        if Q.is_qonnx_node(n):
            keep_in, keep_out = n.input[0], n.output[0]
            n.Clear()
            n.op_type, n.name = "Identity", f"twin_{keep_out}"
            n.input.append(keep_in)
            n.output.append(keep_out)
    del m.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(m)


def _facts(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, int]]:
    """Rank and element type of every tensor whose shape inference can tell."""
    g = _twin(model).graph
    ranks, elems = {}, {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            ranks[vi.name] = len(t.shape.dim)
        if t.elem_type:
            elems[vi.name] = t.elem_type
    return ranks, elems


def lower(model: onnx.ModelProto, file: str) -> onnx.ModelProto:
    """Standard-ONNX equivalent of a (normalised) model with QONNX nodes."""
    return Lowering(model, file).run()
