"""Models that are only the `edge_sdk.BlockCodeFactorizer` node: the query is the model input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def factorizer_only(path: str | Path, cb, **attrs) -> str:
    """One node over one-hot codebooks `cb` (edge_sdk.factorizer.Codebooks); outputs idx, it."""
    F, M, B, L = cb.shape
    node = h.make_node("BlockCodeFactorizer", ["q", "cb"], ["idx", "it"], domain="edge_sdk",
                       name="head", blocks=B, block_len=L, **attrs)
    g = h.make_graph([node], "fz", [h.make_tensor_value_info("q", T.FLOAT, ["N", B * L])],
                     [h.make_tensor_value_info("idx", T.INT64, ["N", F]),
                      h.make_tensor_value_info("it", T.INT64, ["N"])],
                     [nh.from_array(cb.as_dense().reshape(F, M, B * L).astype(np.float32),
                                    "cb")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return str(path)
