"""The IR: layers (layers.py), the graph and its tensor facts (graph.py), on disk (serialize.py)."""

from .graph import Graph, TensorInfo
from .layers import IR_VERSION

__all__ = ["IR_VERSION", "Graph", "TensorInfo"]
