"""What every pass shares."""

from __future__ import annotations

import copy

from ..ir.graph import Graph


class Pass:
    """A graph transformation: `apply` never mutates its argument."""

    def apply(self, graph: Graph) -> tuple[Graph, bool]:
        g = copy.deepcopy(graph)
        changed = self.run(g)
        return g, changed

    def run(self, graph: Graph) -> bool:  # pragma: no cover - interface
        raise NotImplementedError


def sole_consumer(graph: Graph, tensor: str):
    """The one layer reading `tensor`, or None when it is read more than once or is an output."""
    users = graph.consumers(tensor)
    if len(users) != 1 or tensor in graph.outputs:
        return None
    return users[0]
