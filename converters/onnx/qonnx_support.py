"""Which custom nodes a model may hold: checked by the loader before anything else reads it.

A custom domain is accepted only for the ops edge-sdk implements (the QONNX quantisers, FINN's
MultiThreshold, edge-sdk's own factorizer node). Anything else, and any quantiser of more than
2 bits, is refused here with the node and the reason, before opset or shape checks could give a
less telling message (qonnx's shipped 4/8-bit models are opset 11, for one).
"""

from __future__ import annotations

import math

import onnx
from onnx import numpy_helper

from edge_sdk.errors import EdgeError, where

from .qonnx_ops import (
    FINN_DOMAINS,
    INT8_BITS,
    QONNX_DOMAINS,
    QONNX_OPSETS,
    READABLE_BITS,
    QonnxError,
    is_supported,
    scalar_int,
)

DEFAULT_DOMAINS = ("", "ai.onnx")
OWN_DOMAIN = "edge_sdk"  # the factorizer node (factorizer_node.py checks its op)
READS = ("BipolarQuant, Quant/IntQuant (1, 2 or 8 bits), MultiThreshold, Trunc in domain "
         "qonnx.custom_op.general (or onnx.brevitas), MultiThreshold in finn.custom_op.general, "
         "edge_sdk.BlockCodeFactorizer")


def _small_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant values of at most one element: bit widths are scalars."""
    out = {t.name: t for t in graph.initializer
           if math.prod(t.dims) <= 1 and t.data_location != onnx.TensorProto.EXTERNAL}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in DEFAULT_DOMAINS:
            for a in n.attribute:
                if a.name == "value" and math.prod(a.t.dims) <= 1:
                    out[n.output[0]] = a.t
    return out


def node_bits(node: onnx.NodeProto, small: dict[str, onnx.TensorProto],
              dims: dict[str, list[int]]) -> int | None:
    """The output bit width of a Quant/IntQuant or MultiThreshold node when it is constant."""
    if node.op_type == "MultiThreshold" and len(node.input) >= 2:
        d = dims.get(node.input[1])
        return max(1, math.ceil(math.log2(d[1] + 1))) if d and len(d) == 2 else None
    if node.op_type in ("Quant", "IntQuant") and len(node.input) >= 4:
        t = small.get(node.input[3])
        if t is None:
            return None
        try:
            return scalar_int(numpy_helper.to_array(t), "bit width")
        except (QonnxError, ValueError, TypeError):
            return None
    return None


def refuse_unsupported(model: onnx.ModelProto, file: str) -> None:
    """Raise EdgeError on the first custom node edge-sdk cannot read, or a quantiser of a bit
    width it does not read (1 and 2 bits; 8 bits for 8-bit layers, issue #11)."""
    versions = {o.domain: int(o.version) for o in model.opset_import}
    small = _small_constants(model.graph)
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    wide: list[tuple[onnx.NodeProto, int]] = []
    for node in model.graph.node:
        dom = node.domain
        if dom in DEFAULT_DOMAINS or dom == OWN_DOMAIN:
            continue
        label = f"{dom}.{node.op_type}"
        if not is_supported(dom, node.op_type):
            raise EdgeError(where(file, node.name, label) + "unsupported custom operator; "
                            f"edge-sdk reads {READS}")
        if dom in QONNX_DOMAINS + FINN_DOMAINS and versions.get(dom, 1) not in QONNX_OPSETS:
            raise EdgeError(where(file, node.name, label) + f"domain {dom} opset "
                            f"{versions[dom]} is not supported (supported: 1, 2)")
        bits = node_bits(node, small, dims)
        if bits is not None and bits not in READABLE_BITS:
            wide.append((node, bits))
    bad = [(n, b) for n, b in wide
           if not (b in INT8_BITS and n.op_type in ("Quant", "IntQuant"))]
    if bad:
        node, bits = bad[0]
        every = ", ".join(str(b) for b in sorted({b for _, b in wide}))
        raise EdgeError(where(file, node.name, node.op_type) + f"{bits}-bit quantiser; edge-sdk "
                        "reads 1- and 2-bit (binary and ternary) quantisers, and 8-bit Quant for "
                        "8-bit first/last layers; this model quantises to "
                        f"{every} bits in {len(wide)} node(s)")
