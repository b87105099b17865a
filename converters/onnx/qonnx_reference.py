"""qonnx's own executor on the original model: the reference for models with QONNX nodes.

onnxruntime cannot run QONNX's custom nodes; `qonnx.core.onnx_exec.execute_onnx` runs every
standard node through onnxruntime and every QONNX node with qonnx's NumPy implementation. It
needs every tensor shape, so the batch is written into the input and output shapes and qonnx's
`InferShapes` fills in the rest. A model declaring a fixed batch (Brevitas exports batch 1)
runs in chunks of that batch. FINN's MultiThreshold domains run as qonnx's, which is where the
op moved. Needs the `qonnx` extra.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from edge_sdk.errors import EdgeError

FINN_ALIASES = ("finn.custom_op.general", "finn")


def _with_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    for vi in [v for v in m.graph.input if v.name not in inits] + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_value = batch
    del m.graph.value_info[:]
    return m


def run_qonnx(model: str | Path | bytes | onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The first output of the model for a batch `x`, as qonnx's executor computes it."""
    try:
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.core.onnx_exec import execute_onnx
        from qonnx.custom_op import registry
        from qonnx.transformation.infer_shapes import InferShapes
    except ImportError:
        raise EdgeError("the qonnx reference needs the qonnx package (the [qonnx] extra)") from None
    for domain in FINN_ALIASES:
        registry.add_domain_alias(domain, "qonnx.custom_op.general")
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    else:
        proto = onnx.load(str(model))
    inits = {t.name for t in proto.graph.initializer}
    inp = next(v for v in proto.graph.input if v.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") else 0
    x = np.asarray(x, dtype=np.float32)
    chunk = fixed if fixed > 0 else len(x)
    wrappers = {}
    outs = []
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk]
        if len(part) not in wrappers:
            wrappers[len(part)] = ModelWrapper(_with_batch(proto, len(part))).transform(
                InferShapes())
        mw = wrappers[len(part)]
        res = execute_onnx(mw, {inp.name: part})
        outs.append(np.asarray(res[mw.graph.output[0].name]))
    return np.concatenate(outs, axis=0)
