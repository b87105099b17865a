"""8-bit quantisation of a plain ONNX model's float layers with a calibration set (issue #11).

Real binary networks keep the first conv and the last dense layer in floating point while
training and in 8 bits when deployed. A plain ONNX file carries them as float Conv/Gemm/MatMul
weights, which no binary or ternary reading fits; given a calibration set (inputs the user
passes, `--calibrate X.npy`) the frontend makes each such layer an 8-bit layer:

- weights: symmetric, per output channel: s_o = max_k |w_ok| / 127, q = round(w / s_o) (half
  to even) in [-127, 127] (an all-zero row gets s_o = 1);
- the layer's input, when it is real-valued (e.g. after a global average): one per-tensor
  scale s_a = max |x| / 127 over the calibration set, x as onnxruntime computes it on the
  original float model, and a `Quantize` layer (zero point 0, codes [-127, 127]) before the
  layer; integer inputs (the model input, ±1 data) are read as they are.

The golden model's faithful mode still computes what the source computes (the float32 product
with the float weights); `--fixed-point` and the targets run the 8-bit version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from edge_sdk.errors import EdgeError

from .reference import _np_type

CODE_MAX = 127
LINEAR = ("Conv", "Gemm", "MatMul")


@dataclass
class Calibration:
    """What a calibration set fixed: max |x| of each linear layer's data input (by ONNX
    tensor name of the normalised model), over `samples` inputs."""

    act_max: dict[str, float] = field(default_factory=dict)
    samples: int = 0

    def act_scale(self, tensor: str) -> float | None:
        """Per-tensor scale max|x| / 127 (float32), None when the tensor was not measured."""
        m = self.act_max.get(tensor)
        if m is None:
            return None
        return float(np.float32(m / CODE_MAX)) if m > 0 else 1.0


def quantise_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float [O, K] -> (int8 codes [O, K], float32 scale [O]), symmetric per output channel."""
    w = np.asarray(w, dtype=np.float64)
    top = np.abs(w).max(axis=1)
    scale = np.where(top > 0, top / CODE_MAX, 1.0).astype(np.float32)
    codes = np.clip(np.round(w / scale.astype(np.float64)[:, None]), -CODE_MAX, CODE_MAX)
    return codes.astype(np.int8), scale


def check_set(x: np.ndarray, shape: tuple[int, ...], file: str) -> np.ndarray:
    """The calibration set as float data of the model input's shape [N, *shape]."""
    x = np.asarray(x)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise EdgeError(f"{file}: calibration set: dtype {x.dtype} is not a real number type")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape) or len(x) == 0:
        raise EdgeError(f"{file}: calibration set: shape {list(x.shape)} does not match the "
                        f"model input [N, {', '.join(map(str, shape))}] (N >= 1 samples)")
    if not np.all(np.isfinite(x.astype(np.float64))):
        raise EdgeError(f"{file}: calibration set: holds NaN or infinity")
    return x


def calibrate(model: onnx.ModelProto, x: np.ndarray, file: str) -> Calibration:
    """Run the (normalised, batch-1) model in onnxruntime over the calibration set `x` and
    record max |x| of the data input of every Conv/Gemm/MatMul."""
    import onnxruntime as ort

    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in inits]
    if len(inputs) != 1:
        raise EdgeError(f"{file}: calibration needs a model with one input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    x = check_set(x, shape, file)
    wanted = list(dict.fromkeys(
        n.input[0] for n in g.node if n.op_type in LINEAR and n.domain in ("", "ai.onnx")
        and n.input and n.input[0] not in inits))
    if not wanted:
        return Calibration({}, len(x))
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o.name for o in m.graph.output}
    for name in wanted:
        if name not in outs:
            m.graph.output.append(helper.make_empty_tensor_value_info(name))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own hierarchy
        raise EdgeError(f"{file}: calibration: onnxruntime cannot run the model "
                        f"({str(exc).splitlines()[0][:160]})") from None
    inp = sess.get_inputs()[0]
    xs = x.astype(_np_type(inp.type), copy=False)
    top = dict.fromkeys(wanted, 0.0)
    for i in range(len(xs)):  # the normalised model declares batch 1
        for name, value in zip(wanted, sess.run(wanted, {inp.name: xs[i:i + 1]}), strict=True):
            top[name] = max(top[name], float(np.abs(np.asarray(value, np.float64)).max(
                initial=0.0)))
    return Calibration(top, len(x))
