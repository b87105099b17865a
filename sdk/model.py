"""`edge_sdk.load(path)`: the object the CLI and users share."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import golden
from .api import ModelAPI
from .errors import EdgeError
from .ir import serialize
from .ir.graph import Graph
from .passes.pipeline import lower


class Model(ModelAPI):
    """A model imported into the IR: `source` as the frontend read it, `ir` lowered.

    `run` is the golden model; `inspect`, `check` and `convert` come from `api.ModelAPI`.
    """

    def __init__(self, source: Graph | None, ir: Graph, path: str):
        self.source = source
        self.ir = ir
        self.path = path

    def run(self, x: np.ndarray, fixed_point: bool = False) -> np.ndarray:
        """Golden model on a batch: the same shape and values onnxruntime gives.

        `fixed_point` runs the real-valued layers (residual adds, affine results, PReLU,
        averages) with the targets' integer rules instead of float32 (sdk/fixedpoint.py); for
        pure binary networks both modes are the same integers.
        """
        return golden.run(self.ir, x, fixed_point=fixed_point)

    def run_outputs(self, x: np.ndarray, fixed_point: bool = False) -> dict[str, np.ndarray]:
        """Every model output by its source name (one for plain networks)."""
        return {self.ir.source.get("output_name", "output"): self.run(x, fixed_point)}

    def save_ir(self, folder: str | Path) -> Path:
        """Write the lowered IR folder atomically (a half-written folder never remains)."""
        return write_folder(folder, lambda tmp: serialize.save(self.ir, tmp))


def load(path: str | Path, input_range: tuple[int, int] | None = None,
         calibration: np.ndarray | None = None) -> Model:
    """Import a model file (.onnx, .tflite) or an IR folder written by `convert --target ir`.

    `calibration` (inputs [N, *input shape]) quantises a plain ONNX model's float
    Conv/Gemm/MatMul layers, or a .tflite model's float CONV_2D/FULLY_CONNECTED layers with
    real weights, to 8 bits (converters/onnx/calibrate.py, converters/tflite/calibrate.py)."""
    p = Path(path)
    if calibration is not None and (p.is_dir() or p.suffix.lower() not in (".onnx", ".tflite")):
        raise EdgeError(f"{p}: a calibration set applies to .onnx and .tflite models with "
                        "float layers")
    if p.is_dir():
        ir = serialize.load(p)
        if not ir.lowered:
            ir = lower(ir)
        return Model(None, ir, str(p))
    if p.suffix.lower() == ".tflite":
        from .converters.tflite import import_tflite

        source = import_tflite(p, input_range=input_range, calibration=calibration)
        return Model(source, lower(source), str(p))
    if p.suffix.lower() != ".onnx" and p.exists():
        raise EdgeError(f"{p}: unknown model format (expected .onnx, .tflite or an IR folder)")
    from .converters.onnx import factorizer_node, import_model
    from .converters.onnx import load as load_onnx

    proto = load_onnx(p)
    split = factorizer_node.split(proto, str(p))
    if split is not None:
        from .factorizer_model import FactorizerModel

        return FactorizerModel(str(p), *split, input_range=input_range)
    source = import_model(proto, str(p), input_range=input_range, calibration=calibration)
    return Model(source, lower(source), str(p))


def write_folder(folder: str | Path, fill) -> Path:
    """Fill a temporary sibling folder, then move it into place; clean up on any failure."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgeError(f"{folder}: exists and is not a folder")
    parent = folder.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=parent))
    try:
        fill(tmp)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=parent))
            os.replace(folder, old / "x")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_file(path: str | Path, write) -> Path:
    """Write a file via a temporary sibling and rename, so no partial file is ever left."""
    path = Path(path)
    parent = path.resolve().parent
    if not parent.is_dir():
        raise EdgeError(f"{path}: folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
