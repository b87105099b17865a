"""The host protocol (edge_sdk.protocol) in hardware, independent of the wire that carries it.

`FrameLink` takes the request bytes as a stream (`rx`) and gives the answer bytes as a stream
(`tx`); a transport (framed_uart.FramedUart, spi.FramedSpi) turns its wire into those bytes.
It parses request frames (sync, header, payload, CRC-32), streams INFER payload bytes into the
network as input beats (`o`, ceil(width / 8) bytes per beat, LSB first) while they arrive, and
answers INFO with constant facts and INFER with the network's output beats (`i`) as payload.
No frame buffer: the CRC verdict is known only after the payload went into the network, so a
bad-CRC INFER still runs and its output beats are discarded, and a frame whose sender stops
mid-payload is completed with zero bytes and its outputs discarded; either way the network
stays in step with the frames.

"The sender has stopped" (what ends a damaged frame and what error answers wait for, the device
rules of protocol.py) is the transport's to define: a quiet-line timer of `gap_cycles` (a UART,
GAP_MS at the board clock) and/or the `ended` input (SPI: chip select went high), which counts
only once the bytes delivered before it have been read. Bytes that arrive while the link answers
are dropped; with `report_lost` they are reported by one BUSY answer after the answer (a UART,
where a second talker is possible), without it silently (SPI, where the host clocks bytes to
read the answer). `tx_last` marks the last byte of each answer, so a transport can buffer whole
answers.

`crc32_byte` is the byte-wide CRC-32 update (unrolled bitwise, reflected 0xEDB88320): the
running register starts at all ones and is sent complemented, as zlib defines the CRC.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from edge_sdk.protocol import INFO_BYTES, OVERHEAD, RESPONSE, SYNC, Device, Info, Status, Type

POLY = 0xEDB88320


def _crc_terms() -> list[frozenset[int]]:
    """Which inputs each bit of the next CRC register XORs: 0-31 the register, 32-39 the byte.

    Running the bitwise algorithm on sets (XOR = symmetric difference) once, in Python, gives a
    flat XOR per bit instead of an eight-level nested expression (whose size doubles per level).
    """
    c = [frozenset([k]) for k in range(32)]
    for k in range(8):
        c[k] = c[k] ^ {32 + k}
    for _ in range(8):
        low = c[0]
        c = [*c[1:], frozenset()]
        c = [bit ^ low if POLY >> k & 1 else bit for k, bit in enumerate(c)]
    return c


_TERMS = _crc_terms()


def crc32_byte(crc: Value, byte: Value) -> Value:
    """The CRC-32 register after one more byte (combinational XOR network)."""
    inputs = Cat(crc, byte)
    bits = []
    for terms in _TERMS:
        x = C(0, 1)
        for k in sorted(terms):
            x = x ^ inputs[k]
        bits.append(x)
    return Cat(*bits)


def framed_info(in_width: int, in_beats: int, out_width: int, out_beats: int) -> Info:
    """The INFO answer of a FrameLink with these streams (the host checks it, uart_io.py)."""
    in_bpb, out_bpb = (in_width + 7) // 8, (out_width + 7) // 8
    return Info(device=Device.FPGA, in_item=in_bpb, signed=False, in_bytes=in_bpb * in_beats,
                out_bytes=out_bpb * out_beats)


class FrameLink(wiring.Component):
    """Request bytes `rx` -> network beats `o`; network beats `i` -> answer bytes `tx`.

    in_width/in_beats: the network's input beat width and beats per inference; likewise
    out_width/out_beats. `gap_cycles`: the quiet time that ends a damaged frame, or None when
    only `ended` says so. `report_lost`: answer BUSY after bytes dropped while answering.
    """

    def __init__(self, in_width: int, in_beats: int, out_width: int, out_beats: int,
                 gap_cycles: int | None, report_lost: bool = True):
        self.in_width, self.in_beats = in_width, in_beats
        self.out_width, self.out_beats = out_width, out_beats
        self.gap_cycles, self.report_lost = gap_cycles, report_lost
        self.in_bpb = (in_width + 7) // 8
        self.out_bpb = (out_width + 7) // 8
        self.in_bytes = self.in_bpb * in_beats
        self.out_bytes = self.out_bpb * out_beats
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "ended": In(1),
            "tx_last": Out(1),
            "o": Out(stream.Signature(in_width)),
            "i": In(stream.Signature(out_width)),
        })

    @property
    def info(self) -> Info:
        """What this link answers to INFO."""
        return framed_info(self.in_width, self.in_beats, self.out_width, self.out_beats)

    @property
    def max_answer(self) -> int:
        """Bytes of the longest answer frame (a transport's answer buffer)."""
        return OVERHEAD + max(INFO_BYTES, self.out_bytes)

    def elaborate(self, platform):
        m = Module()
        byte, have, pop = self.rx.payload, self.rx.valid, self.rx.ready

        crc = Signal(32)
        typ, seq, status = Signal(8), Signal(8), Signal(8)
        length = Signal(32)
        resp_len = Signal(32)
        idx = Signal(range(max(INFO_BYTES, 9) + 1))
        bad = Signal()
        lost = Signal()

        # input beats: payload bytes (or padding zeros) shifted in, LSB first
        acc = Signal(self.in_bpb * 8)
        got = Signal(range(self.in_bpb + 1))
        full = got == self.in_bpb
        push, push_byte = Signal(), Signal(8)
        m.d.comb += [self.o.payload.eq(acc[:self.in_width]), self.o.valid.eq(full)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += got.eq(0)
        with m.Elif(push):
            m.d.sync += [acc.eq(Cat(acc[8:], push_byte)), got.eq(got + 1)]
        count = Signal(range(self.in_bytes + 1))

        # output beats of frames nobody will read (bad CRC, stalled frame) go nowhere
        discard = Signal(range(2 * self.out_beats + 1))
        discard_add, discard_take = Signal(), Signal()
        m.d.comb += discard_take.eq((discard != 0) & self.i.valid)
        m.d.sync += discard.eq(discard + Mux(discard_add, self.out_beats, 0) - discard_take)

        # output beats being sent
        osr = Signal(self.out_bpb * 8)
        oleft = Signal(range(self.out_bpb + 1))
        beats = Signal(range(self.out_beats + 1))
        take_out = Signal()
        m.d.comb += self.i.ready.eq((discard != 0) | take_out)

        # the sender has stopped: a quiet-line timer (counting cycles with nothing received
        # while a state waits for bytes) or the transport saying so (`ended`), once the bytes
        # it delivered before are consumed
        waiting = Signal()
        quiet = Signal()
        m.d.comb += quiet.eq(self.ended & ~have)
        if self.gap_cycles is not None:
            gap = Signal(range(self.gap_cycles + 1))
            with m.If(~waiting | have):
                m.d.sync += gap.eq(0)
            with m.Elif(gap != self.gap_cycles):
                m.d.sync += gap.eq(gap + 1)
            with m.If(gap == self.gap_cycles):
                m.d.comb += quiet.eq(1)

        # the byte being sent and the CRC of what was sent so far
        send, tx_byte, tx_crc = Signal(), Signal(8), Signal()
        sent = send & self.tx.ready
        m.d.comb += [self.tx.valid.eq(send), self.tx.payload.eq(tx_byte)]
        with m.If(sent & tx_crc):
            m.d.sync += crc.eq(crc32_byte(crc, tx_byte))
        header = Cat(C(SYNC[0], 8), C(SYNC[1], 8), typ | RESPONSE, seq, status, resp_len)
        info = C(int.from_bytes(self.info.pack(), "little"), INFO_BYTES * 8)
        checksum = ~crc

        with m.FSM(name="link") as fsm:
            with m.State("HUNT0"):
                m.d.comb += pop.eq(1)
                with m.If(have & (byte == SYNC[0])):
                    m.next = "HUNT1"
            with m.State("HUNT1"):
                m.d.comb += pop.eq(1)
                with m.If(have):
                    with m.If(byte == SYNC[1]):
                        m.d.sync += [crc.eq(0xFFFF_FFFF), idx.eq(0), bad.eq(0)]
                        m.next = "HEADER"
                    with m.Elif(byte != SYNC[0]):
                        m.next = "HUNT0"
            with m.State("HEADER"):
                m.d.comb += [waiting.eq(1), pop.eq(1)]
                new_length = Cat(length[8:], byte)
                with m.If(have):
                    m.d.sync += [crc.eq(crc32_byte(crc, byte)), idx.eq(idx + 1)]
                    with m.Switch(idx):
                        with m.Case(0):
                            m.d.sync += typ.eq(byte)
                        with m.Case(1):
                            m.d.sync += seq.eq(byte)
                        with m.Case(3, 4, 5):
                            m.d.sync += length.eq(new_length)
                        with m.Case(6):
                            m.d.sync += [length.eq(new_length), idx.eq(0), count.eq(0)]
                            with m.If(typ == Type.INFO):
                                with m.If(new_length == 0):
                                    m.next = "CHECK"
                                with m.Else():
                                    m.d.sync += status.eq(Status.BAD_LENGTH)
                                    m.next = "QUIET"
                            with m.Elif(typ == Type.INFER):
                                with m.If(new_length == self.in_bytes):
                                    m.next = "PAYLOAD"
                                with m.Else():
                                    m.d.sync += status.eq(Status.BAD_LENGTH)
                                    m.next = "QUIET"
                            with m.Else():
                                m.d.sync += status.eq(Status.BAD_TYPE)
                                m.next = "QUIET"
                with m.Elif(quiet):
                    m.next = "HUNT0"
            with m.State("PAYLOAD"):
                m.d.comb += [waiting.eq(~full), pop.eq(~full), push.eq(have & ~full),
                             push_byte.eq(byte)]
                with m.If(have & ~full):
                    m.d.sync += [crc.eq(crc32_byte(crc, byte)), count.eq(count + 1)]
                    with m.If(count == self.in_bytes - 1):
                        m.next = "CHECK"
                with m.Elif(quiet):
                    m.next = "PAD"
            with m.State("PAD"):  # the frame stalled: complete the network's input with zeros
                m.d.comb += [push.eq(~full), push_byte.eq(0)]
                with m.If(~full):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.in_bytes - 1):
                        m.d.comb += discard_add.eq(1)
                        m.next = "HUNT0"
            with m.State("CHECK"):
                m.d.comb += [waiting.eq(1), pop.eq(1)]
                mismatch = byte != checksum.word_select(idx[:2], 8)
                with m.If(have):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.d.sync += idx.eq(0)
                        with m.If(bad | mismatch):
                            m.d.sync += [status.eq(Status.BAD_CRC), resp_len.eq(0)]
                            m.d.comb += discard_add.eq(typ == Type.INFER)
                            m.next = "QUIET"
                        with m.Else():
                            m.d.sync += [status.eq(Status.OK), crc.eq(0xFFFF_FFFF),
                                         resp_len.eq(Mux(typ == Type.INFO, INFO_BYTES,
                                                              self.out_bytes))]
                            m.next = "SEND_HEADER"
                    with m.Elif(mismatch):
                        m.d.sync += bad.eq(1)
                with m.Elif(quiet):
                    m.d.comb += discard_add.eq(typ == Type.INFER)
                    m.next = "HUNT0"
            with m.State("QUIET"):  # error answers wait until the sender has stopped
                m.d.comb += [waiting.eq(1), pop.eq(1)]
                with m.If(quiet):
                    m.d.sync += [resp_len.eq(0), crc.eq(0xFFFF_FFFF), idx.eq(0), lost.eq(0)]
                    m.next = "SEND_HEADER"
            with m.State("SEND_HEADER"):
                m.d.comb += [send.eq(1), tx_byte.eq(header.word_select(idx, 8)),
                             tx_crc.eq(idx >= 2)]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 8):
                        m.d.sync += [idx.eq(0), beats.eq(0), oleft.eq(0)]
                        with m.If(resp_len == 0):
                            m.next = "SEND_CRC"
                        with m.Elif(typ == Type.INFO):
                            m.next = "SEND_INFO"
                        with m.Else():
                            m.next = "SEND_OUT"
            with m.State("SEND_INFO"):
                m.d.comb += [send.eq(1), tx_byte.eq(info.word_select(idx, 8)), tx_crc.eq(1)]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == INFO_BYTES - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "SEND_CRC"
            with m.State("SEND_OUT"):
                with m.If(oleft == 0):
                    with m.If(beats == self.out_beats):
                        m.d.sync += idx.eq(0)
                        m.next = "SEND_CRC"
                    with m.Elif(discard == 0):
                        m.d.comb += take_out.eq(1)
                        with m.If(self.i.valid):
                            m.d.sync += [osr.eq(self.i.payload), oleft.eq(self.out_bpb),
                                         beats.eq(beats + 1)]
                with m.Else():
                    m.d.comb += [send.eq(1), tx_byte.eq(osr[:8]), tx_crc.eq(1)]
                    with m.If(sent):
                        m.d.sync += [osr.eq(osr >> 8), oleft.eq(oleft - 1)]
            with m.State("SEND_CRC"):
                m.d.comb += [send.eq(1), tx_byte.eq(checksum.word_select(idx[:2], 8)),
                             self.tx_last.eq(idx == 3)]
                with m.If(sent):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == 3):
                        m.d.sync += idx.eq(0)
                        with m.If(lost):
                            m.d.sync += [typ.eq(0), seq.eq(0), status.eq(Status.BUSY)]
                            m.next = "QUIET"
                        with m.Else():
                            m.next = "HUNT0"
        # bytes received while answering are dropped (and remembered -> one BUSY answer)
        answering = Signal()
        m.d.comb += answering.eq(fsm.ongoing("SEND_HEADER") | fsm.ongoing("SEND_INFO")
                                 | fsm.ongoing("SEND_OUT") | fsm.ongoing("SEND_CRC"))
        with m.If(answering):
            m.d.comb += pop.eq(1)
            if self.report_lost:
                with m.If(have):
                    m.d.sync += lost.eq(1)
        return m
