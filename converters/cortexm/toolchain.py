"""Build a model folder into a firmware ELF with arm-none-eabi-gcc, measure it, read it back.

`build()` compiles every `*.c` of a generated model folder (model.c, kernels) together with the
board's firmware from `firmware/` and links one ELF. The flags are fixed here and shared with
`makefile.py`, so `make` in an exported folder produces a byte-identical ELF: no paths, dates or
debug info end up in the output (GCC records only source basenames without -g), and the link
order is canonical (model sources sorted by name, then the board's firmware in its listed order).

`read_elf()` is a tiny ELF32 reader (segments and symbols only) so that the QEMU runner and the
unicorn instruction counter need neither pyelftools nor binutils at run time.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError

from .boards import Board, get_board

__all__ = [
    "COMMON_CFLAGS",
    "LINK_FLAGS",
    "ElfImage",
    "FirmwareIO",
    "build",
    "compile_flags",
    "find_tool",
    "firmware_dir",
    "link_flags",
    "model_sources",
    "object_sizes",
    "read_elf",
    "size",
    "validate_batch",
]

# DESIGN.md: C99, every warning an error (generated code must be clean), one section per
# function/object so --gc-sections drops unused kernels and weights.
COMMON_CFLAGS: tuple[str, ...] = (
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-O2",
    "-ffunction-sections",
    "-fdata-sections",
)
# nano.specs: newlib-nano for the memcpy/memset GCC may emit; -nostartfiles: startup.c is ours.
LINK_FLAGS: tuple[str, ...] = ("--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections")

_GCC = "arm-none-eabi-gcc"
_SIZE = "arm-none-eabi-size"
_INSTALL_HINT = "install the Debian packages gcc-arm-none-eabi and libnewlib-arm-none-eabi"


def firmware_dir() -> Path:
    """Root of the firmware sources: package data in a wheel, else `firmware/` of the checkout.

    The wheel layout (package `edge_sdk.firmware`, see pyproject) is tried first so an installed
    package never picks up an unrelated checkout; the repository path serves source checkouts.
    `find_spec` rather than `importlib.resources.files`: the folder has no `__init__.py`, and for
    such namespace packages `files()` gives no plain file-system path.
    """
    try:
        spec = importlib.util.find_spec("edge_sdk.firmware")
    except ImportError:
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    # converters/cortexm/toolchain.py -> repository root is two levels above converters/.
    locations.append(str(Path(__file__).resolve().parents[2] / "firmware"))
    for location in locations:
        if (Path(location) / "common" / "startup.c").is_file():
            return Path(location)
    raise EdgeError(f"edge-sdk firmware sources not found in {', '.join(locations)}; reinstall")


def find_tool(name: str) -> str:
    """Absolute path of an ARM binutils/GCC tool, or a one-line EdgeError saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise EdgeError(f"{name} not found on PATH: {_INSTALL_HINT}")
    return path


def compile_flags(board: Board, include_dirs: Sequence[str | Path]) -> list[str]:
    """Compiler flags for one translation unit: common flags, board CPU flags, include dirs."""
    return [*COMMON_CFLAGS, *board.gcc_flags, *(f"-I{d}" for d in include_dirs)]


def link_flags(board: Board, firmware: str | Path) -> list[str]:
    """Linker flags; `firmware` is the firmware root as the linker should see it."""
    firmware = Path(firmware)
    return [
        *COMMON_CFLAGS,
        *board.gcc_flags,
        *LINK_FLAGS,
        f"-L{firmware / 'common'}",  # for `INCLUDE common.ld` in the board scripts
        f"-T{firmware / board.linker_script}",
    ]


def model_sources(src_dir: str | Path) -> list[str]:
    """The model's C files (names, sorted: the link order must not depend on the file system)."""
    src_dir = Path(src_dir)
    if not src_dir.is_dir():
        raise EdgeError(f"{src_dir}: model folder not found")
    if not (src_dir / "model.h").is_file():
        raise EdgeError(f"{src_dir}: no model.h (expected the Cortex-M backend's output)")
    names = sorted(p.name for p in src_dir.glob("*.c") if p.is_file())
    if not names:
        raise EdgeError(f"{src_dir}: no .c files to build")
    return names


def _compile(gcc: str, flags: list[str], source: Path, obj: Path) -> str | None:
    """Compile one file; None on success, else a short error description."""
    obj.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [gcc, *flags, "-c", str(source), "-o", str(obj)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return None
    return f"{source}: compile failed: {_first_errors(proc.stderr)}"


_DIAGNOSTIC_MARKERS = ("error", "overflowed", "undefined reference", "will not fit")


def _first_errors(stderr: str, limit: int = 2) -> str:
    """The first diagnostics of a GCC/ld run, without collect2's uninformative summary line."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if any(m in line.lower() for m in _DIAGNOSTIC_MARKERS) and "collect2" not in line
    ]
    return " | ".join(lines[:limit]) or stderr.strip()[-300:] or "no diagnostic"


def build(
    src_dir: str | Path,
    board: str | Board,
    out_elf: str | Path,
    *,
    jobs: int | None = None,
) -> Path:
    """Compile the model folder `src_dir` with `board`'s firmware and link `out_elf`.

    `jobs` limits parallel compiler processes (default: CPU count). Returns `out_elf`.
    Raises EdgeError (one line) if the toolchain is missing, a file does not compile, or the
    link fails (e.g. the model does not fit the board's flash or RAM).
    """
    board = get_board(board)
    gcc = find_tool(_GCC)
    src_dir = Path(src_dir).resolve()
    names = model_sources(src_dir)
    firmware = firmware_dir()
    out_elf = Path(out_elf)
    includes = [src_dir, *(firmware / d for d in board.include_dirs)]
    flags = compile_flags(board, includes)

    with tempfile.TemporaryDirectory(prefix="edge-build-") as tmp:
        tmp_dir = Path(tmp)
        units = [(src_dir / n, tmp_dir / "model" / (Path(n).stem + ".o")) for n in names]
        units += [
            (firmware / rel, tmp_dir / "firmware" / Path(rel).with_suffix(".o"))
            for rel in board.firmware_sources
        ]
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            errors = [e for e in pool.map(lambda u: _compile(gcc, flags, *u), units) if e]
        if errors:
            raise EdgeError(errors[0])

        linked = tmp_dir / "out.elf"
        proc = subprocess.run(
            [gcc, *link_flags(board, firmware), *(str(o) for _, o in units), "-o", str(linked)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise EdgeError(
                f"{src_dir}: link for {board.name} failed: {_first_errors(proc.stderr)}"
            )
        out_elf.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(linked, out_elf)
    return out_elf


def size(elf: str | Path) -> dict[str, int]:
    """`arm-none-eabi-size` of the ELF: text (flash: code, rodata, weights), data, bss, stack.

    The stack reservation (.stack_reserve, a NOLOAD section that makes the link fail when RAM
    runs out) is reported as `stack` and not counted in `bss`, so `bss` is the model's own RAM.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise EdgeError(f"{elf}: no such ELF file")
    tool = find_tool(_SIZE)
    berkeley = _run_tool([tool, "-B", str(elf)], elf)
    fields = berkeley.splitlines()[-1].split()
    text, data, bss = (int(v) for v in fields[:3])
    stack = 0
    for line in _run_tool([tool, "-A", str(elf)], elf).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == ".stack_reserve":
            stack = int(parts[1])
    return {"text": text, "data": data, "bss": bss - stack, "stack": stack}


def object_sizes(src_dir: str | Path, board: str | Board) -> dict[str, int]:
    """text/data/bss of the model's own objects, compiled for `board` as `build()` compiles
    them: what a library build adds to a firmware (before --gc-sections, which keeps all of
    it: every kernel and table is used)."""
    board = get_board(board)
    gcc, tool = find_tool(_GCC), find_tool(_SIZE)
    src_dir = Path(src_dir).resolve()
    names = model_sources(src_dir)
    flags = compile_flags(board, [src_dir])
    with tempfile.TemporaryDirectory(prefix="edge-objects-") as tmp:
        objs = [Path(tmp) / (Path(n).stem + ".o") for n in names]
        for name, obj in zip(names, objs, strict=True):
            error = _compile(gcc, flags, src_dir / name, obj)
            if error:
                raise EdgeError(error)
        totals = _run_tool([tool, "-B", "-t", *map(str, objs)], src_dir).splitlines()[-1]
    text, data, bss = (int(v) for v in totals.split()[:3])
    return {"text": text, "data": data, "bss": bss}


def _run_tool(cmd: list[str], elf: Path) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EdgeError(f"{elf}: {Path(cmd[0]).name} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


# --- tiny ELF32 reader ------------------------------------------------------------------------

_PT_LOAD = 1
_SHT_SYMTAB = 2
_EM_ARM = 40


@dataclass(frozen=True)
class ElfSegment:
    """One PT_LOAD segment: `data` (file bytes) goes to `vaddr`; memsz - len(data) is zero-fill."""

    vaddr: int
    paddr: int
    data: bytes
    memsz: int


@dataclass(frozen=True)
class FirmwareIO:
    """Sample layout recorded by the firmware's `edge_fw_io` table (see firmware/mps2/main.c)."""

    in_itemsize: int
    in_signed: bool
    in_size: int
    out_size: int


@dataclass(frozen=True)
class ElfImage:
    """The parts of a firmware ELF the host tools need: loadable segments and symbol values."""

    path: Path
    entry: int
    segments: tuple[ElfSegment, ...]
    symbols: dict[str, int]

    def symbol(self, name: str) -> int:
        """Address of a defined symbol, or a one-line EdgeError."""
        try:
            return self.symbols[name]
        except KeyError:
            raise EdgeError(f"{self.path}: symbol {name!r} not found in the ELF") from None

    def read(self, address: int, length: int) -> bytes:
        """Initial contents of [address, address + length) from the file's segments."""
        for seg in self.segments:
            if seg.vaddr <= address and address + length <= seg.vaddr + len(seg.data):
                start = address - seg.vaddr
                return seg.data[start : start + length]
        raise EdgeError(f"{self.path}: address {address:#x} is not initialised data in the ELF")

    def firmware_io(self) -> FirmwareIO | None:
        """The firmware's sample layout, or None for an ELF without the `edge_fw_io` table."""
        address = self.symbols.get("edge_fw_io")
        if address is None:
            return None
        itemsize, signed, in_size, out_size = struct.unpack("<4I", self.read(address, 16))
        return FirmwareIO(itemsize, bool(signed), in_size, out_size)


def read_elf(path: str | Path) -> ElfImage:
    """Parse a little-endian 32-bit ARM ELF executable (EdgeError if it is anything else)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EdgeError(f"{path}: cannot read ELF: {exc.strerror or exc}") from None
    if len(raw) < 52 or raw[:4] != b"\x7fELF" or raw[4] != 1 or raw[5] != 1:
        raise EdgeError(f"{path}: not a little-endian 32-bit ELF file")
    (machine,) = struct.unpack_from("<H", raw, 18)
    if machine != _EM_ARM:
        raise EdgeError(f"{path}: ELF is not for ARM (e_machine {machine})")
    entry, phoff, shoff = struct.unpack_from("<III", raw, 24)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", raw, 42)
    try:
        segments = []
        for i in range(phnum):
            p_type, off, vaddr, paddr, filesz, memsz = struct.unpack_from(
                "<6I", raw, phoff + i * phentsize
            )
            if p_type == _PT_LOAD and memsz:
                segments.append(ElfSegment(vaddr, paddr, raw[off : off + filesz], memsz))
        symbols = _read_symbols(raw, shoff, shentsize, shnum)
    except struct.error:
        raise EdgeError(f"{path}: truncated or corrupt ELF file") from None
    return ElfImage(path, entry, tuple(segments), symbols)


def _read_symbols(raw: bytes, shoff: int, shentsize: int, shnum: int) -> dict[str, int]:
    sections = [struct.unpack_from("<10I", raw, shoff + i * shentsize) for i in range(shnum)]
    symbols: dict[str, int] = {}
    for sh in sections:
        if sh[1] != _SHT_SYMTAB:
            continue
        sym_off, sym_size, link, entsize = sh[4], sh[5], sh[6], sh[9] or 16
        str_off = sections[link][4]
        for pos in range(sym_off, sym_off + sym_size, entsize):
            st_name, st_value, _size, st_info, _other, st_shndx = struct.unpack_from(
                "<IIIBBH", raw, pos
            )
            if st_name == 0 or st_shndx == 0:  # unnamed or undefined
                continue
            end = raw.index(b"\0", str_off + st_name)
            name = raw[str_off + st_name : end].decode("ascii", "replace")
            is_global = (st_info >> 4) != 0
            if is_global or name not in symbols:  # a global wins over a same-named local
                symbols[name] = st_value
    return symbols


def validate_batch(
    elf: Path, io: FirmwareIO | None, inputs: np.ndarray, out_size: int | None
) -> tuple[np.ndarray, int]:
    """Check a batch [N, EDGE_IN_SIZE] of int8/int16 against the firmware's recorded layout.

    Returns the batch as contiguous little-endian (the target's byte order) and the output
    size (from the ELF when `out_size` is None). A mismatch is a one-line EdgeError here rather
    than garbage outputs later.
    """
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or inputs.dtype.kind != "i" or inputs.dtype.itemsize not in (1, 2):
        raise EdgeError(
            f"inputs must be a 2-D int8 or int16 array [N, EDGE_IN_SIZE], "
            f"got {inputs.dtype} with shape {inputs.shape}"
        )
    if out_size is None:
        if io is None:
            raise EdgeError(f"{elf}: no edge_fw_io table in the ELF; pass out_size")
        out_size = io.out_size
    if out_size <= 0:
        raise EdgeError(f"out_size must be positive, got {out_size}")
    if io is not None:
        got = (inputs.dtype.itemsize, inputs.shape[1], out_size)
        want = (io.in_itemsize, io.in_size, io.out_size)
        if got != want:
            raise EdgeError(
                f"{elf}: firmware expects int{8 * want[0]} inputs of {want[1]} elements and "
                f"{want[2]} outputs, got int{8 * got[0]} x {got[1]} and out_size {got[2]}"
            )
    little = inputs.astype(inputs.dtype.newbyteorder("<"), copy=False)
    return np.ascontiguousarray(little), out_size
