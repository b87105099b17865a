"""cocotb testbench for the layer diff: streams every input like `cocotb_bench`, and also records
every beat that crosses each listed stage's output stream (the RTL probes).

Started by `probes.run_probes` through `simulate.run_cocotb`. The job (EDGE_FPGA_JOB) adds
"probes": the instance names of the stages inside the top (`s<k>_<kind>`); the result adds
"probes": one list of hex payloads per stage, in the order the beats were taken. A beat is
taken on a rising edge where the stage's `o.valid` and `o.ready` are both high; both are
sampled in the ReadOnly phase before that edge, when the bench's own writes have settled.
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from .cocotb_bench import _read_job, _unsigned, _write_result


@cocotb.test()
async def stream_with_probes(dut):
    job = _read_job()
    beats = [int(b, 16) for b in job["beats"]]
    n_out = int(job["output_beats"])
    limit = int(job["max_cycles"])
    stages = [getattr(dut, name) for name in job["probes"]]
    ports = [(s.o__valid, s.o__ready, s.o__payload) for s in stages]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs, t_out, t_in = [], [], []
    records: list[list[str]] = [[] for _ in stages]
    k = cycle = 0
    while len(outputs) < n_out:
        if cycle >= limit:
            raise TimeoutError(f"design stalled: {len(outputs)}/{n_out} output beats and "
                               f"{k}/{len(beats)} input beats after {cycle} cycles")
        offer = k < len(beats)
        if offer:
            dut.i__payload.value = beats[k]
        dut.i__valid.value = int(offer)
        dut.o__ready.value = 1
        await ReadOnly()
        if int(dut.o__valid.value):
            outputs.append(format(_unsigned(dut.o__payload.value), "x"))
            t_out.append(cycle)
        for rec, (valid, ready, payload) in zip(records, ports, strict=True):
            if int(valid.value) and int(ready.value):
                rec.append(format(_unsigned(payload.value), "x"))
        if offer and int(dut.i__ready.value):
            t_in.append(cycle)
            k += 1
        await FallingEdge(dut.clk)
        cycle += 1

    _write_result({"outputs": outputs, "t_out": t_out, "t_in": t_in, "cycles": cycle,
                   "probes": records})
