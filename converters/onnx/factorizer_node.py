"""The `edge_sdk.BlockCodeFactorizer` ONNX node: a factorizer head at the end of any network.

Contract (domain `edge_sdk`, opset 1): input 0 is the query [N, B*L] float32 computed by the
graph; input 1 the codebooks [F, M, B*L] as an initializer (one-hot per block or general
non-negative blocks). Attributes: `blocks` (B) and `block_len` (L), required; `decoder`
("default", "published", "resonator", "exhaustive"; default "default"); for `published`:
`similarity` ("linf"/"dot"), `threshold` (T), `sampling_width` (A), `max_iters`, `seed`; for
`resonator`: `similarity`, `max_iters`, `seed`; for `default`: `seed`. A left-out attribute takes
the decoder's documented default. Outputs: indices [N, F] int64 and, optionally, iterations
[N] int64. onnxruntime runs the graph up to the node; edge_sdk.factorizer runs the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_sdk.errors import EdgeError, where

DOMAIN = "edge_sdk"
OP = "BlockCodeFactorizer"
DECODER_ATTRS = {
    "default": {"seed": "seed"},
    "published": {"similarity": "similarity", "threshold": "T", "sampling_width": "A",
                  "max_iters": "max_iters", "seed": "seed"},
    "resonator": {"similarity": "similarity", "max_iters": "max_iters", "seed": "seed"},
    "exhaustive": {},
}
ATTR_TYPES = {"blocks": int, "block_len": int, "decoder": str, "similarity": str,
              "threshold": float, "sampling_width": int, "max_iters": int, "seed": int}


@dataclass
class FactorizerHead:
    """The node, validated: what the golden model needs to run it."""

    node_name: str
    query: str  # the tensor the network computes
    outputs: list[str]  # indices, then optionally iterations
    blocks: int
    block_len: int
    decoder: str
    options: dict = field(default_factory=dict)
    codebooks: object = None  # edge_sdk.factorizer.Codebooks

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.codebooks.shape

    def decode(self, queries: np.ndarray, fixed_point: bool = False) -> dict[str, np.ndarray]:
        """Run the node; `fixed_point`: quantise the query and run the integer decoder
        (edge_sdk.factorizer.fixed, the specification the targets follow)."""
        from edge_sdk import factorizer
        from edge_sdk.factorizer import fixed

        q = np.asarray(queries, dtype=np.float64)
        width = self.blocks * self.block_len
        if q.ndim != 2 or q.shape[1] != width:
            raise EdgeError(f"node '{self.node_name}' ({OP}): query of shape {list(q.shape)}, "
                            f"expected [N, {width}] (blocks * block_len)")
        try:
            if fixed_point:
                qi = fixed.quantise(q, self.codebooks)
                idx, iters = fixed.decode(qi, self.codebooks, self.decoder, **self.options)
            else:
                idx, iters = factorizer.decode(q, self.codebooks, self.decoder, **self.options)
        except EdgeError as exc:
            raise EdgeError(f"node '{self.node_name}' ({OP}): {exc}") from None
        out = {self.outputs[0]: idx.astype(np.int64)}
        if len(self.outputs) > 1:
            out[self.outputs[1]] = iters.astype(np.int64)
        return out


def find(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def split(model: onnx.ModelProto, file: str) -> tuple[onnx.ModelProto, FactorizerHead] | None:
    """(network part, head) when the model ends in a factorizer node, else None."""
    nodes = find(model)
    if not nodes:
        return None
    node = nodes[0]
    at = where(file, node.name, node.op_type)
    if node.op_type != OP or len(nodes) > 1:
        bad = next(n for n in nodes if n.op_type != OP or n is not node) if len(nodes) > 1 \
            else node
        raise EdgeError(f"{where(file, bad.name, bad.op_type)}unsupported operator "
                        f"{DOMAIN}.{bad.op_type} (one {OP} node at the end is supported)")
    graph_outputs = [o.name for o in model.graph.output]
    outs = [o for o in node.output if o]
    if not outs or len(outs) > 2 or any(o not in graph_outputs for o in outs) or \
            len(graph_outputs) != len(outs):
        raise EdgeError(f"{at}the factorizer's outputs must be exactly the model's outputs")
    if len(node.input) != 2:
        raise EdgeError(f"{at}expects 2 inputs (query, codebooks), got {len(node.input)}")
    head = _head(model, node, at)
    head.outputs = outs
    return _prefix(model, node), head


def _attrs(node: onnx.NodeProto, at: str) -> dict:
    out = {}
    for a in node.attribute:
        if a.name not in ATTR_TYPES:
            raise EdgeError(f"{at}unknown attribute '{a.name}'")
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        want = ATTR_TYPES[a.name]
        if want is float and isinstance(v, int):
            v = float(v)
        if not isinstance(v, want) or isinstance(v, bool):
            raise EdgeError(f"{at}attribute '{a.name}' must be {want.__name__}, got {v!r}")
        out[a.name] = v
    return out


def _head(model: onnx.ModelProto, node: onnx.NodeProto, at: str) -> FactorizerHead:
    from edge_sdk.factorizer import Codebooks

    a = _attrs(node, at)
    for req in ("blocks", "block_len"):
        if req not in a:
            raise EdgeError(f"{at}missing required attribute '{req}'")
        if a[req] < 1 or a[req] > 1 << 16:
            raise EdgeError(f"{at}attribute '{req}' = {a[req]} is out of range 1..65536")
    decoder = a.pop("decoder", "default")
    if decoder not in DECODER_ATTRS:
        raise EdgeError(f"{at}unknown decoder '{decoder}' (use one of "
                        f"{', '.join(DECODER_ATTRS)})")
    b, length = a.pop("blocks"), a.pop("block_len")
    options = {}
    for name, value in a.items():
        if name not in DECODER_ATTRS[decoder]:
            raise EdgeError(f"{at}attribute '{name}' does not apply to decoder '{decoder}'")
        options[DECODER_ATTRS[decoder][name]] = value
    inits = {t.name: t for t in model.graph.initializer}
    if node.input[1] not in inits:
        raise EdgeError(f"{at}codebooks '{node.input[1]}' must be an initializer")
    cb = numpy_helper.to_array(inits[node.input[1]])
    if cb.ndim != 3 or cb.shape[2] != b * length:
        raise EdgeError(f"{at}codebooks of shape {list(cb.shape)} disagree with blocks={b}, "
                        f"block_len={length}: expected [F, M, {b * length}]")
    if not np.all(np.isfinite(cb)) or (cb < 0).any():
        raise EdgeError(f"{at}codebooks must hold finite non-negative entries")
    try:
        codebooks = Codebooks.from_dense(cb.reshape(cb.shape[0], cb.shape[1], b, length))
    except EdgeError as exc:
        raise EdgeError(f"{at}{exc}") from None
    return FactorizerHead(node.name, node.input[0], [], b, length, decoder, options, codebooks)


def cut(model: onnx.ModelProto, drop: list[int], output: str) -> onnx.ModelProto:
    """A copy without the nodes at indices `drop` (and the initializers only they read), with
    `output` (float) as its only output."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    skip = set(drop)
    keep = [n for i, n in enumerate(m.graph.node) if i not in skip]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    inits = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    del m.graph.output[:]
    m.graph.output.extend([helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)])
    return m


def _prefix(model: onnx.ModelProto, node: onnx.NodeProto) -> onnx.ModelProto:
    """The model without the node, its query as the only output."""
    m = cut(model, [i for i, n in enumerate(model.graph.node) if n.domain == DOMAIN],
            node.input[0])
    imports = [o for o in m.opset_import if o.domain != DOMAIN]
    del m.opset_import[:]
    m.opset_import.extend(imports)
    return m
