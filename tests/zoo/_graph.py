"""Minimal graph assembler so the model builders read like the exporter output they imitate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17
# IR 10 (ONNX 1.16) is old enough for every onnxruntime in use and new enough for opsets <= 22.
BASE_IR_VERSION = 10
MIN_OPSET = 13  # GreaterOrEqual needs 12, Clip-with-inputs 11, Sign/Where/Reshape as used need 13.

Dim = int | str


def ir_version_for(opset: int) -> int:
    """IR version to stamp: the base one, raised only when the opset demands it."""
    needed = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
    return max(BASE_IR_VERSION, needed)


class GraphBuilder:
    """Collects nodes, initializers and I/O; hands out unique, readable names."""

    def __init__(self, name: str, opset: int = DEFAULT_OPSET) -> None:
        if opset < MIN_OPSET:
            raise ValueError(f"opset {opset} < {MIN_OPSET} is not supported by the zoo")
        self.name = name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._used: set[str] = set()

    def fresh(self, hint: str) -> str:
        """Return `hint` (or `hint_<k>`) not used before in this graph."""
        name, k = hint, 0
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def add_input(self, name: str, shape: Sequence[Dim]) -> str:
        self._used.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def add_output(self, name: str, shape: Sequence[Dim] | None) -> None:
        dims = None if shape is None else list(shape)
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))

    def initializer(self, hint: str, array: np.ndarray) -> str:
        """Store `array` (its dtype is kept) as an initializer."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def constant(self, hint: str, array: np.ndarray) -> str:
        """Emit a `Constant` node, the way the torch exporter writes literals."""
        out = self.fresh(hint)
        tensor = numpy_helper.from_array(np.asarray(array), out + "_value")
        self.nodes.append(
            helper.make_node("Constant", [], [out], name=self.fresh("Constant"), value=tensor)
        )
        return out

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        *,
        output: str | None = None,
        hint: str | None = None,
        **attrs: object,
    ) -> str:
        """Append a single-output node and return the name of its output."""
        out = output if output is not None else self.fresh(f"{hint or op_type}_out")
        self._used.add(out)
        node = helper.make_node(
            op_type, list(inputs), [out], name=self.fresh(hint or op_type), **attrs
        )
        self.nodes.append(node)
        return out

    def set_output(self, value: str, shape: Sequence[Dim] | None, name: str = "y") -> None:
        """Expose `value` as graph output `name`, renaming it in place (no extra node)."""
        produced = any(value in n.output for n in self.nodes)
        if not produced:
            value = self.op("Identity", [value])
        for node in self.nodes:
            for field in (node.input, node.output):
                for i, v in enumerate(field):
                    if v == value:
                        field[i] = name
        self._used.add(name)
        self.add_output(name, shape)

    def model(self, *, check: bool = True) -> onnx.ModelProto:
        """Wrap the graph in a model; `check=False` is only for deliberately broken models."""
        graph = helper.make_graph(
            self.nodes, self.name, self.inputs, self.outputs, initializer=self.initializers
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=ir_version_for(self.opset),
            producer_name="edge-sdk-test-zoo",
        )
        if check:
            onnx.checker.check_model(model, full_check=True)
        return model
