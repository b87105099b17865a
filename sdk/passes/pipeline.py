"""Source-form IR -> target-form IR (what the golden model and the backends run)."""

from __future__ import annotations

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
    if not graph.lowered:
        leftover = [layer.name for layer in graph.layers if not _is_target(layer)]
        from ..errors import EdgeError

        raise EdgeError(f"cannot lower layers {', '.join(leftover)}: float ops that are neither "
                        "followed by a sign nor at the output")
    return graph


def _is_target(layer) -> bool:
    from ..ir import layers as L

    return not isinstance(layer, L.SOURCE_ONLY)
