"""FramedSpi (hw/spi.py) in Amaranth's simulator, bit by bit on SCK/MOSI/MISO/CS.

A mode-0 SPI master model in the testbench clocks real frames (edge_sdk.protocol's encoder)
into the framing block around a generated network (the 16-16-4 MLP of the UART test, as the
FPGA backend builds it), polls for the answers as the module's transaction rules say, and the
outputs decoded from them must equal the golden model bit for bit. Damaged frames get their
statuses and leave the network in step. The exported Verilog (SpiTop: FramedSpi + the generated
edge_net) is run the same way under cocotb + Icarus. A Hypothesis property checks the SPI peripheral alone:
every complete byte arrives once, in order, whatever the clock rate, splits and aborted bytes.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import zoo
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

import edge_sdk
from edge_sdk import golden
from edge_sdk import protocol as P
from edge_sdk.converters.fpga.board import SpiTop, link_params
from edge_sdk.converters.fpga.generate import VERILOG, build, generate, manifest
from edge_sdk.converters.fpga.stream_io import beats_per_inference, decode_outputs, encode_inputs
from edge_sdk.hw.framing import framed_info
from edge_sdk.hw.spi import FILL, FramedSpi, SpiPeripheral, host_exchange
from edge_sdk.hw.toolchain import to_verilog

HALF = 4  # system clocks per SCK phase: the fastest SCK the rules allow (clk / 8)


class SpiMaster:
    """A bit-level mode-0 SPI master in an Amaranth testbench (MSB first, CS active low)."""

    def __init__(self, ctx, pins, half: int = HALF):
        self.ctx, self.pins, self.half = ctx, pins, half

    async def transfer(self, data: bytes, abort_bits: int = 0) -> bytes:
        """One transaction; `abort_bits` > 0 clocks that many bits of one more byte, then CS up."""
        ctx, pins, half = self.ctx, self.pins, self.half
        ctx.set(pins.cs_n, 0)
        await ctx.tick().repeat(half)
        got = bytearray()
        for n, byte in enumerate([*data, 0x5A] if abort_bits else data):
            value = 0
            for k in range(7, -1, -1):
                if n == len(data) and 7 - k == abort_bits:
                    break
                ctx.set(pins.mosi, byte >> k & 1)
                await ctx.tick().repeat(half)
                ctx.set(pins.sck, 1)  # both sides sample on the rising edge
                value = value << 1 | ctx.get(pins.miso)
                await ctx.tick().repeat(half)
                ctx.set(pins.sck, 0)
            got.append(value)
        await ctx.tick().repeat(half)
        ctx.set(pins.cs_n, 1)
        await ctx.tick().repeat(half)
        return bytes(got[:len(data)])


# --- FramedSpi around a generated network ------------------------------------------------


class Dut(wiring.Component):
    def __init__(self, net, p: dict):
        self.net = net
        self.link = FramedSpi(**p)
        super().__init__({"sck": In(1), "cs_n": In(1, init=1), "mosi": In(1), "miso": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.net = net = self.net
        wiring.connect(m, link.o, net.i)
        wiring.connect(m, net.o, link.i)
        m.d.comb += [link.sck.eq(self.sck), link.cs_n.eq(self.cs_n), link.mosi.eq(self.mosi),
                     self.miso.eq(link.miso)]
        return m


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    path = tmp_path_factory.mktemp("spi") / "m.onnx"
    onnx.save(zoo.mlp(0, sizes=(16, 16, 4)), path)
    graph = edge_sdk.load(path).ir
    plan, net, sched = build(graph, pe=4, simd=16)
    info = manifest(plan, sched)
    p = {"in_width": len(net.i.payload), "in_beats": beats_per_inference(info["input"]),
         "out_width": len(net.o.payload), "out_beats": beats_per_inference(info["output"])}
    return {"graph": graph, "net": net, "info": info, "p": p}


def payload_of(mlp, q: np.ndarray) -> bytes:
    bpb = (mlp["p"]["in_width"] + 7) // 8
    beats = encode_inputs(mlp["info"]["input"], q[None])
    return b"".join(int(b).to_bytes(bpb, "little") for b in beats)


def scores_of(mlp, payload: bytes) -> np.ndarray:
    bpb = (mlp["p"]["out_width"] + 7) // 8
    words = [int.from_bytes(payload[k:k + bpb], "little") for k in range(0, len(payload), bpb)]
    return decode_outputs(mlp["info"]["output"], words, 1)[0]


def run_script(dut, script) -> list:
    """`script(master)` is an async function run as the testbench; returns what it returns."""
    result: list = []

    async def bench(ctx):
        await ctx.tick().repeat(8)
        result.append(await script(SpiMaster(ctx, dut)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result[0]


def test_frames_answered_bit_exact_and_every_error_status(mlp):
    graph = mlp["graph"]
    rng = np.random.default_rng(3)
    x = rng.integers(0, 16, size=(3, 16)).astype(np.float32)
    q = golden.quantise_input(graph.layers[0], x)
    want = golden.run_all(graph, x)[graph.layers[-1].inputs[0]]
    payloads = [payload_of(mlp, row) for row in q]
    in_bytes = len(payloads[0])
    dut = Dut(mlp["net"], mlp["p"])
    limit = 4 * in_bytes + 64

    async def script(spi: SpiMaster):
        async def ask(frame: bytes) -> P.Frame:
            return await host_exchange(spi.transfer, frame, limit, max_polls=400)

        seen = {"info": await ask(P.encode(P.Type.INFO, 1))}
        seen["fill"] = await spi.transfer(bytes(4))  # nothing pending: filler only
        seen["ok0"] = await ask(P.encode(P.Type.INFER, 2, payloads[0]))
        bad = bytearray(P.encode(P.Type.INFER, 3, payloads[1]))
        bad[P.HEADER_BYTES + 2] ^= 0x40  # one payload bit
        seen["bad_crc"] = await ask(bytes(bad))
        seen["bad_len"] = await ask(P.encode(P.Type.INFER, 4, payloads[1][:-1]))
        await spi.transfer(P.encode(9, 5))  # the error answer comes in one long poll too
        seen["bad_type"] = list(P.FrameParser().feed(await spi.transfer(bytes(48))))
        # CS goes up in the middle of a frame (and of a byte): dropped without an answer
        await spi.transfer(P.encode(P.Type.INFER, 6, payloads[2])[:P.HEADER_BYTES + 3], 5)
        seen["after_drop"] = await spi.transfer(bytes(16))
        # a second request before the first answer was read is ignored (rule 4)
        await spi.transfer(P.encode(P.Type.INFER, 10, payloads[0]))
        miso = await spi.transfer(P.encode(P.Type.INFER, 11, payloads[1]))
        miso += await spi.transfer(bytes(2 * limit))
        seen["first"] = list(P.FrameParser().feed(miso))  # answer 10 only, then FILL
        seen["then"] = await spi.transfer(bytes(2 * limit))
        seen["ok1"] = await ask(P.encode(P.Type.INFER, 7, payloads[1]))
        seen["ok2"] = await ask(P.encode(P.Type.INFER, 8, payloads[2]))
        return seen

    seen = run_script(dut, script)
    assert seen["fill"] == bytes([FILL]) * 4
    assert seen["after_drop"] == bytes([FILL]) * 16
    info = seen["info"]
    assert (info.type, info.seq, info.status) == (0x81, 1, P.Status.OK)
    assert P.Info.unpack(info.payload) == dut.link.info
    assert P.Info.unpack(info.payload).in_bytes == in_bytes
    assert seen["then"] == bytes([FILL]) * (2 * limit)
    assert len(seen["first"]) == 1, seen["first"]
    seen["first"] = seen["first"][0]
    assert len(seen["bad_type"]) == 1, seen["bad_type"]
    seen["bad_type"] = seen["bad_type"][0]
    for key, seq, k in (("ok0", 2, 0), ("first", 10, 0), ("ok1", 7, 1), ("ok2", 8, 2)):
        frame = seen[key]
        assert (frame.type, frame.seq, frame.status) == (0x82, seq, P.Status.OK)
        assert np.array_equal(scores_of(mlp, frame.payload), want[k]), key
    for key, head in (("bad_crc", (0x82, 3, P.Status.BAD_CRC)),
                      ("bad_len", (0x82, 4, P.Status.BAD_LENGTH)),
                      ("bad_type", (0x89, 5, P.Status.BAD_TYPE))):
        frame = seen[key]
        assert (frame.type, frame.seq, frame.status, frame.payload) == (*head, b""), key


def test_answer_read_in_odd_chunks_and_partial_bytes(mlp):
    """Polls of one byte, aborted mid-byte reads: the answer still arrives whole and exact."""
    graph = mlp["graph"]
    x = np.arange(16, dtype=np.float32)[None] % 16
    q = golden.quantise_input(graph.layers[0], x)
    want = golden.run_all(graph, x)[graph.layers[-1].inputs[0]]
    dut = Dut(mlp["net"], mlp["p"])

    async def script(spi: SpiMaster):
        await spi.transfer(P.encode(P.Type.INFER, 9, payload_of(mlp, q[0])))
        stream = bytearray()
        for n in range(3000):
            stream += await spi.transfer(b"\x00", abort_bits=n % 3 * 3)
            if len(stream) > 8 and stream[-1] == FILL and P.SYNC in stream:
                break
        return bytes(stream)

    stream = run_script(dut, script)
    start = stream.index(P.SYNC)
    assert set(stream[:start]) == {FILL}
    frames = list(P.FrameParser().feed(stream))
    assert len(frames) == 1 and isinstance(frames[0], P.Frame), frames
    assert (frames[0].seq, frames[0].status) == (9, P.Status.OK)
    assert np.array_equal(scores_of(mlp, frames[0].payload), want[0])
    end = start + P.OVERHEAD + len(frames[0].payload)
    assert set(stream[end:]) == {FILL}


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.integers(HALF, HALF + 3), st.integers(1, 12), st.integers(0, 2**32 - 1),
       st.sampled_from(["ok", "flip", "short", "cut"]))
def test_random_requests_clock_rates_and_polls(mlp, half, chunk, seed, damage):
    """Any SCK rate the rules allow, any poll size: exact scores, or the damage's status."""
    graph = mlp["graph"]
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 16, size=(2, 16)).astype(np.float32)
    q = golden.quantise_input(graph.layers[0], x)
    want = golden.run_all(graph, x)[graph.layers[-1].inputs[0]]
    first = bytearray(P.encode(P.Type.INFER, 1, payload_of(mlp, q[0])))
    if damage == "flip":
        first[int(rng.integers(2, len(first)))] ^= 1 << int(rng.integers(8))
    elif damage == "short":
        first = bytearray(P.encode(P.Type.INFER, 1, payload_of(mlp, q[0])[:-1]))
    elif damage == "cut":
        first = first[:int(rng.integers(3, len(first)))]
    dut = Dut(mlp["net"], mlp["p"])

    async def script(spi: SpiMaster):
        async def ask(frame: bytes) -> P.Frame:
            return await host_exchange(spi.transfer, frame, 256, chunk=chunk, max_polls=3000)

        got = [None if damage == "cut" else await ask(bytes(first))]
        if damage == "cut":
            await spi.transfer(bytes(first))
        return [*got, await ask(P.encode(P.Type.INFER, 2, payload_of(mlp, q[1])))]

    async def bench(ctx):
        await ctx.tick().repeat(8)
        result.append(await script(SpiMaster(ctx, dut, half)))

    result: list = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    one, two = result[0]
    if damage == "ok":
        assert (one.seq, one.status) == (1, P.Status.OK)
        assert np.array_equal(scores_of(mlp, one.payload), want[0])
    elif damage == "short":
        assert (one.seq, one.status, one.payload) == (1, P.Status.BAD_LENGTH, b"")
    elif damage == "flip":  # the bit may be in the type, seq or length field too
        assert one.status in (P.Status.BAD_CRC, P.Status.BAD_LENGTH, P.Status.BAD_TYPE)
        assert one.payload == b""
    assert (two.seq, two.status) == (2, P.Status.OK)
    assert np.array_equal(scores_of(mlp, two.payload), want[1])


# --- the exported Verilog under cocotb + Icarus -------------------------------------------


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
def test_exported_verilog_under_cocotb(mlp, tmp_path):
    """SpiTop as Verilog (what a board build would hold) with a cocotb SPI master."""
    from cocotb_tools.runner import get_runner

    graph = mlp["graph"]
    files, _ = generate(graph, pe=4, simd=16)
    assert json.loads(files["edge_net.json"])["input"] == mlp["info"]["input"]
    src = tmp_path / "edge_spi.v"
    src.write_text(to_verilog(SpiTop(**link_params(files)), "edge_spi") + "\n" + files[VERILOG])
    rng = np.random.default_rng(5)
    x = rng.integers(0, 16, size=(2, 16)).astype(np.float32)
    q = golden.quantise_input(graph.layers[0], x)
    want = golden.run_all(graph, x)[graph.layers[-1].inputs[0]]
    bad = bytearray(P.encode(P.Type.INFER, 3, payload_of(mlp, q[1])))
    bad[-1] ^= 0x80  # the CRC's last bit
    steps = [(P.encode(P.Type.INFO, 1), True), (P.encode(P.Type.INFER, 2, payload_of(mlp, q[0])), True),
             (bytes(bad), True), (bytes(6), False),
             (P.encode(P.Type.INFER, 4, payload_of(mlp, q[1])), True)]
    job, result = tmp_path / "job.json", tmp_path / "result.json"
    job.write_text(json.dumps({"half": HALF, "max_length": 256,
                               "steps": [{"send": d.hex(), "poll": p} for d, p in steps]}))
    runner = get_runner("icarus")
    runner.build(sources=[src], hdl_toplevel="edge_spi", build_dir=tmp_path / "build",
                 timescale=("1ns", "1ps"), log_file=tmp_path / "build.log", always=True)
    runner.test(test_module="edge_sdk.converters.fpga.cocotb_spi_bench",
                hdl_toplevel="edge_spi", build_dir=tmp_path / "build", test_dir=tmp_path,
                timescale=("1ns", "1ps"), log_file=tmp_path / "sim.log",
                extra_env={"EDGE_SPI_JOB": str(job), "EDGE_SPI_RESULT": str(result)})
    assert result.is_file(), (tmp_path / "sim.log").read_text()[-2000:]
    answers = [bytes.fromhex(a) for a in json.loads(result.read_text())["answers"]]
    info, ok0, bad_crc, idle, ok1 = answers
    info = P.decode(info)
    assert (info.type, info.seq, info.status) == (0x81, 1, P.Status.OK)
    assert P.Info.unpack(info.payload) == framed_info(**mlp["p"])
    assert (P.decode(bad_crc).seq, P.decode(bad_crc).status) == (3, P.Status.BAD_CRC)
    assert idle == bytes([FILL]) * 6
    for frame, k, seq in ((P.decode(ok0), 0, 2), (P.decode(ok1), 1, 4)):
        assert (frame.type, frame.seq, frame.status) == (0x82, seq, P.Status.OK)
        assert np.array_equal(scores_of(mlp, frame.payload), want[k])


# --- the SPI peripheral alone -------------------------------------------------------------


class Loop(wiring.Component):
    """SpiPeripheral whose received bytes are queued and sent back (an echo behind a FIFO)."""

    def __init__(self):
        self.spi = SpiPeripheral()
        super().__init__({"sck": In(1), "cs_n": In(1, init=1), "mosi": In(1), "miso": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.spi = spi = self.spi
        m.submodules.q = q = SyncFIFOBuffered(width=8, depth=256)
        wiring.connect(m, spi.o, q.w_stream)
        wiring.connect(m, q.r_stream, spi.i)
        m.d.comb += [spi.sck.eq(self.sck), spi.cs_n.eq(self.cs_n), spi.mosi.eq(self.mosi),
                     self.miso.eq(spi.miso)]
        return m


not_fill = st.lists(st.integers(0, 255).filter(lambda b: b != FILL), max_size=6).map(bytes)
transactions = st.lists(st.tuples(not_fill, st.integers(0, 7)), min_size=1, max_size=6)


@settings(max_examples=12, deadline=None)
@given(transactions, st.integers(HALF, HALF + 3))
def test_peripheral_echo_every_complete_byte_once_in_order(trans, half):
    """Bytes FIFO-echoed back: MISO gives each complete MOSI byte once, in order, FILL between.

    Transactions of random length end with a random number of bits of an aborted byte, which
    must neither arrive nor consume the answer byte it was clocking out.
    """
    dut = Loop()
    sent = b"".join(data for data, _ in trans)
    result: list[bytes] = []

    async def bench(ctx):
        spi = SpiMaster(ctx, dut, half)
        await ctx.tick().repeat(8)
        got = bytearray()
        for data, abort in trans:
            got += await spi.transfer(data, abort)
        got += await spi.transfer(bytes(len(sent) + 1))  # drains what is still queued
        result.append(bytes(got))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    echoed = bytes(b for b in result[0] if b != FILL)
    assert echoed[:len(sent)] == sent
    assert set(echoed[len(sent):]) <= {0}  # the drain's own zeros, echoed after
