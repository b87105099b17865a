"""A network ending in the `edge_sdk.BlockCodeFactorizer` node, as `edge_sdk.load` returns it.

`run`: onnxruntime runs the network up to the node (any ONNX graph may compute the query) and
the float decoder runs the node. What the targets run (`deployed`, and `run --fixed-point`
whenever the network lowers to the IR): the network as integer layers up to its scores, the
integer block softmax (factorizer.block_softmax), the fixed-point decoder (factorizer.deploy).
A model whose query is its input has no network: the float query is quantised (fixed.quantise).
"""

from __future__ import annotations

import numpy as np
import onnx

from . import golden
from .api import ModelAPI
from .errors import EdgeError
from .factorizer import block_softmax
from .ir import layers as L


def scores_layer(ir) -> L.Scores:
    out = ir.producer(ir.outputs[0])
    if not isinstance(out, L.Scores):
        raise EdgeError("the network's IR does not end in integer scores")
    return out


def scores(ir, x: np.ndarray) -> np.ndarray:
    """The network's integer scores (before its float ops) from the golden model."""
    env = golden.run_all(ir, x)
    return env[scores_layer(ir).inputs[0]].reshape(len(x), -1)


def affine(ops: list, size: int, node: str) -> tuple[np.ndarray, np.ndarray]:
    """The float ops the source applies to the scores as one per-element a * z + b (float64)."""
    a, b = np.ones(size), np.zeros(size)

    def per(v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (size,))

    for op in ops:
        if isinstance(op, L.Mul):
            a, b = a * per(op.values), b * per(op.values)
        elif isinstance(op, L.Add):
            b = b + per(op.values)
        elif isinstance(op, L.Div):
            a, b = a / per(op.values), b / per(op.values)
        elif isinstance(op, L.BatchNorm):
            s = per(op.gamma) / np.sqrt(per(op.var) + float(op.eps))
            a, b = a * s, b * s + per(op.beta) - per(op.mean) * s
        else:
            raise EdgeError(f"node '{node}' (BlockCodeFactorizer): the network applies "
                            f"{type(op).__name__} to its scores before the block softmax")
    return a, b


class FactorizerModel(ModelAPI):
    def __init__(self, path: str, network: onnx.ModelProto, head, input_range=None):
        self.path = path
        self.input_range = input_range
        self._deployed = None
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
        if fixed_point and self.has_network:
            try:
                ir, dep = self.deployed()
            except EdgeError:
                ir = None  # a float network no target runs: quantise its float query
            if ir is not None:
                return dep.outputs_of(*dep.decode(dep.queries(scores(ir, x))))
        return self.head.decode(self.queries(x), fixed_point=fixed_point)

    @property
    def has_network(self) -> bool:
        return bool(self.network.graph.node) and self.head.query != self.input_name

    def deployed(self):
        """(network IR up to the scores or None, DeployedHead): what convert writes."""
        if self._deployed is None:
            from .factorizer.deploy import from_head

            if not self.has_network:
                self._deployed = (None, from_head(self.head, None))
            else:
                ir = self._network_ir()
                layer = scores_layer(ir)
                info = ir.infos()[layer.inputs[0]]
                _f, _m, b, length = self.head.shape
                if info.size != b * length:
                    raise EdgeError(f"{self.path}: the network's scores have {info.size} "
                                    f"entries, the factorizer takes {b}*{length}")
                a, c = affine(layer.ops, info.size, self.head.node_name)
                tail = block_softmax.from_affine(a, c, b, length, info.lo, info.hi)
                self._deployed = (ir, from_head(self.head, tail))
        return self._deployed

    def _network_ir(self):
        from .converters.onnx import factorizer_tail, import_model
        from .passes.pipeline import lower

        _f, _m, b, length = self.head.shape
        net, _tail = factorizer_tail.split(self.network, self.head.query, b, length, self.path,
                                           self.head.node_name)
        if not net.graph.node:
            raise EdgeError(f"{self.path}: node '{self.head.node_name}' (BlockCodeFactorizer): "
                            "the block softmax reads the model input (float logits); a target "
                            "needs a binary network's scores there, or the query as the input")
        return lower(import_model(net, self.path, input_range=self.input_range))

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_outputs(x)[self.head.outputs[0]]

    def save_ir(self, folder) -> None:
        raise EdgeError(f"{self.path}: a model with a BlockCodeFactorizer head converts for "
                        "cortex-m or fpga, not to an IR folder")

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
            "targets": self._targets_summary(),
        }

    def _targets_summary(self) -> dict:
        """How convert would deploy the model, or why it cannot."""
        try:
            ir, dep = self.deployed()
        except EdgeError as exc:
            return {"convertible": False, "reason": str(exc), "text": f"not convertible: {exc}"}
        d = {"convertible": True, "method": dep.method, "network_layers": 0 if ir is None
             else len(ir.layers)}
        if dep.tail is None:
            d["text"] = f"{dep.method} fixed-point decoder on the quantised query"
        else:
            t = dep.tail
            d.update(softmax_frac_bits=t.frac, softmax_shift=t.shift, softmax_table=len(t.table))
            d["text"] = (f"{d['network_layers']} IR layers -> integer block softmax (logits at "
                         f"2^-{t.frac}, {len(t.table)}-entry exp table) -> {dep.method} "
                         "fixed-point decoder")
        return d
