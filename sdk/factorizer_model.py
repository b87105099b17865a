"""A network ending in the `edge_sdk.BlockCodeFactorizer` node, as `edge_sdk.load` returns it.

onnxruntime runs the network up to the node (any ONNX graph may compute the query); the
factorizer library runs the node. Converting such models for a target is the next step (the
factorizer-on-targets issue); until then `convert` refuses them clearly.
"""

from __future__ import annotations

import numpy as np
import onnx

from .api import ModelAPI
from .errors import EdgeError


class FactorizerModel(ModelAPI):
    def __init__(self, path: str, network: onnx.ModelProto, head):
        self.path = path
        self.head = head
        self.network = network
        self._bytes = network.SerializeToString()
        self.input_name = next(
            (vi.name for vi in network.graph.input
             if vi.name not in {t.name for t in network.graph.initializer}), None)
        self.source = None
        self.ir = None

    def queries(self, x: np.ndarray) -> np.ndarray:
        if self.head.query == self.input_name or not self.network.graph.node:
            return np.asarray(x, dtype=np.float32)
        from .converters.onnx.reference import run_onnxruntime

        try:
            return run_onnxruntime(self._bytes, x)
        except Exception as exc:  # noqa: BLE001 - onnxruntime reports bad input several ways
            text = str(exc).strip().splitlines()
            raise EdgeError(f"{self.path}: onnxruntime could not run the network before the "
                            f"factorizer: {text[0][:300] if text else type(exc).__name__}"
                            ) from None

    def run_outputs(self, x: np.ndarray, fixed_point: bool = False) -> dict[str, np.ndarray]:
        """Indices (and iterations); `fixed_point` runs the integer decoder the targets run."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise EdgeError(f"input: dtype {x.dtype} is not numeric")
        return self.head.decode(self.queries(x), fixed_point=fixed_point)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_outputs(x)[self.head.outputs[0]]

    def save_ir(self, folder) -> None:
        raise EdgeError(f"{self.path}: converting a model with a {self.head.decoder} "
                        "BlockCodeFactorizer head is not supported yet (run and inspect are)")

    def summary(self) -> dict:
        f, m, b, length = self.head.shape
        d = b * length
        onehot = self.head.codebooks.is_onehot
        entry_bits = max(1, int(np.ceil(np.log2(length)))) if onehot else 32
        head_bytes = (f * m * b * entry_bits + 7) // 8 if onehot else f * m * b * length * 4
        classes = m**f
        return {
            "node": self.head.node_name, "decoder": self.head.decoder,
            "options": self.head.options, "F": f, "M": m, "B": b, "L": length, "D": d,
            "classes": classes, "codebook_form": "one-hot index table" if onehot else "dense",
            "codebook_bytes": head_bytes,
            "fc_binary_bytes": classes * d // 8, "fc_float32_bytes": classes * d * 4,
            "network_nodes": len(self.network.graph.node),
        }
