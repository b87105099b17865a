"""Source-form IR -> target-form IR (what the golden model and the backends run)."""

from __future__ import annotations

from ..errors import EdgeError
from ..ir import layers as L
from ..ir.graph import Graph
from .commute_pool import CommutePool
from .fold_scores import FoldScores
from .fold_thresholds import FoldThresholds
from .merge_affine import MergeAffine
from .pack_weights import PackWeights

LOWERING = (MergeAffine, CommutePool, MergeAffine, FoldThresholds, FoldScores, PackWeights)


def lower(graph: Graph) -> Graph:
    for cls in LOWERING:
        graph, _ = cls().apply(graph)
    graph.infos()  # re-check shapes after the rewrites
    leftover = [layer.name for layer in graph.layers if isinstance(layer, L.SOURCE_ONLY)]
    if leftover:
        raise EdgeError(f"cannot lower layers {', '.join(leftover)}: float ops that are neither "
                        "followed by a sign nor at the output")
    return graph
