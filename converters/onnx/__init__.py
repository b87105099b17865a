"""ONNX frontend: load safely, normalise, then map the graph to IR layers."""

from .frontend import import_model, import_onnx
from .loader import load

__all__ = ["import_model", "import_onnx", "load"]
