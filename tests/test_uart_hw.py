"""FramedUart (hw/framed_uart.py) in Amaranth's simulator, bit by bit on rx/tx.

A toy network behind it (sums each frame's input beats) keeps the checks independent of the
real engines: the expected answers are computed here from the payload bytes. Frames are made by
edge_sdk.protocol's encoder, answers parsed by its decoder (both tested in test_protocol.py).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from edge_sdk import protocol as P
from edge_sdk.hw.framed_uart import FramedUart

DIV = 4
GAP = 400
IN_W, IN_BEATS, OUT_W, OUT_BEATS = 12, 3, 32, 2


class SumNet(wiring.Component):
    """Takes IN_BEATS beats, answers OUT_BEATS beats: sum, sum + 1, ..."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(IN_W)), "o": Out(stream.Signature(OUT_W))})

    def elaborate(self, platform):
        m = Module()
        total = Signal(32)
        n_in = Signal(range(IN_BEATS + 1))
        n_out = Signal(range(OUT_BEATS + 1))
        m.d.comb += [self.i.ready.eq(n_in < IN_BEATS), self.o.valid.eq(n_in == IN_BEATS),
                     self.o.payload.eq(total + n_out)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [total.eq(total + self.i.payload), n_in.eq(n_in + 1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += n_out.eq(n_out + 1)
            with m.If(n_out == OUT_BEATS - 1):
                m.d.sync += [n_out.eq(0), n_in.eq(0), total.eq(0)]
        return m


class Dut(wiring.Component):
    def __init__(self):
        self.link = FramedUart(IN_W, IN_BEATS, OUT_W, OUT_BEATS, DIV, GAP)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.net = net = SumNet()
        wiring.connect(m, link.o, net.i)
        wiring.connect(m, net.o, link.i)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]
        return m


def expected_sum(payload: bytes) -> list[int]:
    beats = [int.from_bytes(payload[k:k + 2], "little") & 0xFFF for k in range(0, 6, 2)]
    return [(sum(beats) + k) & 0xFFFFFFFF for k in range(OUT_BEATS)]


def infer(seq: int, payload: bytes) -> bytes:
    return P.encode(P.Type.INFER, seq, payload)


def run(script: list[tuple[bytes, bool]], cycles_after: int = 3 * GAP) -> list[P.Frame]:
    """Send each (bytes, wait_for_answer); return every frame seen on tx."""
    dut = Dut()
    received = bytearray()
    done: list[bool] = []

    async def host(ctx):
        await ctx.tick().repeat(10)
        for data, wait in script:
            before = len(list(P.FrameParser().feed(bytes(received))))
            for byte in data:
                for bit in [0, *[(byte >> k) & 1 for k in range(8)], 1]:
                    ctx.set(dut.rx, bit)
                    await ctx.tick().repeat(DIV)
            if wait:
                for _ in range(200):
                    await ctx.tick().repeat(10 * GAP // 100)
                    if len(list(P.FrameParser().feed(bytes(received)))) > before:
                        break
            else:
                await ctx.tick().repeat(3 * GAP)
        await ctx.tick().repeat(cycles_after)
        done.append(True)

    async def listen(ctx):
        while not done:
            await ctx.tick()
            if ctx.get(dut.tx):
                continue
            await ctx.tick().repeat(DIV // 2)  # middle of the start bit
            byte = 0
            for k in range(8):
                await ctx.tick().repeat(DIV)
                byte |= ctx.get(dut.tx) << k
            await ctx.tick().repeat(DIV)
            received.append(byte)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(listen)
    sim.run()
    return list(P.FrameParser().feed(bytes(received)))


def test_info_infer_and_every_error_status():
    a, b = bytes(range(1, 7)), bytes([0xFF, 0x0F, 0x00, 0x08, 0x34, 0x12])
    corrupted = bytearray(infer(3, a))
    corrupted[11] ^= 0x10
    script = [
        (P.encode(P.Type.INFO, 1), True),
        (infer(2, a), True),
        (bytes(corrupted), True),
        (infer(4, b), True),
        (infer(5, a[:5]), True),
        (P.encode(9, 6), True),
        (infer(7, a)[:12], False),  # stalls mid-payload: dropped without an answer
        (infer(8, b), True),
    ]
    frames = run(script)
    assert all(isinstance(f, P.Frame) for f in frames), frames
    got = [(f.type, f.seq, f.status) for f in frames]
    assert got == [(0x81, 1, 0), (0x82, 2, 0), (0x82, 3, P.Status.BAD_CRC), (0x82, 4, 0),
                   (0x82, 5, P.Status.BAD_LENGTH), (0x89, 6, P.Status.BAD_TYPE), (0x82, 8, 0)]
    info = P.Info.unpack(frames[0].payload)
    assert info == P.Info(device=P.Device.FPGA, in_item=2, signed=False, in_bytes=6,
                          out_bytes=8)
    for frame, payload in ((frames[1], a), (frames[3], b), (frames[6], b)):
        words = [int.from_bytes(frame.payload[k:k + 4], "little") for k in (0, 4)]
        assert words == expected_sum(payload)
    assert all(f.payload == b"" for f in frames[2:3] + frames[4:6])


def test_a_frame_sent_during_an_answer_is_reported_busy():
    a = bytes(range(6))
    frames = run([(infer(1, a) + b"\x00" * 10 + infer(2, a), True)])
    got = [(f.type, f.seq, f.status) for f in frames]
    assert got[0] == (0x82, 1, 0)
    assert (0x80, 0, P.Status.BUSY) in got[1:], got
