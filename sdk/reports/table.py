"""Plain-text tables for the CLI (deterministic, no terminal tricks)."""

from __future__ import annotations


def kv_table(rows: list[tuple[str, str]]) -> str:
    """Two columns: a left-aligned label and its value."""
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
