"""cocotb testbench for the generated top (`edge_net`): streams every input, records outputs.

Runs inside the HDL simulator, started by `simulate.py` through cocotb's Python runner. Job
and result files are named by environment variables, so the bench holds no model knowledge:
EDGE_FPGA_JOB (JSON: input beats as hex, expected output beats, cycle limit, optionally
"weights": the words of an external weight stream `w`, offered cyclically, and "probes": the
instance names of stages inside the top whose output streams to record, for the layer diff)
and EDGE_FPGA_RESULT (with "probes": one list of hex payloads per probed stage, in the order
the beats were taken).
Handshakes are decided on the falling edge: the design's `ready`/`valid` outputs come from
registers, so their mid-cycle values are the ones the next rising edge will act on. A probed
stage's beat is taken where its `o.valid` and `o.ready` are both high in the ReadOnly phase
(the last stage's `o.ready` is the bench's own, so it must have settled).
"""

from __future__ import annotations

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from edge_sdk.converters.fpga.bench_files import read_job, write_result


def _unsigned(value) -> int:
    """A LogicArray (or a 1-bit Logic) as an unsigned int."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


@cocotb.test()
async def stream_all_inputs(dut):
    job = read_job()
    beats = [int(b, 16) for b in job["beats"]]
    n_out = int(job["output_beats"])
    limit = int(job["max_cycles"])
    weights = [int(b, 16) for b in job.get("weights", [])]
    probes = [getattr(dut, name) for name in job.get("probes", [])]
    ports = [(p.o__valid, p.o__ready, p.o__payload) for p in probes]
    records: list[list[str]] = [[] for _ in probes]

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.i__payload.value = 0
    dut.o__ready.value = 0
    if weights:
        dut.w__valid.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs, t_out, t_in = [], [], []
    k = wk = 0
    cycle = 0
    while len(outputs) < n_out:
        if cycle >= limit:
            raise TimeoutError(f"design stalled: {len(outputs)}/{n_out} output beats and "
                               f"{k}/{len(beats)} input beats after {cycle} cycles")
        offer = k < len(beats)
        if offer:
            dut.i__payload.value = beats[k]
        dut.i__valid.value = int(offer)
        dut.o__ready.value = 1
        in_ready = int(dut.i__ready.value)
        if int(dut.o__valid.value):
            outputs.append(format(_unsigned(dut.o__payload.value), "x"))
            t_out.append(cycle)
        if offer and in_ready:
            t_in.append(cycle)
            k += 1
        if weights:
            # the weight stream's ready depends on its valid (it is the engine's issue), so
            # offer the word, let the edge logic settle, then see whether it was taken
            dut.w__payload.value = weights[wk]
            dut.w__valid.value = 1
            await ReadOnly()
            if int(dut.w__ready.value):
                wk = (wk + 1) % len(weights)
        if probes:
            if not weights:
                await ReadOnly()
            for rec, (valid, ready, payload) in zip(records, ports, strict=True):
                if int(valid.value) and int(ready.value):
                    rec.append(format(_unsigned(payload.value), "x"))
        await FallingEdge(dut.clk)
        cycle += 1

    result = {"outputs": outputs, "t_out": t_out, "t_in": t_in, "cycles": cycle}
    if probes:
        result["probes"] = records
    write_result(result)
