"""Host side of the FPGA's framed UART, and the whole path under cocotb on a pseudo-terminal.

`codec(folder, meta)`: what `edge-sdk infer` needs for an FPGA build folder: the INFO answer the
bitstream gives (hw.framed_uart.framed_info of the design's streams), a quantised sample as the
INFER payload (the input beats, ceil(width / 8) bytes each, LSB first, laid out by
stream_io.encode_inputs from the manifest) and the answers back as scores (output beats, 4 bytes
per lane, through stream_io.decode_outputs).

`serve(folder)`: the bitstream's logic (`board.UartTop`: FramedUart + edge_net, as `build`
puts it on the board, at a small clock divisor) simulated by Icarus under cocotb, with a UART
bit-level model in the testbench (cocotb_uart_bench.py) bridging rx/tx to a new pty; yields the
pty's path, so `edge-sdk infer` or any serial program can talk to the simulated FPGA.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import EdgeError
from ...hw.framed_uart import framed_info
from ...hw.toolchain import to_verilog
from ...protocol import Info
from .board import UartTop, link_params
from .generate import MANIFEST, VERILOG
from .stream_io import decode_outputs, encode_inputs

__all__ = ["SIM_TOP", "Codec", "codec", "serve"]

SIM_TOP = "edge_uart"
BENCH = "edge_sdk.converters.fpga.cocotb_uart_bench"


def _files(folder: Path) -> dict[str, str]:
    paths = {name: Path(folder) / name for name in (VERILOG, MANIFEST)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise EdgeError(f"{folder}: not an fpga build folder ({missing[0]} missing)")
    return {name: p.read_text() for name, p in paths.items()}


@dataclass(frozen=True)
class Codec:
    info: Info
    layout_in: dict
    layout_out: dict
    in_bpb: int
    out_bpb: int

    def encode(self, q: np.ndarray) -> bytes:
        beats = encode_inputs(self.layout_in, np.asarray(q)[None])
        return b"".join(int(b).to_bytes(self.in_bpb, "little") for b in beats)

    def decode(self, payloads: list[bytes]) -> np.ndarray:
        words = [int.from_bytes(p[k:k + self.out_bpb], "little")
                 for p in payloads for k in range(0, len(p), self.out_bpb)]
        return decode_outputs(self.layout_out, words, len(payloads))


def codec(folder: Path, meta: dict) -> Codec:
    del meta  # one design whatever the board
    files = _files(folder)
    import json

    manifest = json.loads(files[MANIFEST])
    p = link_params(files)
    return Codec(framed_info(**p), manifest["input"], manifest["output"],
                 (p["in_width"] + 7) // 8, (p["out_width"] + 7) // 8)


def sim_verilog(files: Mapping[str, str], divisor: int, gap_cycles: int) -> str:
    """Verilog of UartTop (top `edge_uart`) followed by the design's own edge_net.v."""
    top = UartTop(**link_params(files), divisor=divisor, gap_cycles=gap_cycles)
    return to_verilog(top, SIM_TOP) + "\n" + files[VERILOG]


@contextmanager
def serve(folder: str | os.PathLike, *, divisor: int = 4, gap_bytes: int = 64,
          simulator: str = "icarus", start_timeout: float = 300.0,
          wall_limit: float = 1800.0) -> Iterator[str]:
    """Simulate the folder's design behind its framed UART; yields the pty to talk to.

    `divisor`: clock cycles per bit (>= 4; the board uses its clock / 115200). `gap_bytes`: the
    quiet time that ends a damaged frame, in byte times. The simulation stops when the block
    exits (or after `wall_limit` seconds).
    """
    from cocotb_tools.runner import get_runner

    files = _files(Path(folder))
    verilog = sim_verilog(files, divisor, gap_bytes * 10 * divisor)
    work = Path(tempfile.mkdtemp(prefix="edge_fpga_uart_"))
    pty_file, stop_file = work / "pty", work / "stop"
    failure: list[BaseException] = []
    try:
        src = work / f"{SIM_TOP}.v"
        src.write_text(verilog)
        runner = get_runner(simulator)
        runner.build(sources=[src], hdl_toplevel=SIM_TOP, build_dir=work / "build",
                     timescale=("1ns", "1ps"), log_file=work / "build.log", always=True)

        def run() -> None:
            try:
                runner.test(test_module=BENCH, hdl_toplevel=SIM_TOP, build_dir=work / "build",
                            test_dir=work, log_file=work / "sim.log", timescale=("1ns", "1ps"),
                            extra_env={"EDGE_UART_PTY_FILE": str(pty_file),
                                       "EDGE_UART_STOP": str(stop_file),
                                       "EDGE_UART_DIVISOR": str(divisor),
                                       "EDGE_UART_WALL": str(wall_limit)})
            except BaseException as exc:  # noqa: BLE001 - reported to the waiting caller
                failure.append(exc)

        thread = threading.Thread(target=run, name="cocotb-uart", daemon=True)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not pty_file.is_file():
            if failure or not thread.is_alive() or time.monotonic() > deadline:
                log = work / "sim.log"
                tail = log.read_text(errors="replace")[-500:] if log.is_file() else ""
                raise EdgeError(f"fpga: the UART simulation did not start: {tail}")
            time.sleep(0.05)
        try:
            yield pty_file.read_text().strip()
        finally:
            stop_file.touch()
            thread.join(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
