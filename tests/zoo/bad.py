"""Models the converter must refuse, each written to disk as a user would hand it over.

Every function takes a pytest `tmp_path` and returns the path of the .onnx file it wrote
(file names differ, so several may share one tmp_path). BAD_MODELS maps a name to
(function, expected_words): a lowercase substring the converter's error should contain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper

from . import blocks as b
from ._graph import GraphBuilder
from .models import mlp

F32 = np.float32


def _pm1(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0], dtype=F32), size=(n, k))


def _bn(g: GraphBuilder, rng: np.random.Generator, x: str, c: int, hint: str) -> str:
    return b.batch_norm(g, x, b.random_bn(rng, np.full(c, 4.0)), hint=hint)


def _gemm(g: GraphBuilder, x: str, w: np.ndarray, hint: str) -> str:
    return g.op("Gemm", [x, g.initializer(hint + ".weight", w)], hint=hint, transB=1)


def _write(path: Path, model: onnx.ModelProto) -> Path:
    """Serialize directly: onnx.save_model would try to (re)write external tensors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def truncated_protobuf(tmp_path: Path) -> Path:
    """A valid model cut off mid-initializer, like an interrupted download."""
    data = mlp(0).SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) * 3 // 5])
    return path


def garbage_bytes(tmp_path: Path) -> Path:
    """Bytes no protobuf parser accepts (an 11-byte varint tag), not merely unknown fields."""
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\xff" * 11 + b"not an onnx model")
    return path


def empty_file(tmp_path: Path) -> Path:
    """Zero bytes: protobuf parses this as an empty ModelProto, so it needs its own check."""
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path


def softmax_in_chain(tmp_path: Path) -> Path:
    """dense -> BN -> Softmax -> Sign -> dense: a valid model with an op binary nets lack."""
    rng = np.random.default_rng(1)
    g = GraphBuilder("softmax_in_chain")
    h = _bn(g, rng, _gemm(g, g.add_input("x", ["N", 16]), _pm1(rng, 12, 16), "fc0"), 12, "bn0")
    h = g.op("Sign", [g.op("Softmax", [h], axis=1)])
    h = _bn(g, rng, _gemm(g, h, _pm1(rng, 4, 12), "fc1"), 4, "bn1")
    g.set_output(h, ["N", 4])
    return _write(tmp_path / "softmax_in_chain.onnx", g.model())


def lstm_in_chain(tmp_path: Path) -> Path:
    """A one-step LSTM between two binary dense layers."""
    rng = np.random.default_rng(2)
    g = GraphBuilder("lstm_in_chain")
    h = _bn(g, rng, _gemm(g, g.add_input("x", ["N", 16]), _pm1(rng, 12, 16), "fc0"), 12, "bn0")
    h = g.op("Sign", [h])
    seq = g.op("Unsqueeze", [h, g.initializer("axes0", np.array([0], np.int64))])
    w = g.initializer("lstm.W", rng.normal(size=(1, 32, 12)).astype(F32))
    r = g.initializer("lstm.R", rng.normal(size=(1, 32, 8)).astype(F32))
    y = g.op("LSTM", [seq, w, r], hidden_size=8)
    h = g.op("Squeeze", [y, g.initializer("axes01", np.array([0, 1], np.int64))])
    h = _bn(g, rng, _gemm(g, g.op("Sign", [h]), _pm1(rng, 4, 8), "fc1"), 4, "bn1")
    g.set_output(h, ["N", 4])
    return _write(tmp_path / "lstm_in_chain.onnx", g.model())


def float_weights(tmp_path: Path) -> Path:
    """The hidden dense layer has arbitrary float weights (not +-1, +-a_n or ternary)."""
    rng = np.random.default_rng(3)
    g = GraphBuilder("float_weights")
    h = _bn(g, rng, _gemm(g, g.add_input("x", ["N", 16]), _pm1(rng, 12, 16), "fc0"), 12, "bn0")
    h = g.op("Sign", [h])
    h = g.op("Sign", [_gemm(g, h, rng.normal(size=(8, 12)).astype(F32), "fc1")])
    h = _bn(g, rng, _gemm(g, h, _pm1(rng, 4, 8), "fc2"), 4, "bn2")
    g.set_output(h, ["N", 4])
    return _write(tmp_path / "float_weights.onnx", g.model())


def gemm_k_mismatch(tmp_path: Path) -> Path:
    """Second Gemm expects K=10 but the previous layer is 12 wide (checker rejects it)."""
    rng = np.random.default_rng(4)
    g = GraphBuilder("gemm_k_mismatch")
    h = _bn(g, rng, _gemm(g, g.add_input("x", ["N", 16]), _pm1(rng, 12, 16), "fc0"), 12, "bn0")
    h = _bn(g, rng, _gemm(g, g.op("Sign", [h]), _pm1(rng, 4, 10), "fc1"), 4, "bn1")
    g.set_output(h, ["N", 4])
    return _write(tmp_path / "gemm_k_mismatch.onnx", g.model(check=False))


def huge_initializer(tmp_path: Path) -> Path:
    """A weight whose dims claim 10^12 floats while raw_data holds 16 bytes."""
    g = GraphBuilder("huge_initializer")
    k = 10**6
    w = TensorProto(name="fc0.weight", data_type=TensorProto.FLOAT, dims=[k, k])
    w.raw_data = b"\x00" * 16  # make_tensor would refuse the mismatch
    g.initializers.append(w)
    h = g.op("Gemm", [g.add_input("x", ["N", k]), w.name], transB=1)
    g.set_output(g.op("Sign", [h]), ["N", k])
    return _write(tmp_path / "huge_initializer.onnx", g.model(check=False))


def huge_input_dim(tmp_path: Path) -> Path:
    """A graph input declared [N, 2^40]; nothing else is wrong."""
    g = GraphBuilder("huge_input_dim")
    g.set_output(g.op("Sign", [g.add_input("x", ["N", 2**40])]), ["N", 2**40])
    return _write(tmp_path / "huge_input_dim.onnx", g.model())


def _external_weight_model(location: str) -> onnx.ModelProto:
    """x[N,16] -> Gemm(W[4,16] stored externally at `location`) -> BN -> y."""
    rng = np.random.default_rng(5)
    g = GraphBuilder("external")
    h = _bn(g, rng, _gemm(g, g.add_input("x", ["N", 16]), _pm1(rng, 4, 16), "fc0"), 4, "bn0")
    g.set_output(h, ["N", 4])
    model = g.model()
    w = next(t for t in model.graph.initializer if t.name == "fc0.weight")
    external_data_helper.set_external_data(w, location, offset=0, length=len(w.raw_data))
    w.ClearField("raw_data")  # set_external_data also sets data_location = EXTERNAL
    return model


def _secret_file(tmp_path: Path) -> Path:
    """A file outside the model folder holding valid-looking +-1 weights, so a converter
    that follows the path would silently succeed."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones((4, 16), dtype=F32).tobytes())
    return secret


def external_parent_dir(tmp_path: Path) -> Path:
    """External data location "../secret.bin" escapes the model's folder."""
    _secret_file(tmp_path)
    model = _external_weight_model("../secret.bin")
    return _write(tmp_path / "ext_parent" / "model.onnx", model)


def external_absolute_path(tmp_path: Path) -> Path:
    """External data location "/etc/passwd": absolute, outside the model's folder."""
    model = _external_weight_model("/etc/passwd")
    return _write(tmp_path / "ext_absolute" / "model.onnx", model)


def external_missing(tmp_path: Path) -> Path:
    """External data "model.onnx.data" that was never written beside the model."""
    model = _external_weight_model("model.onnx.data")
    return _write(tmp_path / "ext_missing" / "model.onnx", model)


BAD_MODELS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated_protobuf": (truncated_protobuf, "parse"),
    "garbage_bytes": (garbage_bytes, "parse"),
    "empty_file": (empty_file, "empty"),
    "softmax_in_chain": (softmax_in_chain, "unsupported"),
    "lstm_in_chain": (lstm_in_chain, "unsupported"),
    "float_weights": (float_weights, "binary"),
    "gemm_k_mismatch": (gemm_k_mismatch, "shape"),
    "huge_initializer": (huge_initializer, "size"),
    "huge_input_dim": (huge_input_dim, "size"),
    "external_parent_dir": (external_parent_dir, "outside"),
    "external_absolute_path": (external_absolute_path, "outside"),
    "external_missing": (external_missing, "missing"),
}
