"""cocotb testbench: a UART bit-level model between the simulated FPGA's rx/tx and a pty.

Runs inside the HDL simulator, started by uart_io.serve. It opens a pseudo-terminal (raw mode)
and writes its path to EDGE_UART_PTY_FILE; every byte a host writes to that pty is driven onto
`rx` as an 8N1 frame (start bit, 8 data bits LSB first, stop bit) at EDGE_UART_DIVISOR clock
cycles per bit, and every frame the design sends on `tx` is sampled in the middle of each bit
and written back to the pty. No protocol knowledge: frames are made and checked by the host.
While the host is silent the simulation idles the line, so the design's quiet-line timer runs
as on a board. Ends when the file EDGE_UART_STOP appears (or after EDGE_UART_WALL seconds).
"""

from __future__ import annotations

import os
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer

PERIOD_NS = 10


async def _watch_tx(dut, master: int, bit_ns: int) -> None:
    while True:
        await FallingEdge(dut.tx)
        await Timer(bit_ns // 2, unit="ns")  # middle of the start bit
        if int(dut.tx.value) != 0:
            continue  # a glitch, not a start bit
        byte = 0
        for k in range(8):
            await Timer(bit_ns, unit="ns")
            byte |= int(dut.tx.value) << k
        await Timer(bit_ns, unit="ns")  # middle of the stop bit
        os.write(master, bytes([byte]))


def _open_pty(announce: str) -> tuple[int, int]:
    """A raw pty pair; the slave's path is written (atomically) to the file `announce`."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    tmp = announce + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(os.ttyname(slave))
    os.replace(tmp, announce)
    return master, slave


@cocotb.test()
async def bridge_pty(dut):
    divisor = int(os.environ["EDGE_UART_DIVISOR"])
    stop_file = os.environ["EDGE_UART_STOP"]
    wall = time.monotonic() + float(os.environ.get("EDGE_UART_WALL", "1800"))
    bit_ns = divisor * PERIOD_NS

    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    master, slave = _open_pty(os.environ["EDGE_UART_PTY_FILE"])
    cocotb.start_soon(_watch_tx(dut, master, bit_ns))
    try:
        while not os.path.exists(stop_file) and time.monotonic() < wall:
            try:
                data = os.read(master, 4096)
            except (BlockingIOError, OSError):
                data = b""
            if not data:
                await Timer(10 * bit_ns, unit="ns")  # idle line for one byte time
                continue
            for byte in data:
                for level in (0, *((byte >> k) & 1 for k in range(8)), 1):
                    dut.rx.value = level
                    await Timer(bit_ns, unit="ns")
    finally:
        os.close(master)
        os.close(slave)
