"""Intermediate tensors of the source model, as its own executor computes them.

The layer-by-layer diff needs more than the model output: every ONNX tensor that the frontend
mapped onto an IR tensor (`graph.source["tensors"]`). Plain ONNX runs in onnxruntime with its
graph optimiser off (every node as written, as in `reference.run_onnxruntime`), the wanted
tensors added as extra graph outputs. QONNX models run in qonnx's executor, which keeps every
tensor of the run anyway. Names the original file does not compute (tensors the normaliser or
the QONNX rewrite created) are left out: only what the source itself computes is a reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from edge_sdk.errors import EdgeError

from .loader import load
from .reference import _np_type


def computed_names(model: onnx.ModelProto) -> list[str]:
    """Outputs of the model's nodes, in node order."""
    return [o for node in model.graph.node for o in node.output if o]


def run_onnxruntime_all(path: str | Path, x: np.ndarray, names: Iterable[str]
                        ) -> dict[str, np.ndarray]:
    """The listed tensors (those the file computes) for a batch, by name, as float arrays."""
    import onnxruntime as ort

    model = load(path)
    have = set(computed_names(model))
    wanted = [n for n in dict.fromkeys(names) if n in have]
    outs = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in outs:
            model.graph.output.append(helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(model.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own hierarchy
        raise EdgeError(f"{path}: onnxruntime cannot run the model with its intermediate "
                        f"tensors as outputs ({str(exc).splitlines()[0][:160]})") from None
    inp = sess.get_inputs()[0]
    x = np.asarray(x).astype(_np_type(inp.type), copy=False)
    batch = inp.shape[0] if inp.shape else None
    step = batch if isinstance(batch, int) and batch > 0 else len(x)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for i in range(0, len(x), max(step, 1)):
        res = sess.run(wanted, {inp.name: x[i:i + step]})
        for name, value in zip(wanted, res, strict=True):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(v, axis=0) for n, v in parts.items()}


def run_qonnx_all(path: str | Path, x: np.ndarray, names: Iterable[str]
                  ) -> dict[str, np.ndarray]:
    """The listed tensors that qonnx's executor computes on the original QONNX model."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.custom_op import registry
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError:
        raise EdgeError("the qonnx reference needs the qonnx package (the [qonnx] extra)") from None
    from .qonnx_reference import FINN_ALIASES, _with_batch

    for domain in FINN_ALIASES:
        registry.add_domain_alias(domain, "qonnx.custom_op.general")
    proto = onnx.load(str(path))
    have = set(computed_names(proto))
    wanted = [n for n in dict.fromkeys(names) if n in have]
    inits = {t.name for t in proto.graph.initializer}
    inp = next(v for v in proto.graph.input if v.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    x = np.asarray(x, dtype=np.float32)
    step = fixed if fixed > 0 else len(x)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    wrappers = {}
    for i in range(0, len(x), max(step, 1)):
        part = x[i:i + step]
        if len(part) not in wrappers:
            wrappers[len(part)] = ModelWrapper(_with_batch(proto, len(part))).transform(
                InferShapes())
        ctx = execute_onnx(wrappers[len(part)], {inp.name: part}, return_full_exec_context=True)
        for name in wanted:
            parts[name].append(np.asarray(ctx[name]))
    return {n: np.concatenate(v, axis=0) for n, v in parts.items()}
