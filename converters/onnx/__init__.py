"""ONNX frontend: load safely, normalise, then map the graph to IR layers."""

from .frontend import import_onnx

__all__ = ["import_onnx"]
