"""QEMU running the UART firmware with its serial port on a pseudo-terminal, for `infer`.

`serve(elf, board)` starts `qemu-system-arm -serial pty` (the MPS2 machines connect their first
-serial back-end to CMSDK UART0, which firmware/mps2/link_uart.c drives), reads the
`/dev/pts/N` QEMU reports, yields it, and stops QEMU (the process it started) on exit. Any
program can then open that path as a serial port; the tests run `edge-sdk infer` against it.
QEMU only notices a new reader of the pty once a second, so the first answer may take that long.
"""

from __future__ import annotations

import re
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge_sdk.errors import EdgeError

from .boards import Board, get_board
from .qemu import _find_qemu

__all__ = ["serve"]

_PTY = re.compile(rb"char device redirected to (\S+)")


@contextmanager
def serve(elf: str | Path, board: str | Board, start_timeout: float = 10.0) -> Iterator[str]:
    """QEMU running `elf` on `board` with UART0 on a new pty; yields the pty's path."""
    board = get_board(board)
    if board.qemu_machine is None:
        raise EdgeError(f"board {board.name!r} cannot run under QEMU (real hardware only)")
    elf = Path(elf)
    if not elf.is_file():
        raise EdgeError(f"{elf}: no such ELF (convert with --io uart first)")
    cmd = [_find_qemu(), "-M", board.qemu_machine, "-nographic", "-monitor", "none",
           "-serial", "pty", "-semihosting-config", "enable=on,target=native",
           "-kernel", str(elf)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        yield _pty_name(proc, start_timeout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _pty_name(proc: subprocess.Popen, timeout: float) -> str:
    """The pty path from QEMU's "char device redirected to /dev/pts/N" line (on its stdout)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            seen += line
            found = _PTY.search(line)
            if found:
                return found.group(1).decode()
        if proc.poll() is not None:
            err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
            raise EdgeError(f"QEMU exited with status {proc.returncode} before opening its "
                            f"serial pty: {' '.join((seen.decode() + err).split())[-300:]}")
    raise EdgeError(f"QEMU did not report its serial pty within {timeout:g} s")
