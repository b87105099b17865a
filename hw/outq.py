"""Output queue with credits: lets a fixed-latency pipeline feed a valid/ready stream.

The engines' pipelines never stall (a stall enable on every register would cost Fmax); instead
an engine issues a group's final read only while it holds a credit, i.e. while the FIFO is sure
to have room for the result when it pops out of the pipeline `latency` cycles later.
Credits = depth - (results in flight) - (results queued). `has_credit` is registered from
"credits >= 2" one cycle earlier (at most one credit goes per cycle, so >= 1 remains): the
issue decision then never waits for the credit adder, at the price of one slot of depth.
The FIFO's registered read side also breaks the combinational ready path between stages.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out


class OutputQueue(wiring.Component):
    def __init__(self, width: int, depth: int):
        if depth < 3:
            raise ValueError("output queue depth must be >= 3")
        self.width, self.depth = width, depth
        super().__init__({
            "take_credit": In(1),  # a result was just issued into the pipeline
            "has_credit": Out(1),
            "w_data": In(width),
            "w_en": In(1),
            "o": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=self.width, depth=self.depth)
        credits = Signal(range(self.depth + 1), init=self.depth)
        ok = Signal(init=1)
        m.d.sync += ok.eq(credits >= 2)
        popped = self.o.valid & self.o.ready
        with m.If(self.take_credit & ~popped):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(popped & ~self.take_credit):
            m.d.sync += credits.eq(credits + 1)
        m.d.comb += [
            self.has_credit.eq(ok),
            fifo.w_data.eq(self.w_data),
            fifo.w_en.eq(self.w_en),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m
