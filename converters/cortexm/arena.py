"""Static arena planning: one uint32 array, offsets chosen at conversion time by liveness.

Each buffer lives from the step that writes it to the last step that reads it (inclusive),
so a kernel's inputs and output are live together and never overlap (the kernels' `restrict`
pointers rely on this). Placement is greedy, largest buffer first, at the lowest offset that
does not collide with an already placed buffer whose lifetime overlaps. For a chain this
reaches the ping-pong bound (the largest adjacent input + output pair) and it never does
worse than giving every buffer its own space. Ties break by buffer order: deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Live:
    """A buffer to place: size in uint32 words, first and last step that touch it."""

    name: str
    words: int
    first: int
    last: int


def plan(buffers: list[Live]) -> tuple[dict[str, int], int]:
    """Word offsets of every buffer and the arena size in words."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].words, i))
    placed: list[tuple[Live, int]] = []
    offsets: dict[str, int] = {}
    for i in order:
        buf = buffers[i]
        busy = sorted(
            (off, off + other.words)
            for other, off in placed
            if other.first <= buf.last and buf.first <= other.last
        )
        offset = 0
        for start, end in busy:
            if offset + buf.words <= start:
                break
            offset = max(offset, end)
        offsets[buf.name] = offset
        placed.append((buf, offset))
    size = max((off + b.words for b, off in placed), default=0)
    return offsets, size
