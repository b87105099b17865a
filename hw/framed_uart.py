"""The host protocol (edge_sdk.protocol) over a UART: `FrameLink` between `rx`/`tx` pins.

`FramedUart` is the UART transport of framing.FrameLink: bytes from `UartRx` (through a small
FIFO) are the requests, the link's answers go out through `UartTx`. A UART has no frame
delimiter, so "the sender has stopped" is the quiet-line timer (`gap_cycles`, GAP_MS at the
board clock), and bytes that arrive while the device answers are reported with one BUSY answer
(another program may be talking on the line). The framing itself (and `crc32_byte`,
`framed_info`, re-exported here) lives in framing.py, shared with the SPI transport.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from edge_sdk.protocol import Info

from .framing import POLY, FrameLink, crc32_byte, framed_info
from .uart import UartRx, UartTx

__all__ = ["POLY", "FramedUart", "crc32_byte", "framed_info"]


class FramedUart(wiring.Component):
    """`rx`/`tx` pins; `o` feeds the network's input beats, `i` takes its output beats.

    in_width/in_beats: the network's input beat width and beats per inference; likewise
    out_width/out_beats. `divisor`: clock cycles per UART bit; `gap_cycles`: the quiet time
    (GAP_MS at the board clock) that ends a damaged frame.
    """

    def __init__(self, in_width: int, in_beats: int, out_width: int, out_beats: int,
                 divisor: int, gap_cycles: int):
        if gap_cycles < 20 * divisor:
            raise ValueError("gap_cycles must be at least two byte times (20 bit times)")
        self.divisor = divisor
        self.link = FrameLink(in_width, in_beats, out_width, out_beats, gap_cycles)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "o": Out(stream.Signature(in_width)),
            "i": In(stream.Signature(out_width)),
        })

    @property
    def info(self) -> Info:
        """What this wrapper answers to INFO."""
        return self.link.info

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UartRx(self.divisor)
        m.submodules.utx = utx = UartTx(self.divisor)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=16)
        m.submodules.link = link = self.link
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, fifo.w_stream)
        wiring.connect(m, fifo.r_stream, link.rx)
        wiring.connect(m, link.tx, utx.i)
        wiring.connect(m, link.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.i), link.i)
        return m
