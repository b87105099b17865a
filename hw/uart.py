"""8N1 UART receiver/transmitter and a bridge from bytes to the network's wide beats.

`UartRx`/`UartTx` are shared by both links. `UartBridge` is the raw one: each input beat as
ceil(width / 8) bytes, least significant first, each output beat back the same way, with no
framing or check. The board build uses the framed link instead (framed_uart.FramedUart, the
protocol `edge-sdk infer` speaks); the bridge holds no model knowledge, only the two widths.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out


class UartRx(wiring.Component):
    """Bytes from `rx`; `divisor` clock cycles per bit. A byte the sink refuses is dropped."""

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError("UART divisor must be >= 4")
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        busy = Signal()
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(~busy), m.If(~rx):  # start bit: sample data bits in their middle
            m.d.sync += [busy.eq(1), timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            with m.If(bit < 8):
                m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():  # stop bit
                m.d.sync += busy.eq(0)
                with m.If(rx):
                    m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
        return m


class UartTx(wiring.Component):
    def __init__(self, divisor: int):
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        frame = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(left == 0)]
        with m.If(left == 0), m.If(self.i.valid):
            m.d.sync += [frame.eq(Cat(0, self.i.payload, 1)), left.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq(Cat(frame[1:], 1)), left.eq(left - 1),
                         timer.eq(self.divisor - 1)]
        return m


class UartBridge(wiring.Component):
    """`rx`/`tx` pins on one side; beat streams `beats_out` (to the network) and `beats_in`."""

    def __init__(self, in_width: int, out_width: int, divisor: int):
        self.in_width, self.out_width, self.divisor = in_width, out_width, divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "beats_out": Out(stream.Signature(in_width)),
            "beats_in": In(stream.Signature(out_width)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=16)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, fifo.w_stream)

        n_in = (self.in_width + 7) // 8
        acc = Signal(n_in * 8)
        got = Signal(range(n_in + 1))
        full = got == n_in
        m.d.comb += [self.beats_out.payload.eq(acc[:self.in_width]),
                     self.beats_out.valid.eq(full), fifo.r_en.eq(~full)]
        with m.If(fifo.r_rdy & ~full):
            m.d.sync += [acc.eq(Cat(acc[8:], fifo.r_data)), got.eq(got + 1)]
        with m.If(self.beats_out.valid & self.beats_out.ready):
            m.d.sync += got.eq(0)

        n_out = (self.out_width + 7) // 8
        out = Signal(n_out * 8)
        left = Signal(range(n_out + 1))
        m.d.comb += [self.beats_in.ready.eq(left == 0), utx.i.payload.eq(out[:8]),
                     utx.i.valid.eq(left != 0)]
        with m.If(self.beats_in.valid & (left == 0)):
            m.d.sync += [out.eq(self.beats_in.payload), left.eq(n_out)]
        with m.If(utx.i.valid & utx.i.ready):
            m.d.sync += [out.eq(out >> 8), left.eq(left - 1)]
        return m
