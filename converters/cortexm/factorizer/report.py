"""Flash, RAM and instructions per decoded query of a generated decoder, for the benchmark.

Why here: the figures must come from the same build the tests check for bit-exactness (the
firmware folder of emit.firmware_files, compiled with the board's flags), so a benchmark
number always belongs to a decoder that is known to be exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed
from edge_sdk.factorizer.codebooks import Codebooks

from ..toolchain import object_sizes
from .run import DEFAULT_BOARD, build_firmware, instructions_per_query
from .spec import DecoderSpec


@dataclass(frozen=True)
class Figures:
    """One decoder on one board. Sizes count the decoder and its one-line edge_model_run
    wrapper (code + index tables + start estimates in flash; static work buffers in RAM);
    instructions are per decoded query, counted by unicorn over the given queries."""

    flash_bytes: int
    ram_bytes: int
    instructions_mean: float
    instructions_max: int
    iterations_mean: float
    queries: int


def measure(sp: DecoderSpec, queries: Any, workdir: str | Path,
            board: str = DEFAULT_BOARD) -> Figures:
    """Build, count and check: refuses (EdgeError) if any query differs from `fixed.decode`."""
    elf = build_firmware(sp, workdir, board)
    idx, its, ins = instructions_per_query(sp, elf, queries, board)
    cb = Codebooks.from_indices(sp.indices, sp.L)
    q = np.asarray(queries).reshape(len(idx), -1)
    opts = {} if sp.method == "default" else {
        "similarity": sp.kind, "A": sp.A, "T": sp.T, "max_iters": sp.max_iters, "seed": sp.seed}
    want_idx, want_its = fixed.decode(q, cb, sp.method, qbits=sp.qbits, xbits=sp.xbits, **opts)
    if not (np.array_equal(idx, want_idx) and np.array_equal(its, want_its)):
        raise EdgeError("cortex-m factorizer: the firmware disagrees with fixed.decode")
    sizes = object_sizes(workdir, board)
    return Figures(
        flash_bytes=sizes["text"] + sizes["data"],
        ram_bytes=sizes["data"] + sizes["bss"],
        instructions_mean=float(ins.mean()) if ins.size else 0.0,
        instructions_max=int(ins.max(initial=0)),
        iterations_mean=float(its.mean()) if its.size else 0.0,
        queries=int(ins.size),
    )
