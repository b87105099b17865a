"""Debug firmware for the layer-by-layer diff: every layer's output stays in RAM, readable.

The production build (`backend.convert`) reuses arena space as soon as a tensor is dead and
computes thresholds inside the Dense/Conv kernel that feeds them, so after a run most layer
outputs are gone or never existed. The debug build plans the same kernels with two changes:
every arena buffer gets its own space (nothing is overwritten, so after `edge_model_run`
returns the arena holds every tensor of the inference), and by default thresholds are not
fused, so integer accumulators are visible too (`fuse=True` keeps the production kernels and
shows only what they store). The ELF runs under unicorn, which reads the arena straight from
the emulated RAM after each sample; `decode` turns each buffer back into the IR tensor (int32
C order, or bits packed per pixel over channels, see layout.Storage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import bitpack, golden
from ...errors import EdgeError
from ...ir.graph import Graph
from . import toolchain
from .boards import DEFAULT_BOARD, Board, get_board
from .emit import ARENA, write_files
from .icount import Emulator
from .layout import Storage
from .makefile import write_makefile
from .plan import IN_BUFFER, OUT_BUFFER, Plan, Planner


@dataclass
class DebugBuild:
    """A debug firmware folder and where each IR tensor lives in it."""

    folder: Path
    board: Board
    plan: Plan
    storage: dict[str, Storage]  # IR tensor -> its buffer (views share their producer's)
    shapes: dict[str, tuple[int, ...]]  # IR tensor -> shape without the batch

    @property
    def elf(self) -> Path:
        return self.folder / "build" / self.board.name / "model.elf"


def write_debug(ir: Graph, folder: str | Path, board: str | Board = DEFAULT_BOARD,
                popcount: str = "swar", fuse: bool = False) -> DebugBuild:
    """Write the debug C and Makefile into `folder` (no compile yet: see `compile_debug`)."""
    board = get_board(board)
    planner = Planner(ir, fuse)
    plan = planner.run()
    words = planner.buffer_words()
    offsets, total = {}, 0
    for name in sorted(words, key=lambda b: int(b[1:])):  # b0, b1, ...: plan order
        offsets[name] = total
        total += words[name]
    plan.offsets, plan.arena_words = offsets, total
    if 4 * total > board.ram_bytes:
        raise EdgeError(f"cortex-m debug build: keeping every layer's output needs {4 * total} B "
                        f"of RAM, {board.name} has {board.ram_bytes} B")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = write_files(plan, popcount)
    for name, text in sorted(files.items()):
        (folder / name).write_text(text)
    write_makefile(folder, board, sorted(n for n in files if n.endswith(".c")))
    infos = ir.infos()
    storage = {t: st for t, st in planner.env.items() if st.buffer != IN_BUFFER}
    return DebugBuild(folder, board, plan, storage, {t: infos[t].shape for t in storage})


def compile_debug(build: DebugBuild) -> Path:
    """Compile and link the folder's C for its board (again after any edit of the C)."""
    return toolchain.build(build.folder, build.board, build.elf)


def decode(st: Storage, words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One tensor from its buffer's uint32 words, in the IR's C order and shape."""
    if not st.is_bits:
        return words[:st.size].view(np.int32).astype(np.int64).reshape(shape)
    n = st.plane_words
    sign = words[:n].reshape(st.pixels, st.cw)
    mask = words[n:2 * n].reshape(st.pixels, st.cw) if st.mask else None
    values = bitpack.unpack_values(sign, mask, st.channels)  # [pixels, channels]
    return values.T.reshape(-1)[:st.size].astype(np.int64).reshape(shape)


def run_dumps(build: DebugBuild, ir: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run every sample of `x` on the debug ELF under unicorn; every stored tensor, by name."""
    q = golden.quantise_input(ir.layers[0], x)
    if not build.elf.exists():
        compile_debug(build)
    emu = Emulator(build.elf, build.board)
    arena = emu.image.symbol(ARENA) if build.plan.arena_words else 0
    dtype = np.int8 if build.plan.in_dtype == "int8" else np.int16
    rows = q.reshape(len(q), -1).astype(dtype)
    out: dict[str, list[np.ndarray]] = {t: [] for t in build.storage}
    for row in rows:
        res = emu.run(row[None, :], build.plan.out_size)
        raw = emu.uc.mem_read(arena, 4 * build.plan.arena_words) if arena else b""
        ram = np.frombuffer(bytes(raw), dtype="<u4")
        for tensor, st in build.storage.items():
            if build.plan.aliases.get(st.buffer) == OUT_BUFFER or st.buffer == OUT_BUFFER:
                words = res.outputs[0].astype("<i4").view("<u4")
            else:
                off = build.plan.offsets[st.buffer]
                words = ram[off:off + st.words]
            out[tensor].append(decode(st, words, build.shapes[tensor]))
    return {t: np.stack(v) for t, v in out.items()}


def dump(ir: Graph, x: np.ndarray, folder: str | Path, board: str | Board = DEFAULT_BOARD,
         fuse: bool = False) -> dict[str, np.ndarray]:
    """Debug build in `folder`, compiled and run: every layer output the firmware keeps."""
    build = write_debug(ir, folder, board, fuse=fuse)
    compile_debug(build)
    return run_dumps(build, ir, x)
