"""Bring what exporters write into one canonical form before pattern matching.

1. Graph inputs that also have an initializer are constants (Brevitas lists them as inputs).
2. The batch dimension is pinned to 1 while normalising, so shape-dependent constants
   (`Shape -> ConstantOfShape/Expand -> Neg -> Where`, torch's `ones_like`) fold; the IR is
   batch-free, so the model still runs on any batch.
3. ONNX shape inference (strict), which also reports shape mismatches.
4. onnxscript constant folding with no size limit, so `Sign(W)`, `Transpose(W)` and the ternary
   `Abs/ReduceMean/Greater/...` subgraphs become plain constants. Not the full optimiser: it and
   onnxruntime's would fuse BatchNormalization into the weights.
"""

from __future__ import annotations

import math

import onnx
import onnx_ir as ir
from onnxscript import optimizer

from edge_sdk.errors import EdgeError

from .loader import MAX_ELEMENTS


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def normalise(model: onnx.ModelProto, file: str) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    keep = [vi for vi in m.graph.input if vi.name not in inits]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for vi in m.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) >= 1:
            dims[0].Clear()
            dims[0].dim_value = 1
    del m.graph.value_info[:]  # stale batch dims would clash with the pinned batch
    for out in m.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) >= 1:
            dims[0].Clear()
            dims[0].dim_value = 1
    m = _infer(m, file)
    try:
        model_ir = ir.from_proto(m)
        optimizer.fold_constants(
            model_ir,
            onnx_shape_inference=True,
            input_size_limit=MAX_ELEMENTS,
            output_size_limit=MAX_ELEMENTS,
            should_fold=_should_fold,
        )
        optimizer.remove_unused_nodes(model_ir)
        m = ir.to_proto(model_ir)
    except EdgeError:
        raise
    except Exception as exc:  # noqa: BLE001 - the folder evaluates user nodes; report them
        raise EdgeError(f"{file}: constant folding failed: {_first_line(exc)}") from None
    return _infer(m, file)


def _should_fold(node) -> bool | None:
    """Fold ConstantOfShape too (onnxscript keeps it by default), but only of a bounded size."""
    if node.op_type != "ConstantOfShape":
        return None
    shape = node.inputs[0].const_value if node.inputs and node.inputs[0] is not None else None
    if shape is None:
        return None
    dims = [int(d) for d in shape.numpy().reshape(-1)]
    return all(d >= 0 for d in dims) and math.prod(dims) <= MAX_ELEMENTS


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _infer(m: onnx.ModelProto, file: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                                 data_prop=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises many types for one cause: bad input
        raise EdgeError(f"{file}: shape mismatch or invalid graph: {_first_line(exc)}") from None
