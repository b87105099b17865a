"""Cut a factorizer model's network at the block-wise softmax that makes the query.

Why: the targets run the network as integer layers up to its scores, then the integer block
softmax (edge_sdk.factorizer.block_softmax), then the decoder. The graph between the scores
and the node must be exactly that softmax: [Reshape to (N, B, L)] -> Softmax over the last
axis -> [Reshape to (N, B*L)] (the reshapes may be left out when B = 1). Anything else between
the scores and the node is refused with the node's name, since a target could not run it.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from edge_sdk.errors import EdgeError, where

from .factorizer_node import cut


def _producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)


def _consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def _shape_of(model: onnx.ModelProto, node: onnx.NodeProto, file: str) -> list[int]:
    init = {t.name: t for t in model.graph.initializer}
    name = node.input[1] if len(node.input) > 1 else ""
    src = init.get(name)
    if src is None:
        const = _producer(model, name)
        if const is not None and const.op_type == "Constant":
            src = helper.get_attribute_value(const.attribute[0])
    if src is None:
        raise EdgeError(f"{where(file, node.name, node.op_type)}the shape before the factorizer "
                        "must be a constant")
    return [int(v) for v in numpy_helper.to_array(src).reshape(-1)]


def split(network: onnx.ModelProto, query: str, B: int, L: int, file: str,
          node_name: str) -> tuple[onnx.ModelProto, list[str]]:
    """(the network with the softmax's input as its only output, the tail's node names)."""
    tail: list[onnx.NodeProto] = []
    t = query
    node = _producer(network, t)
    if node is not None and node.op_type == "Reshape":
        tail.append(node)
        t = node.input[0]
        node = _producer(network, t)
    if node is None or node.op_type != "Softmax":
        what = f"{node.op_type} node '{node.name}'" if node is not None else "the model input"
        raise EdgeError(f"{where(file, node_name, 'BlockCodeFactorizer')}to convert for a target "
                        f"the query must be a block-wise Softmax of the network's scores, got "
                        f"{what}")
    softmax = node
    tail.append(softmax)
    axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"), -1)
    t = softmax.input[0]
    node = _producer(network, t)
    blocked = node is not None and node.op_type == "Reshape"
    if blocked:
        shape = _shape_of(network, node, file)
        if len(shape) != 3 or shape[1:] != [B, L] or axis not in (-1, 2):
            raise EdgeError(f"{where(file, softmax.name, 'Softmax')}must run over the last axis "
                            f"of blocks (N, {B}, {L}), got shape {shape} and axis {axis}")
        tail.append(node)
        t = node.input[0]
    elif B != 1 or axis not in (-1, 1):
        raise EdgeError(f"{where(file, softmax.name, 'Softmax')}must run over blocks of "
                        f"{L} entries (reshape to (N, {B}, {L}) first)")
    for n in tail:
        others = [c.name for c in _consumers(network, n.output[0]) if c not in tail]
        if others:
            raise EdgeError(f"{where(file, n.name, n.op_type)}its output is also used by "
                            f"'{others[0]}'; the block softmax must feed only the factorizer")
    drop = [i for i, n in enumerate(network.graph.node) if any(n is x for x in tail)]
    return cut(network, drop, t), [n.name for n in reversed(tail)]
