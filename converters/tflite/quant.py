"""Quantisation parameters of TFLite tensors (scale, zero point, quantized dimension).

schema.py only records *whether* a tensor is quantized; the int8 ops (LCE's int8 conversion,
sdk/tflite_int8.py) need the values. They are re-read from the FlatBuffer here, with the same
bounds checks (a FormatError or a bad value is a one-line EdgeError naming the tensor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError

from . import flatbuf
from .flatbuf import FormatError


@dataclass(frozen=True)
class QParams:
    scale: np.ndarray  # float32 [1] or [C]
    zero_point: np.ndarray  # int64, same length
    dim: int  # quantized_dimension (per-channel axis)

    @property
    def per_tensor(self) -> bool:
        return self.scale.size == 1


def read(path: str | Path) -> dict[int, QParams]:
    """{tensor index: QParams} for every tensor of the (single) subgraph that has a scale."""
    file = str(path)
    try:
        buf = Path(path).read_bytes()
    except OSError as exc:  # a Model parsed from bytes names no readable file
        raise EdgeError(f"{file}: cannot read the quantisation parameters: {exc}") from None
    out: dict[int, QParams] = {}
    try:
        model = flatbuf.root(buf, b"TFL3")
        subgraphs = model.tables(2)
        if not subgraphs:
            return out
        g = subgraphs[0]
        for i, t in enumerate(g.tables(0)):
            q = t.table(4)
            if q is None:
                continue
            scale = q.array(2, "float32")
            if scale is None or len(scale) == 0:
                continue
            zp = q.array(3, "int64")
            zp = np.zeros(len(scale), np.int64) if zp is None or len(zp) == 0 else zp
            if len(zp) != len(scale):
                raise EdgeError(f"{file}: tensor #{i}: {len(scale)} scales but {len(zp)} zero "
                                "points")
            scale = np.asarray(scale, np.float32)
            if not all(math.isfinite(float(s)) and s > 0 for s in scale):
                raise EdgeError(f"{file}: tensor #{i}: quantisation scales must be positive "
                                "and finite")
            out[i] = QParams(scale, np.asarray(zp, np.int64), int(q.scalar(6, "i")))
    except FormatError as exc:
        raise EdgeError(f"{file}: not a valid TFLite FlatBuffer: {exc}") from None
    return out
