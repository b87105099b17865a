"""cocotb testbench: a bit-level SPI master (mode 0, MSB first) driving a simulated FramedSpi.

Runs inside the HDL simulator on a top with pins clk, rst, sck, cs_n, mosi, miso (board.SpiTop
exported to Verilog). The job file EDGE_SPI_JOB holds {"half": system clocks per SCK phase,
"max_length": answer payload bound, "steps": [{"send": hex, "poll": bool}]}: a step with
`poll` runs hw.spi.host_exchange (the request transaction, then polls until the answer frame is
read), one without is a single transaction whose MISO bytes are kept. The result file
EDGE_SPI_RESULT gets {"answers": [hex of the answer frame or of the MISO bytes]}. No protocol
knowledge beyond host_exchange: frames are made and checked by the caller.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer

from edge_sdk.hw.spi import host_exchange

PERIOD_NS = 10
SKEW_NS = 3  # pins change between clock edges, never on one


async def _transfer(dut, data: bytes, half_ns: int) -> bytes:
    dut.cs_n.value = 0
    await Timer(half_ns, unit="ns")
    got = bytearray()
    for byte in data:
        value = 0
        for k in range(7, -1, -1):
            dut.mosi.value = byte >> k & 1
            await Timer(half_ns, unit="ns")
            dut.sck.value = 1  # both sides sample on the rising edge
            value = value << 1 | int(dut.miso.value)
            await Timer(half_ns, unit="ns")
            dut.sck.value = 0
        got.append(value)
    await Timer(half_ns, unit="ns")
    dut.cs_n.value = 1
    await Timer(half_ns, unit="ns")
    return bytes(got)


@cocotb.test()
async def spi_master(dut):
    job = json.loads(Path(os.environ["EDGE_SPI_JOB"]).read_text())
    half_ns = int(job["half"]) * PERIOD_NS
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.sck.value = 0
    dut.mosi.value = 0
    dut.cs_n.value = 1
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    await Timer(SKEW_NS, unit="ns")

    async def transfer(data: bytes) -> bytes:
        return await _transfer(dut, data, half_ns)

    answers = []
    for step in job["steps"]:
        data = bytes.fromhex(step["send"])
        if step["poll"]:
            frame = await host_exchange(transfer, data, int(job["max_length"]), max_polls=500)
            answers.append(frame.encode().hex())
        else:
            answers.append((await transfer(data)).hex())
    Path(os.environ["EDGE_SPI_RESULT"]).write_text(json.dumps({"answers": answers}))
