"""Flash, RAM and instructions per decoded query of a generated decoder, for the benchmark.

Why here: the figures must come from the same build the tests check for bit-exactness (the
firmware folder of emit.firmware_files, compiled with the board's flags), so a benchmark
number always belongs to a decoder that is known to be exact.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed
from edge_sdk.factorizer.codebooks import Codebooks

from ..boards import get_board
from ..toolchain import compile_flags, find_tool, object_sizes
from .emit import SOURCE
from .run import DEFAULT_BOARD, build_firmware, instructions_per_query
from .spec import DecoderSpec


@dataclass(frozen=True)
class Figures:
    """One decoder on one board. Sizes count the decoder and its one-line edge_model_run
    wrapper (code + index tables + start estimates in flash; static work buffers in RAM);
    instructions are per decoded query, counted by unicorn over the given queries."""

    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
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
        stack_bytes=stack_bytes(workdir, board),
        instructions_mean=float(ins.mean()) if ins.size else 0.0,
        instructions_max=int(ins.max(initial=0)),
        iterations_mean=float(its.mean()) if its.size else 0.0,
        queries=int(ins.size),
    )


def stack_bytes(folder: str | Path, board: str = DEFAULT_BOARD) -> int:
    """Worst-case stack of one decode: GCC's -fstack-usage frame of edge_factorizer_decode
    (kernels inlined into it included) plus the largest frame of a kernel it calls that was
    not inlined (they never call each other). Library helpers (memcpy, divides) not counted."""
    folder = Path(folder).resolve()
    gcc = find_tool("arm-none-eabi-gcc")
    with tempfile.TemporaryDirectory(prefix="edge-fz-su-") as tmp:
        obj = Path(tmp) / "fz.o"
        proc = subprocess.run([gcc, *compile_flags(get_board(board), [folder]), "-fstack-usage",
                               "-c", str(folder / SOURCE), "-o", str(obj)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EdgeError(f"{folder / SOURCE}: compile failed: {proc.stderr.strip()[-300:]}")
        frames = {}
        for line in obj.with_suffix(".su").read_text().splitlines():
            where, size, _kind = line.split("\t")
            frames[where.rsplit(":", 1)[-1]] = int(size)
    top = frames.pop("edge_factorizer_decode", 0)
    return top + max(frames.values(), default=0)
