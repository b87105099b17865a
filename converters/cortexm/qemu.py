"""Run a firmware ELF under QEMU (mps2-an386 / mps2-an385) on a batch of samples.

The firmware (firmware/mps2/main.c) reads `edge_in.bin` and writes `edge_out.bin` through
semihosting, relative to QEMU's working directory; each run gets a fresh temporary directory,
so concurrent runs cannot see each other's files. QEMU's exit status is the firmware's: 0 on
success, the codes in `_FIRMWARE_EXITS` otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError

from .boards import Board, get_board
from .toolchain import read_elf, validate_batch

__all__ = ["QEMU", "run"]

QEMU = "qemu-system-arm"

# Exit statuses of firmware/mps2/main.c and board.c.
_FIRMWARE_EXITS = {
    1: "semihosting error exit",
    2: "firmware could not open edge_in.bin",
    3: "edge_in.bin is not a whole number of samples",
    4: "short read from edge_in.bin",
    5: "firmware could not create edge_out.bin",
    6: "short write to edge_out.bin",
    7: "edge_model_run returned an error",
    8: "CPU fault (HardFault or other exception)",
}


def run(
    elf: str | Path,
    board: str | Board,
    inputs: np.ndarray,
    out_size: int,
    timeout: float = 60.0,
) -> np.ndarray:
    """Run `elf` on `board` under QEMU for every row of `inputs`; return [N, out_size] int32.

    `inputs` is [N, EDGE_IN_SIZE] of int8 or int16 (the model's EDGE_IN_T). When the ELF carries
    the firmware's `edge_fw_io` table, shapes and dtype are checked against it first, so a
    mismatch is reported clearly instead of as garbage outputs. Raises EdgeError (one line, with
    the tail of QEMU's stderr) on a non-zero exit, a timeout, or missing/short output.
    """
    board = get_board(board)
    if board.qemu_machine is None:
        raise EdgeError(f"board {board.name!r} cannot run under QEMU (real hardware only)")
    qemu = _find_qemu()
    elf = Path(elf).resolve()
    image = read_elf(elf)
    if not board.flash_origin <= image.entry < board.flash_origin + board.flash_bytes:
        raise EdgeError(
            f"{elf}: entry point {image.entry:#x} is outside {board.name}'s flash; "
            "built for another board?"
        )
    inputs, out_size = validate_batch(elf, image.firmware_io(), inputs, out_size)
    n = inputs.shape[0]

    with tempfile.TemporaryDirectory(prefix="edge-qemu-") as tmp:
        work = Path(tmp)
        inputs.tofile(work / "edge_in.bin")
        cmd = [
            qemu,
            "-M",
            board.qemu_machine,
            "-nographic",
            "-monitor",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
            str(elf),
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            tail = _tail(exc.stderr)
            raise EdgeError(
                f"{elf}: QEMU {board.qemu_machine} timed out after {timeout:g} s{tail}"
            ) from None
        if proc.returncode != 0:
            meaning = _FIRMWARE_EXITS.get(proc.returncode, "QEMU failed")
            raise EdgeError(
                f"{elf}: QEMU {board.qemu_machine} exit status {proc.returncode} "
                f"({meaning}){_tail(proc.stderr)}"
            )
        out_path = work / "edge_out.bin"
        expected = n * out_size * 4
        got = out_path.stat().st_size if out_path.is_file() else -1
        if got != expected:
            found = "no edge_out.bin" if got < 0 else f"{got} bytes of edge_out.bin"
            raise EdgeError(
                f"{elf}: QEMU run wrote {found}, expected {expected} "
                f"({n} samples x {out_size} int32){_tail(proc.stderr)}"
            )
        out = np.fromfile(out_path, dtype="<i4")
    return out.astype(np.int32).reshape(n, out_size)


def _find_qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise EdgeError(f"{QEMU} not found on PATH: install the Debian package qemu-system-arm")
    return path


def _tail(stderr: bytes | str | None, limit: int = 300) -> str:
    """Last characters of QEMU's stderr as a message suffix (EdgeError makes it one line)."""
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = " ".join(text.split())
    return f": {text[-limit:]}" if text else ""
