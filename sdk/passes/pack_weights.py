"""Bit-pack every layer's weights into sign/mask planes (bitpack.py layout)."""

from __future__ import annotations

from ..ir import layers as L
from .base import Pass


class PackWeights(Pass):
    def run(self, graph) -> bool:
        changed = False
        for layer in graph.layers:
            if isinstance(layer, (L.Dense, L.Conv2d)) and isinstance(layer.weights, L.IntWeights):
                layer.weights = layer.weights.pack()
                changed = True
        return changed
