"""Target boards of the Cortex-M backend: CPU flags, memory map, firmware files, run/flash tools.

One frozen record per board keeps every tool (compiler, Makefile writer, QEMU runner, unicorn
instruction counter) reading the same facts, so a QEMU run, a unicorn count and a `make` build
of the same model cannot silently disagree on flags or memory layout.

Firmware paths are relative to the firmware root (`firmware/` in the repository, shipped as
package data `edge_sdk.firmware` in a wheel; see `toolchain.firmware_dir`).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_sdk.errors import EdgeError

__all__ = ["BOARDS", "DEFAULT_BOARD", "Board", "get_board"]

_M4F_FLAGS = ("-mthumb", "-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16")
_M3_FLAGS = ("-mthumb", "-mcpu=cortex-m3")
# Cortex-M7 with the single-precision FPv5 unit (STM32F746); QEMU's mps2-an500 models an M7 too.
_M7F_FLAGS = ("-mthumb", "-mcpu=cortex-m7", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16")

# The QEMU test driver: semihosting file I/O in, file out, exit status to the host.
_MPS2_SOURCES = (
    "common/startup.c",
    "common/semihost.c",
    "mps2/board.c",
    "mps2/main.c",
)


@dataclass(frozen=True)
class Board:
    """Everything needed to build for, run on, and emulate one board.

    `firmware_sources`, `include_dirs` and `linker_script` are relative to the firmware root;
    `support_files` lists the other firmware files a stand-alone copy (Makefile build) needs.
    """

    name: str
    cpu: str  # GCC -mcpu / unicorn CPU model name, e.g. "cortex-m4"
    gcc_flags: tuple[str, ...]  # architecture flags only; common flags live in toolchain.py
    linker_script: str
    firmware_sources: tuple[str, ...]
    include_dirs: tuple[str, ...]
    support_files: tuple[str, ...]
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    has_fpu: bool
    qemu_machine: str | None  # `qemu-system-arm -M` name, None if QEMU cannot run it
    pyocd_target: str | None  # `pyocd flash -t` name, None for emulated-only boards
    clock_hz: int | None  # core clock the firmware sets up (None: emulator, time is meaningless)
    description: str

    @property
    def firmware_files(self) -> tuple[str, ...]:
        """Every firmware file a self-contained build directory needs (sources, headers, .ld)."""
        return self.firmware_sources + self.support_files + (self.linker_script,)


def _mps2(name: str, cpu: str, flags: tuple[str, ...], machine: str, fpu: bool) -> Board:
    return Board(
        name=name,
        cpu=cpu,
        gcc_flags=flags,
        linker_script="mps2/mps2.ld",
        firmware_sources=_MPS2_SOURCES,
        include_dirs=("common",),
        support_files=("common/board.h", "common/semihost.h", "common/common.ld"),
        # QEMU hw/arm/mps2.c: 4 MiB ZBT SSRAM1 at 0 (code), 4 MiB ZBT SSRAM2/3 at 0x20000000.
        flash_origin=0x0000_0000,
        flash_bytes=4 << 20,
        ram_origin=0x2000_0000,
        ram_bytes=4 << 20,
        has_fpu=fpu,
        qemu_machine=machine,
        pyocd_target=None,
        clock_hz=None,
        description=f"QEMU {machine} ({cpu}), semihosting file I/O",
    )


BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        _mps2("qemu-mps2-an386", "cortex-m4", _M4F_FLAGS, "mps2-an386", fpu=True),
        _mps2("qemu-mps2-an385", "cortex-m3", _M3_FLAGS, "mps2-an385", fpu=False),
        _mps2("qemu-mps2-an500", "cortex-m7", _M7F_FLAGS, "mps2-an500", fpu=True),
        Board(
            name="nucleo-f446re",
            cpu="cortex-m4",
            gcc_flags=_M4F_FLAGS,
            linker_script="nucleo-f446re/stm32f446re.ld",
            firmware_sources=(
                "common/startup.c",
                "nucleo-f446re/board.c",
                "common/uart_main.c",
                "common/inputs_default.c",
            ),
            include_dirs=("common", "nucleo-f446re"),
            support_files=("common/board.h", "common/common.ld", "nucleo-f446re/uart.h"),
            # STM32F446RE: 512 KiB flash at 0x08000000, 128 KiB SRAM (SRAM1 + SRAM2).
            flash_origin=0x0800_0000,
            flash_bytes=512 << 10,
            ram_origin=0x2000_0000,
            ram_bytes=128 << 10,
            has_fpu=True,
            qemu_machine=None,
            # Needs the CMSIS pack once: `pyocd pack install stm32f446retx`.
            pyocd_target="stm32f446retx",
            clock_hz=180_000_000,
            description="ST NUCLEO-F446RE (STM32F446RE, 180 MHz from HSI), results on USART2",
        ),
        Board(
            name="nucleo-f746zg",
            cpu="cortex-m7",
            gcc_flags=_M7F_FLAGS,
            linker_script="nucleo-f746zg/stm32f746zg.ld",
            firmware_sources=(
                "common/startup.c",
                "nucleo-f746zg/board.c",
                "common/uart_main.c",
                "common/inputs_default.c",
            ),
            include_dirs=("common", "nucleo-f746zg"),
            support_files=("common/board.h", "common/common.ld", "nucleo-f746zg/uart.h"),
            # STM32F746ZG: 1 MiB flash at 0x08000000 (AXIM), 320 KiB RAM (DTCM + SRAM1 + SRAM2).
            flash_origin=0x0800_0000,
            flash_bytes=1024 << 10,
            ram_origin=0x2000_0000,
            ram_bytes=320 << 10,
            has_fpu=True,
            qemu_machine=None,
            # Needs the CMSIS pack once: `pyocd pack install stm32f746zgtx`.
            pyocd_target="stm32f746zgtx",
            clock_hz=216_000_000,
            description="ST NUCLEO-F746ZG (STM32F746ZG, 216 MHz from HSI, caches on), results on "
                        "USART3",
        ),
    )
}

DEFAULT_BOARD = "qemu-mps2-an386"


def get_board(name: str | Board) -> Board:
    """The board called `name` (a `Board` passes through), or a one-line EdgeError."""
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(BOARDS))
        raise EdgeError(f"unknown board {name!r}; known boards: {known}") from None
