"""The one exception type users see.

Every problem with a user's input (model file, input array, option) is raised as `EdgeError`
with a single-line message naming the file or node and the reason; the CLI turns it into exit
code 2 without a traceback. Anything else escaping is a bug in edge-sdk.
"""

from __future__ import annotations


class EdgeError(Exception):
    """A problem with the user's input, explained in one line."""

    def __init__(self, message: str):
        # Keep messages on one line whatever the underlying library printed.
        super().__init__(" ".join(str(message).split()))


def where(file: str | None = None, node: str | None = None, op: str | None = None) -> str:
    """Prefix for messages: `file: node 'n' (Op): `."""
    parts = []
    if file:
        parts.append(str(file))
    if node is not None:
        label = f"node '{node}'" if node else "unnamed node"
        parts.append(f"{label} ({op})" if op else label)
    return ": ".join(parts) + ": " if parts else ""
