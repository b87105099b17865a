"""Turn each model output into `Scores`: integer scores plus the float ops that follow them."""

from __future__ import annotations

from ..errors import EdgeError
from ..ir import layers as L
from .base import Pass


class FoldScores(Pass):
    def run(self, graph) -> bool:
        changed = False
        for out in graph.outputs:
            producer = graph.producer(out)
            if isinstance(producer, L.Scores):
                continue
            if isinstance(producer, L.Affine):
                if graph.consumers(out):
                    raise EdgeError(f"'{producer.source}': float output is also used inside the "
                                    "model; not supported")
                scores = L.Scores(producer.name, producer.inputs, out, producer.source,
                                  ops=producer.ops)
                graph.layers[graph.layers.index(producer)] = scores
            else:
                # integer or ±1 output: rename its producer's output, then read it.
                inner = f"{out}__int"
                producer.output = inner
                for user in graph.consumers(out):
                    user.inputs = [inner if t == out else t for t in user.inputs]
                graph.layers.append(L.Scores(f"{producer.name}_scores", [inner], out,
                                             producer.source))
            changed = True
        return changed
