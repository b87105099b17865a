"""edge_sdk.converters.fpga: lowered IR -> Verilog for iCE40-class FPGAs (Amaranth blocks from
edge_sdk.hw), its simulation under cocotb/Icarus, synthesis reports, and iCE40 bitstreams.

Public API:
    generate(graph, pe=None, simd=None) -> (files, schedule)
    simulate(design, graph, x) -> (scores, cycles_per_inference, initiation_interval)
    simulate_amaranth(graph, x, pe=None, simd=None) -> same, without Verilog (fast path)
    synth_report(files, device) -> dict
    build_bitstream(files, board="icebreaker") -> Path
"""

from .board import build_bitstream
from .generate import MANIFEST, TOP, VERILOG, generate
from .schedule import Schedule
from .simulate import simulate, simulate_amaranth
from .synth import synth_report

__all__ = ["MANIFEST", "TOP", "VERILOG", "Schedule", "build_bitstream", "generate", "simulate",
           "simulate_amaranth", "synth_report"]
