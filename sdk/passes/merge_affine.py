"""Merge back-to-back `Affine` layers (Gemm bias, then BN, then a comparison constant...)."""

from __future__ import annotations

from ..ir import layers as L
from .base import Pass, sole_consumer


class MergeAffine(Pass):
    def run(self, graph) -> bool:
        changed = False
        i = 0
        while i < len(graph.layers):
            first = graph.layers[i]
            nxt = sole_consumer(graph, first.output) if isinstance(first, L.Affine) else None
            if isinstance(nxt, L.Affine):
                first.ops = first.ops + nxt.ops
                first.output = nxt.output
                first.source = ", ".join(s for s in (first.source, nxt.source) if s)
                graph.layers.remove(nxt)
                changed = True
                continue
            i += 1
        return changed
