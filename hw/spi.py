"""The host protocol (edge_sdk.protocol) over SPI: the same frames as the UART, a host-clocked wire.

`SpiPeripheral` is the wire: SPI mode 0 (SCK idles low, both sides sample on the rising edge and
change on the falling edge), MSB first, chip select active low, every pin passed through a
two-flip-flop synchroniser into the system clock, so one clock domain holds the whole design.
`FramedSpi` puts framing.FrameLink (the framing shared with the UART) behind it, with a buffer
that holds each answer until it is complete.

SPI is full duplex and the host makes the clock, so the device can only answer in bytes the host
clocks. The transaction rules (what `host_exchange` below does, and what a host must do):

1. A request frame is sent in one transaction: CS low, the frame's bytes, CS high. CS going high
   is what ends a frame: a transaction that ends before the frame is complete drops it without an
   answer, and error answers (BAD_CRC, BAD_LENGTH, BAD_TYPE) are made only after CS went high, so
   the rest of a damaged frame is never parsed as a new one.
2. Then the host polls: it clocks `POLL` (0x00) bytes, in as many transactions of any length as
   it likes, and reads MISO: `FILL` (0xA5) until the whole answer frame is in the device, then
   the answer frame back to back (no filler inside a frame), then `FILL` again. The host skips
   bytes until the sync (0xED 0x5A), then reads the header and the length it announces; FILL is
   neither sync byte, so it never starts a false frame. Poll bytes clocked while the answer is
   made or waits are ignored; those clocked after it was read reach the frame parser, which
   skips 0x00 as it is not a sync byte.
3. A byte counts only when all eight of its bits were clocked: an answer byte whose transaction
   ends early is sent again in the next, and a partial request byte is dropped.
4. One request at a time: bytes clocked while the device works on a request or holds an answer are
   ignored (that is how polling works), so BUSY is never sent over SPI. While a host that keeps
   these rules sends a request, MISO carries FILL; one that sends a request before reading the
   previous answer gets that answer's bytes on MISO during the ignored request.
5. Timing: SCK at most clk / 8 (each SCK phase at least four system clocks, since the
   synchroniser and the edge detector take three), CS low for half an SCK period before the first
   rising edge and after the last falling edge, CS high for at least four system clocks.

FILL is 0xA5, not 0x00 or 0xFF, so that a host can tell a device that has nothing yet from a MISO
line stuck low or pulled high with no device on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from edge_sdk.protocol import Frame, FrameError, FrameParser, Info

from .framing import FrameLink

__all__ = ["FILL", "POLL", "FramedSpi", "SpiPeripheral", "host_exchange"]

FILL = 0xA5  # MISO byte when the device has no answer byte to give
POLL = 0x00  # MOSI byte a host clocks to read an answer


class SpiPeripheral(wiring.Component):
    """Mode-0 SPI pins <-> byte streams: `o` the bytes the host sent, `i` the bytes to send it.

    A received byte is offered on `o` for one cycle (dropped if not taken, as the host cannot
    wait). At each byte boundary the next byte of `i` is shifted out, or FILL when `i` has none;
    it is taken from `i` only once its eighth bit has been clocked. `deselected` pulses when CS
    goes high.
    """

    def __init__(self, fill: int = FILL):
        self.fill = fill
        super().__init__({
            "sck": In(1),
            "cs_n": In(1, init=1),
            "mosi": In(1),
            "miso": Out(1),
            "o": Out(stream.Signature(8)),
            "i": In(stream.Signature(8)),
            "deselected": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        sck, cs_n, mosi = Signal(), Signal(init=1), Signal()
        m.submodules.sync_sck = FFSynchronizer(self.sck, sck)
        m.submodules.sync_cs = FFSynchronizer(self.cs_n, cs_n, init=1)
        m.submodules.sync_mosi = FFSynchronizer(self.mosi, mosi)
        sck_was, cs_was = Signal(), Signal(init=1)
        m.d.sync += [sck_was.eq(sck), cs_was.eq(cs_n)]
        rise = sck & ~sck_was & ~cs_n
        fall = ~sck & sck_was & ~cs_n
        select = ~cs_n & cs_was
        m.d.comb += self.deselected.eq(cs_n & ~cs_was)

        rx = Signal(8)
        bits = Signal(range(8))  # bits of the current byte clocked so far
        tx = Signal(8)
        real = Signal()  # the byte being shifted out is the head of `i` (not FILL)
        m.d.comb += self.miso.eq(tx[7])
        m.d.sync += self.o.valid.eq(0)
        with m.If(select | (fall & (bits == 0))):  # a byte boundary: the next byte out
            m.d.sync += [tx.eq(self.fill), real.eq(self.i.valid)]
            with m.If(self.i.valid):
                m.d.sync += tx.eq(self.i.payload)
        with m.Elif(fall):
            m.d.sync += tx.eq(tx << 1)
        with m.If(select):
            m.d.sync += bits.eq(0)
        with m.Elif(rise):
            m.d.sync += [rx.eq(Cat(mosi, rx[:7])), bits.eq(bits + 1)]
            with m.If(bits == 7):
                m.d.sync += [self.o.payload.eq(Cat(mosi, rx[:7])), self.o.valid.eq(1),
                             bits.eq(0)]
                m.d.comb += self.i.ready.eq(real)
        return m


class FramedSpi(wiring.Component):
    """SPI pins (`sck`, `cs_n`, `mosi`, `miso`); `o` feeds the network, `i` takes its outputs.

    in_width/in_beats: the network's input beat width and beats per inference; likewise
    out_width/out_beats. The transaction rules are the module docstring's.
    """

    def __init__(self, in_width: int, in_beats: int, out_width: int, out_beats: int):
        self.link = FrameLink(in_width, in_beats, out_width, out_beats, gap_cycles=None,
                              report_lost=False)
        super().__init__({
            "sck": In(1),
            "cs_n": In(1, init=1),
            "mosi": In(1),
            "miso": Out(1),
            "o": Out(stream.Signature(in_width)),
            "i": In(stream.Signature(out_width)),
        })

    @property
    def info(self) -> Info:
        """What this wrapper answers to INFO."""
        return self.link.info

    def elaborate(self, platform):
        m = Module()
        m.submodules.spi = spi = SpiPeripheral()
        m.submodules.link = link = self.link
        m.submodules.rxq = rxq = SyncFIFOBuffered(width=8, depth=16)
        m.submodules.txq = txq = SyncFIFOBuffered(width=8, depth=link.max_answer)
        m.d.comb += [spi.sck.eq(self.sck), spi.cs_n.eq(self.cs_n), spi.mosi.eq(self.mosi),
                     self.miso.eq(spi.miso)]
        wiring.connect(m, link.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.i), link.i)

        # an answer is released to MISO once its last byte is in the buffer, and held
        # (the link deaf to MOSI) until the host has clocked all of it out
        release = Signal()
        wiring.connect(m, link.tx, txq.w_stream)
        with m.If(link.tx.valid & link.tx.ready & link.tx_last):
            m.d.sync += release.eq(1)
        with m.Elif(txq.level == 0):
            m.d.sync += release.eq(0)
        m.d.comb += [spi.i.payload.eq(txq.r_data), spi.i.valid.eq(txq.r_rdy & release),
                     txq.r_en.eq(spi.i.ready & release)]

        # request bytes reach the link only while no answer is being made or waits (rule 4;
        # the link's first answer byte is in the buffer before the network computes, and in
        # QUIET, before an error answer, the link drops what it is given itself)
        accepting = (txq.level == 0) & ~release
        m.d.comb += [spi.o.ready.eq(1), rxq.w_data.eq(spi.o.payload),
                     rxq.w_en.eq(spi.o.valid & accepting)]
        wiring.connect(m, rxq.r_stream, link.rx)

        # "the sender has stopped": CS went high after the last byte the link was given
        ended = Signal(init=1)
        with m.If(spi.deselected):
            m.d.sync += ended.eq(1)
        with m.Elif(rxq.w_en):
            m.d.sync += ended.eq(0)
        m.d.comb += link.ended.eq(ended)
        return m


Transfer = Callable[[bytes], Awaitable[bytes]]


async def host_exchange(transfer: Transfer, frame: bytes, max_length: int,
                        chunk: int = 8, max_polls: int = 10_000) -> Frame:
    """The host's side of the rules: send `frame`, poll until its answer frame is read.

    `transfer(data)` runs one transaction (CS low, `data` clocked out, CS high) and returns the
    MISO bytes, a simulator's or a real SPI master's. Raises FrameError: "timeout" when no answer
    came in `max_polls` polls of `chunk` bytes, "bad_crc"/"bad_length" for a damaged answer.
    """
    await transfer(frame)
    parser = FrameParser(max_length)
    for _ in range(max_polls):
        for found in parser.feed(await transfer(bytes([POLL]) * chunk)):
            if isinstance(found, FrameError):
                raise found
            return found
    raise FrameError("timeout", f"no answer after {max_polls * chunk} polled bytes")
