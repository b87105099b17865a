"""UART bridge: bytes in on rx become beats, beats come back as bytes on tx (loopback)."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from edge_sdk.hw.uart import UartBridge

DIV = 6


class Loopback(wiring.Component):
    def __init__(self, width: int):
        self.bridge = UartBridge(width, width, DIV)
        super().__init__({"rx": wiring.In(1, init=1), "tx": wiring.Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = b = self.bridge
        wiring.connect(m, b.beats_out, b.beats_in)
        m.d.comb += [b.rx.eq(self.rx), self.tx.eq(b.tx)]
        return m


def test_uart_bridge_loopback():
    width = 12
    beats = [0x0ABC, 0x0123, 0x0FFF, 0x0000]
    data = b"".join(v.to_bytes(2, "little") for v in beats)
    dut = Loopback(width)
    received: list[int] = []

    async def send(ctx):
        await ctx.tick().repeat(5)
        for byte in data:
            for bit in [0, *[(byte >> k) & 1 for k in range(8)], 1]:
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(DIV)
            await ctx.tick().repeat(3)

    async def listen(ctx):
        while len(received) < len(data):
            await ctx.tick().until(dut.tx == 0)  # start bit
            await ctx.tick().repeat(DIV // 2)
            byte = 0
            for k in range(8):
                await ctx.tick().repeat(DIV)
                byte |= ctx.get(dut.tx) << k
            await ctx.tick().repeat(DIV)
            received.append(byte)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(send)
    sim.add_testbench(listen)
    sim.run_until(1e-8 * 20 * DIV * 11 * len(data))
    got = [int.from_bytes(bytes(received[k:k + 2]), "little") for k in range(0, len(received), 2)]
    assert got == beats
