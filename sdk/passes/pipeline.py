"""Source-form IR -> target-form IR (what the golden model and the backends run)."""

from __future__ import annotations

from ..errors import EdgeError
from ..ir import layers as L
from ..ir.graph import Graph
from .commute_pool import CommutePool
from .fixed_point import FixedPoint, FoldFloatSigns
from .fold_scores import FoldScores
from .fold_thresholds import FoldThresholds
from .merge_affine import MergeAffine
from .pack_weights import PackWeights

# FoldFloatSigns first takes the signs of real-valued tensors (so FoldThresholds sees only
# signs of integers); FixedPoint then lowers every real-valued tensor left (sdk/fixedpoint.py).
LOWERING = (MergeAffine, CommutePool, MergeAffine, FoldFloatSigns, FoldThresholds, FoldScores,
            FixedPoint, PackWeights)


def lower(graph: Graph) -> Graph:
    for cls in LOWERING:
        graph, _ = cls().apply(graph)
    graph.infos()  # re-check shapes after the rewrites
    leftover = [layer.name for layer in graph.layers if isinstance(layer, L.SOURCE_ONLY)]
    if leftover:
        raise EdgeError(f"cannot lower layers {', '.join(leftover)}: float ops that are neither "
                        "followed by a sign nor at the output nor lowered to fixed point")
    return graph
