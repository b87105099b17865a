"""Move max-pool in front of the float ops that precede it, so pooling runs on integers.

Per channel the ops are monotone: increasing ops commute with max exactly; decreasing ones
(negative gamma or scale) turn max into min, recorded as `select_min`. Float rounding keeps
monotonicity, so the source runtime's max of rounded values is the rounded value of the max.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeError
from ..ir import layers as L
from .affine_forms import channel_forms
from .base import Pass, sole_consumer


class CommutePool(Pass):
    def run(self, graph) -> bool:
        changed = False
        infos = graph.infos()
        for affine in list(graph.layers):
            if not isinstance(affine, L.Affine):
                continue
            pool = sole_consumer(graph, affine.output)
            if not isinstance(pool, L.MaxPool):
                continue
            if pool.select_min is not None:
                raise EdgeError(f"layer '{pool.name}': cannot commute a pool twice")
            channels = infos[affine.inputs[0]].shape[0]
            try:
                forms = channel_forms(affine.ops, channels)
            except ValueError as exc:
                raise EdgeError(f"layer '{affine.name}' (from '{affine.source}'): {exc}") from None
            select_min = np.array([f.direction < 0 for f in forms], dtype=bool)
            # rewire: x -> pool -> affine -> (pool's old consumers)
            x, mid, out = affine.inputs[0], affine.output, pool.output
            pool.inputs, pool.output = [x], mid
            affine.inputs, affine.output = [mid], out
            pool.select_min = select_min if select_min.any() else None
            ia, ip = graph.layers.index(affine), graph.layers.index(pool)
            graph.layers[ia], graph.layers[ip] = pool, affine
            changed = True
        return changed
