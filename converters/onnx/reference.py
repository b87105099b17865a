"""onnxruntime on the original model: the reference the golden model is checked against.

`optimized=False` (the default) disables onnxruntime's graph optimiser, so every node runs as
written; that is the run the golden model must equal bit for bit. The default optimiser fuses
BatchNormalization into Gemm/Conv weights, which moves float results by a rounding step; use
`optimized=True` to see what a plain onnxruntime user gets (equal up to float32 rounding).
A model whose batch dimension is fixed to 1 is run one sample at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def run_onnxruntime(model: str | Path | bytes, x: np.ndarray, optimized: bool = False
                    ) -> np.ndarray:
    """The first output for a batch; `model` is a file path or serialised model bytes."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model if isinstance(model, bytes) else str(model)
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.asarray(x).astype(_np_type(inp.type), copy=False)
    batch = inp.shape[0] if inp.shape else None
    if isinstance(batch, int) and batch != x.shape[0]:
        outs = [sess.run(None, {inp.name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
        return np.concatenate(outs, axis=0)
    return sess.run(None, {inp.name: x})[0]


def _np_type(ort_type: str):
    return {
        "tensor(float)": np.float32,
        "tensor(double)": np.float64,
        "tensor(uint8)": np.uint8,
        "tensor(int8)": np.int8,
        "tensor(int16)": np.int16,
        "tensor(uint16)": np.uint16,
    }.get(ort_type, np.float32)
