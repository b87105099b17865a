"""Amaranth-simulator drivers shared by the unit tests and the fast simulation path.

Two shapes of block exist: fixed-latency pipelines (`valid_in` -> `valid_out`, no backpressure)
and stream components (`amaranth.lib.stream` valid/ready). `run_pipeline` drives the first,
`run_streams` the second, both returning what came out and when.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaranth.sim import Simulator


def run_pipeline(dut, inputs: Sequence[dict], outputs: Sequence[str],
                 gaps: Callable[[int], bool] | None = None, extra_cycles: int = 64) -> list[dict]:
    """Feed one dict of input-port values per valid cycle; collect `outputs` when valid_out.

    `gaps(cycle)` -> True leaves that cycle idle (checks that bubbles flow through).
    """
    results: list[dict] = []

    async def bench(ctx):
        k = cycle = idle = 0
        while len(results) < len(inputs) and idle <= extra_cycles:
            feed = k < len(inputs) and not (gaps is not None and gaps(cycle))
            if feed:
                for name, value in inputs[k].items():
                    ctx.set(getattr(dut, name), value)
                k += 1
            ctx.set(dut.valid_in, 1 if feed else 0)
            await ctx.tick()
            if ctx.get(dut.valid_out):
                results.append({name: ctx.get(getattr(dut, name)) for name in outputs})
            cycle += 1
            idle += k == len(inputs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def run_streams(dut, source, sink, beats: Sequence[int], n_out: int,
                ready: Callable[[int], bool] | None = None,
                valid: Callable[[int], bool] | None = None,
                max_cycles: int = 1_000_000, setup=None) -> tuple[list[int], list[int], list[int]]:
    """Push `beats` into stream `source`, pull `n_out` payloads from stream `sink`.

    `source` may be a sequence of streams (the ports of a join): each is offered the same beat
    in the same cycle, and a beat counts as accepted when the first one takes it.
    `ready(cycle)` / `valid(cycle)` throttle the sink / source (backpressure and bubbles).
    Returns (payloads, cycle of each output beat, cycle of each accepted input beat), cycles
    counted from the first clock edge.
    """
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    out: list[int] = []
    t_out: list[int] = []
    t_in: list[int] = []

    async def bench(ctx):
        if setup is not None:
            setup(ctx)
        k = 0
        cycle = 0
        while len(out) < n_out:
            if cycle >= max_cycles:
                raise TimeoutError(f"no progress after {max_cycles} cycles "
                                   f"({len(out)}/{n_out} outputs, {k}/{len(beats)} inputs)")
            offer = k < len(beats) and (valid is None or valid(cycle))
            for port in sources:
                ctx.set(port.valid, 1 if offer else 0)
                if offer:
                    ctx.set(port.payload, beats[k])
            take = 1 if ready is None or ready(cycle) else 0
            ctx.set(sink.ready, take)
            _, _, s_valid, s_ready, o_valid, o_payload = await ctx.tick().sample(
                sources[0].valid, sources[0].ready, sink.valid, sink.payload)
            if s_valid and s_ready:
                t_in.append(cycle)
                k += 1
            if o_valid and take:
                out.append(o_payload)
                t_out.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, t_out, t_in
