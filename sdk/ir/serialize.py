"""IR <-> folder (`ir.json` + `arrays/*.npy`), versioned, byte-for-byte deterministic.

The folder lets `convert`, `simulate`, `build` and `flash` run as separate steps. Arrays are
stored with `allow_pickle=False` and read back only from inside the folder.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from ..errors import EdgeError
from . import layers as L
from .graph import Graph

FORMAT = "edge-sdk-ir"
_TYPES = {**L.LAYER_TYPES, **L.OP_TYPES, **L.WEIGHT_TYPES}


def _encode(obj, key: str, arrays: dict[str, np.ndarray]):
    if isinstance(obj, np.ndarray):
        rel = f"arrays/{len(arrays):03d}_{re.sub(r'[^A-Za-z0-9_.]', '_', key)}.npy"
        arrays[rel] = obj
        return {"npy": rel}
    if dataclasses.is_dataclass(obj):
        body = {
            f.name: _encode(getattr(obj, f.name), f"{key}.{f.name}", arrays)
            for f in dataclasses.fields(obj)
        }
        return {"type": type(obj).__name__, **body}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str, dict)):
        return obj
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _decode(value, folder: Path):
    if isinstance(value, list):
        return [_decode(v, folder) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"npy"}:
        rel = str(value["npy"])
        path = (folder / rel).resolve()
        if folder.resolve() not in path.parents:
            raise EdgeError(f"{folder}: array path '{rel}' points outside the IR folder")
        if not path.is_file():
            raise EdgeError(f"{folder}: missing array file '{rel}'")
        return np.load(path, allow_pickle=False)
    if "type" in value:
        cls = _TYPES.get(value["type"])
        if cls is None:
            raise EdgeError(f"{folder}: unknown IR type '{value['type']}'")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in value:
                v = _decode(value[f.name], folder)
                if isinstance(v, list) and "tuple" in str(f.type):
                    v = tuple(v)
                kwargs[f.name] = v
        return cls(**kwargs)
    return {k: _decode(v, folder) for k, v in value.items()}


def to_json(graph: Graph) -> tuple[str, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    doc = {
        "format": FORMAT,
        "version": L.IR_VERSION,
        "name": graph.name,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "source": graph.source,
        "layers": [_encode(layer, layer.name, arrays) for layer in graph.layers],
    }
    return json.dumps(doc, indent=1, sort_keys=True) + "\n", arrays


def save(graph: Graph, folder: Path) -> None:
    """Write the IR into `folder` (which must exist and be empty or new)."""
    folder = Path(folder)
    text, arrays = to_json(graph)
    (folder / "arrays").mkdir(parents=True, exist_ok=True)
    for rel, arr in arrays.items():
        with open(folder / rel, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
    (folder / "ir.json").write_text(text)


def load(folder: Path) -> Graph:
    folder = Path(folder)
    path = folder / "ir.json"
    if not path.is_file():
        raise EdgeError(f"{folder}: not an edge-sdk IR folder (no ir.json)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeError(f"{path}: cannot read IR: {exc}") from None
    if doc.get("format") != FORMAT:
        raise EdgeError(f"{path}: not an edge-sdk IR file")
    if doc.get("version") != L.IR_VERSION:
        raise EdgeError(
            f"{path}: IR version {doc.get('version')} is not supported (this edge-sdk reads "
            f"version {L.IR_VERSION})"
        )
    try:
        layers = [_decode(v, folder) for v in doc["layers"]]
        graph = Graph(doc["name"], layers, list(doc["inputs"]), list(doc["outputs"]),
                      doc.get("source", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeError(f"{path}: malformed IR: {exc}") from None
    graph.infos()  # validates shapes
    return graph
