"""Read an ONNX file without trusting it.

Sizes are checked before anything is allocated (declared dims, raw data lengths, external data
ranges), and external data may only come from files inside the model's own folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper, helper

from edge_sdk.errors import EdgeError

from .qonnx_support import refuse_unsupported

MAX_FILE_BYTES = 2 * 1024**3 - 1  # protobuf's own limit
MAX_ELEMENTS = 1 << 28  # per tensor (1 GiB of float32); no binary net on a MCU/FPGA is near it
MAX_DIM = 1 << 24
SUPPORTED_OPSETS = range(13, 22)


def _itemsize(data_type: int) -> int | None:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def _check_tensor(t: onnx.TensorProto, model_dir: Path, file: str) -> None:
    name = t.name or "<unnamed>"
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise EdgeError(f"{file}: tensor '{name}' declares a negative dimension {dims}")
    if any(d > MAX_DIM for d in dims) or math.prod(dims) > MAX_ELEMENTS:
        raise EdgeError(
            f"{file}: tensor '{name}' declares size {dims} ({math.prod(dims)} elements), above the "
            f"limit of {MAX_ELEMENTS} elements"
        )
    n = math.prod(dims)
    size = _itemsize(t.data_type)
    if t.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")):
            raise EdgeError(f"{file}: tensor '{name}': external data path '{loc}' is outside the "
                            "model's folder (absolute paths are refused)")
        target = (model_dir / loc).resolve()
        base = model_dir.resolve()
        if base not in target.parents:
            raise EdgeError(f"{file}: tensor '{name}': external data path '{loc}' is outside the "
                            "model's folder")
        if not target.is_file():
            raise EdgeError(f"{file}: tensor '{name}': external data file '{loc}' is missing")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise EdgeError(f"{file}: tensor '{name}': bad external data offset/length") from None
        avail = target.stat().st_size - offset
        need = n * size if size else None
        if offset < 0 or avail < 0 or (length is not None and (length < 0 or length > avail)):
            raise EdgeError(f"{file}: tensor '{name}': external data range lies outside "
                            f"'{loc}' ({target.stat().st_size} bytes)")
        if need is not None and (length if length is not None else avail) < need:
            raise EdgeError(f"{file}: tensor '{name}': declares {n} elements but '{loc}' holds "
                            "fewer bytes")
        return
    if t.HasField("raw_data") and size is not None and len(t.raw_data) != n * size:
        raise EdgeError(
            f"{file}: tensor '{name}' declares size {dims} ({n} elements) but holds "
            f"{len(t.raw_data)} bytes"
        )


def _tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            elif attr.type == onnx.AttributeProto.GRAPH:
                yield from _tensors(attr.g)


def load(path: str | Path) -> onnx.ModelProto:
    """Parse, bound and check an ONNX model; external data is read only after it is vetted."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise EdgeError(f"{file}: no such file")
    if not path.is_file():
        raise EdgeError(f"{file}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise EdgeError(f"{file}: empty file, cannot parse as an ONNX model")
    if size > MAX_FILE_BYTES:
        raise EdgeError(f"{file}: file of {size} bytes exceeds the 2 GiB protobuf size limit")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf raises several unrelated types
        raise EdgeError(f"{file}: cannot parse ONNX protobuf ({type(exc).__name__})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise EdgeError(f"{file}: cannot parse as an ONNX model: no graph or no nodes")
    refuse_unsupported(model, file)  # custom ops and >2-bit quantisers, named, before opsets
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise EdgeError(f"{file}: the model imports no default-domain opset")
    if opset not in SUPPORTED_OPSETS:
        raise EdgeError(f"{file}: opset {opset} is not supported (supported: 13-21)")
    for t in _tensors(model.graph):
        _check_tensor(t, path.parent, file)
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim if d.HasField("dim_value")]
        if any(d > MAX_DIM for d in dims) or math.prod(dims) > MAX_ELEMENTS:
            raise EdgeError(f"{file}: '{vi.name}' declares size {dims}, above the limit of "
                            f"{MAX_ELEMENTS} elements")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(model.graph)):
        try:
            external_data_helper.load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as exc:
            raise EdgeError(f"{file}: cannot read external data: {exc}") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EdgeError(f"{file}: invalid ONNX model: {first}") from None
    return model
