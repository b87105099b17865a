"""`convert --target cortex-m --io uart`: a second firmware that serves `edge-sdk infer`.

Why a second ELF rather than a different `model.elf`: the test driver (semihosting files on
QEMU, compiled-in samples on the Nucleo) is what `simulate` runs and the unicorn instruction
counts measure; the UART driver loops forever waiting for the host, which neither can use. So
`--io uart` adds `build/<board>/model-uart.elf` (common/link.c framing, common/link_main.c model
glue, `<board>/link_uart.c` port) next to it, plus Makefile targets `uart` (and `run-uart` with
`-serial pty` for QEMU boards, `flash-uart` for boards pyOCD programs) that build the same bytes.
`edge-sdk build` rebuilds it and `edge-sdk flash` programs it instead of the test driver.

The host side (`codec`) turns quantised samples into INFER payloads and answers back into
scores, and states the INFO answer the firmware must give, from the ELF's `edge_fw_io` table.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path, PurePosixPath

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.protocol import Device, Info

from .boards import Board, get_board
from .toolchain import build as build_elf
from .toolchain import firmware_dir, read_elf

__all__ = ["ELF", "Codec", "codec", "elf_path", "firmware", "write"]

ELF = "model-uart.elf"
_LINK_SOURCES = ("common/link.c", "common/link_main.c")
_LINK_HEADERS = ("common/link.h", "common/ms_timer.h")
# the test drivers the UART driver replaces (QEMU: main.c; Nucleo boards: uart_main.c)
_DRIVERS = ("main.c", "uart_main.c", "inputs_default.c")

_RULES = """
# Host-protocol firmware (convert --io uart): `make uart` builds {elf}, which `edge-sdk infer`
# drives over the board's UART (framing: edge_sdk/protocol.py); byte-identical to edge-sdk's.
UART_ELF = {elf}
UART_FIRMWARE_SRCS = {sources}
UART_OBJS = $(MODEL_SRCS:%.c=$(BUILD)/model/%.o) \\
\t$(UART_FIRMWARE_SRCS:firmware/%.c=$(BUILD)/firmware/%.o)

all: $(UART_ELF)
uart: $(UART_ELF)

$(UART_ELF): $(UART_OBJS) {linker_script} firmware/common/common.ld
\t$(CC) $(CFLAGS) $(LDFLAGS) $(UART_OBJS) -o $@

clean: clean-uart
clean-uart:
\trm -f $(UART_ELF)
{extra}
.PHONY: uart clean-uart{phony}
"""

_RUN = """
# QEMU with the UART on a new pseudo-terminal (QEMU prints its name): edge-sdk infer . --port it
run-uart: $(UART_ELF)
\tqemu-system-arm -M {machine} -nographic -monitor none -serial pty \\
\t\t-semihosting-config enable=on,target=native -kernel $(UART_ELF)
"""

_FLASH = """
flash-uart: $(UART_ELF)
\tpyocd flash -t {target} $(UART_ELF)
"""


def firmware(board: str | Board) -> Board:
    """`board` with the host-protocol driver instead of its test driver (same name, flags, map).

    The port is `link_uart.c` beside the board's `board.c`; a board without one has no UART
    driver yet (a one-line EdgeError).
    """
    board = get_board(board)
    if _LINK_SOURCES[1] in board.firmware_sources:
        return board
    board_c = next((s for s in board.firmware_sources if s.endswith("/board.c")), None)
    port = str(PurePosixPath(board_c).parent / "link_uart.c") if board_c else None
    if port is None or not (firmware_dir() / port).is_file():
        raise EdgeError(f"board {board.name} has no UART host-protocol port (firmware "
                        f"{port or '<board>/link_uart.c'} missing); --io uart is not available")
    kept = tuple(s for s in board.firmware_sources if PurePosixPath(s).name not in _DRIVERS)
    headers = tuple(h for h in _LINK_HEADERS if h not in board.support_files)
    return dataclasses.replace(board, firmware_sources=(*kept, *_LINK_SOURCES, port),
                               support_files=board.support_files + headers)


def elf_path(folder: Path, board: str | Board) -> Path:
    return Path(folder) / "build" / get_board(board).name / ELF


def build(folder: Path, board: str | Board) -> Path:
    """Build (or rebuild) `build/<board>/model-uart.elf` from the folder's model sources."""
    return build_elf(folder, firmware(board), elf_path(folder, board))


def write(folder: Path, board: str | Board) -> dict:
    """Build the UART firmware and add its Makefile targets; returns facts for report.json."""
    uboard = firmware(board)
    elf = build(folder, uboard)
    src_root = firmware_dir()
    for rel in uboard.firmware_files:
        dest = folder / "firmware" / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src_root / rel, dest)
    makefile = folder / "Makefile"
    if makefile.is_file():
        extra, phony = "", ""
        if uboard.qemu_machine:
            extra += _RUN.format(machine=uboard.qemu_machine)
            phony += " run-uart"
        if uboard.pyocd_target:
            extra += _FLASH.format(target=uboard.pyocd_target)
            phony += " flash-uart"
        rules = _RULES.format(
            elf=ELF,
            sources=" ".join(f"firmware/{rel}" for rel in uboard.firmware_sources),
            linker_script=f"firmware/{uboard.linker_script}",
            extra=extra,
            phony=phony,
        )
        makefile.write_text(makefile.read_text() + rules)
    return {"elf": str(elf.relative_to(folder)), "port": _port_text(uboard),
            "protocol": "edge_sdk.protocol (framed, CRC-32), 115200 8N1"}


def _port_text(board: Board) -> str:
    if board.qemu_machine:
        return "CMSDK UART0 (QEMU: -serial pty)"
    return "USART2 on PA2/PA3 (ST-LINK virtual COM port)"


@dataclasses.dataclass(frozen=True)
class Codec:
    """Host side of one build: what INFO must say, sample -> INFER payload -> outputs."""

    info: Info
    in_dtype: np.dtype
    out_size: int

    def encode(self, q: np.ndarray) -> bytes:
        """One quantised sample (any shape, in_size elements) as the INFER payload."""
        flat = np.asarray(q).reshape(-1)
        return flat.astype(self.in_dtype.newbyteorder("<")).tobytes()

    def decode(self, payloads: list[bytes]) -> np.ndarray:
        """INFER answers -> int64 [N, out_size] scores."""
        raw = b"".join(payloads)
        return np.frombuffer(raw, dtype="<i4").astype(np.int64).reshape(len(payloads),
                                                                        self.out_size)


def codec(folder: Path, meta: dict) -> Codec:
    """The codec of a Cortex-M build folder converted with --io uart."""
    options = meta.get("options", {})
    if options.get("io") != "uart":
        raise EdgeError(f"{folder}: this build has no UART firmware; convert again with "
                        "--io uart (and flash it, or run it under QEMU with -serial pty)")
    elf = elf_path(folder, options.get("board") or "qemu-mps2-an386")
    if not elf.is_file():
        raise EdgeError(f"{elf}: UART firmware missing; run `edge-sdk build {folder}`")
    io = read_elf(elf).firmware_io()
    if io is None:
        raise EdgeError(f"{elf}: no edge_fw_io table; not an edge-sdk UART firmware")
    dtype = np.dtype(f"{'i' if io.in_signed else 'u'}{io.in_itemsize}")
    info = Info(device=Device.CORTEX_M, in_item=io.in_itemsize, signed=io.in_signed,
                in_bytes=io.in_size * io.in_itemsize, out_bytes=io.out_size * 4)
    return Codec(info, dtype, io.out_size)
