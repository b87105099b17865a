"""cocotb testbench for a factorizer block's Verilog: stream queries in, collect decoded beats.

Runs inside the HDL simulator, started by `factorizer_sim.py` through `simulate.run_cocotb`
(same job/result files: EDGE_FPGA_JOB holds the input beats, the number of output beats and a
cycle limit). Why not the network bench: a query takes thousands of cycles, so this bench does
no Python work per idle cycle; it sleeps until `i.ready` or `o.valid` rises and reads the cycle
number from simulation time. Values are set and handshakes judged on the falling edge, where
the design's registered outputs are settled.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, with_timeout
from cocotb.utils import get_sim_time

from edge_sdk.converters.fpga.bench_files import read_job, write_result

PERIOD_NS = 10


def _cycle() -> int:
    return int(get_sim_time(unit="ns")) // PERIOD_NS


async def _feed(dut, beats: list[int], t_in: list[int]) -> None:
    for value in beats:
        await FallingEdge(dut.clk)
        while not int(dut.i__ready.value):
            dut.i__valid.value = 0
            await RisingEdge(dut.i__ready)
            await FallingEdge(dut.clk)
        dut.i__payload.value = value
        dut.i__valid.value = 1
        t_in.append(_cycle())
    await FallingEdge(dut.clk)
    dut.i__valid.value = 0


async def _collect(dut, n_out: int, outputs: list[str], t_out: list[int]) -> None:
    while len(outputs) < n_out:
        await RisingEdge(dut.o__valid)
        await ReadOnly()
        if not int(dut.o__valid.value):
            continue  # a zero-time glitch, not a beat
        outputs.append(format(dut.o__payload.value.to_unsigned(), "x"))
        t_out.append(_cycle())
        await RisingEdge(dut.clk)  # o.ready is held high: the beat leaves on this edge


@cocotb.test()
async def decode_all_queries(dut):
    job = read_job()
    beats = [int(b, 16) for b in job["beats"]]
    n_out = int(job["output_beats"])
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    outputs: list[str] = []
    t_out: list[int] = []
    t_in: list[int] = []
    cocotb.start_soon(_feed(dut, beats, t_in))
    await with_timeout(_collect(dut, n_out, outputs, t_out),
                       int(job["max_cycles"]) * PERIOD_NS, "ns")
    write_result({"outputs": outputs, "t_out": t_out, "t_in": t_in, "cycles": _cycle()})
