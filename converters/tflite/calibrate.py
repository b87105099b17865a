"""Calibration of a TFLite / LCE model's float layers with real weights (issue #11).

LCE files keep the first conv and the last dense layer in floating point; when their weights
are real (not ±a per row), no binary or ternary reading fits. Given a calibration set the
frontend makes each such CONV_2D / FULLY_CONNECTED an 8-bit layer exactly as the ONNX path
does (converters/onnx/calibrate.py: symmetric per-channel int8 weights, a per-tensor `Quantize`
before real-valued data). The activation maxima come from the NumPy reading of the file
(reference.py), which is what `run --check` compares with, so the scales describe the data the
source model really computes.
"""

from __future__ import annotations

import numpy as np

from edge_sdk.converters.onnx.calibrate import Calibration, check_set

from . import schema
from .reference import Reference

LINEAR = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
CHUNK = 256  # samples per reference run: bounds the memory of the intermediate tensors


def key(index: int) -> str:
    """The Calibration key of TFLite tensor `index` (names need not be unique; indices are)."""
    return f"#{index}"


def calibrate(model: schema.Model, x: np.ndarray) -> Calibration:
    """Run the reference over the calibration set `x` [N, *input shape] and record max |x| of
    the data input of every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED."""
    t_in = model.tensors[model.inputs[0]]
    x = check_set(x, tuple(t_in.shape[1:]), model.file)
    wanted = list(dict.fromkeys(
        op.inputs[0] for op in model.operators
        if op.name in LINEAR and op.inputs and op.inputs[0] >= 0
        and model.tensors[op.inputs[0]].data is None))
    top = dict.fromkeys(wanted, 0.0)
    for start in range(0, len(x), CHUNK):
        ref = Reference(model)
        ref.run(x[start:start + CHUNK])
        for idx in wanted:
            value = ref.env.get(idx)
            if value is not None:
                top[idx] = max(top[idx], float(np.abs(np.asarray(value, np.float64)).max(
                    initial=0.0)))
    return Calibration({key(i): m for i, m in top.items()}, len(x))
