"""Fold "float ops, then Sign / comparison" into integer thresholds, exactly.

See thresholds.py for the maths. The accumulator's range (from the IR's tensor facts) bounds the
search and clamps tau to [lo - 1, hi + 1], so thresholds fit the accumulator width.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgeError
from ..ir import layers as L
from ..thresholds import AffineSqrt, solve_threshold
from .affine_forms import channel_forms
from .base import Pass


class FoldThresholds(Pass):
    def run(self, graph) -> bool:
        changed = False
        for layer in list(graph.layers):
            if not isinstance(layer, L.Binarize):
                continue
            infos = graph.infos()
            src = layer.inputs[0]
            ops: list[L.FloatOp] = []
            try:
                producer = graph.producer(src)
            except KeyError:
                producer = None
            affine = None
            if isinstance(producer, L.Affine) and infos[producer.inputs[0]].kind != "float":
                # an affine result also used elsewhere (a residual shortcut) is recomputed
                # here as a threshold on its accumulator: exact, and no fixed point involved
                affine, ops, src = producer, producer.ops, producer.inputs[0]
            info = infos[src]
            if info.kind == "float":
                continue  # sign of a real-valued tensor: passes.fixed_point lowers it
            where = ", ".join(s for s in ((affine.source if affine else ""), layer.source) if s)
            channels = info.shape[0]
            try:
                forms = channel_forms(ops, channels) if ops else [AffineSqrt()] * channels
                solved = [solve_threshold(f, layer.mode, info.lo, info.hi) for f in forms]
            except ValueError as exc:
                bad = _first_bad_channel(forms if ops else [], layer.mode, info.lo, info.hi)
                raise EdgeError(f"'{where}': {bad}{exc}") from None
            thr = L.Threshold(
                name=layer.name,
                inputs=[src],
                output=layer.output,
                source=where,
                tau=np.array([s.tau for s in solved], dtype=np.int64),
                flip=np.array([s.flip for s in solved], dtype=bool),
                zero=np.array([s.zero for s in solved], dtype=bool),
            )
            if _float_in_faithful_mode(graph, src):
                thr.ops, thr.mode = list(ops), layer.mode
            graph.layers[graph.layers.index(layer)] = thr
            if affine is not None and not graph.consumers(affine.output) \
                    and affine.output not in graph.outputs:
                graph.layers.remove(affine)
            changed = True
        return changed


def _float_in_faithful_mode(graph, tensor: str) -> bool:
    """Whether the accumulator is a calibrated float layer's (Int8Weights.float_values), which
    the faithful golden mode computes in float32: its Threshold then keeps the source's ops
    and mode to binarise those floats as the source does."""
    while True:
        try:
            producer = graph.producer(tensor)
        except KeyError:
            return False
        if isinstance(producer, (L.MaxPool, L.Flatten, L.Reshape, L.Transpose)):
            tensor = producer.inputs[0]
            continue
        weights = getattr(producer, "weights", None)
        return getattr(weights, "float_values", None) is not None


def _first_bad_channel(forms, mode, lo, hi) -> str:
    for c, f in enumerate(forms):
        try:
            solve_threshold(f, mode, lo, hi)
        except ValueError:
            return f"channel {c}: "
    return ""
