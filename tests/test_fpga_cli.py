"""FPGA through the CLI: convert -> simulate (cocotb + Icarus) --check -> report (yosys, nextpnr)."""

import json
import shutil

import numpy as np
import onnx
import pytest
import zoo
from conftest import EXAMPLES, run_cli

import edge_sdk

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="iverilog not installed (scripts/setup.sh installs it)")


def test_example_mlp_simulates_bit_exactly(tmp_path):
    out = tmp_path / "fpga"
    model = EXAMPLES / "mlp_digits.onnx"
    assert run_cli("convert", model, "--target", "fpga", "-o", out).returncode == 0
    x = np.load(EXAMPLES / "digits_mlp_x.npy")[:16]
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stderr
    assert "cycles_per_inference" in proc.stdout and "measured" in proc.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), edge_sdk.load(model).run(x))


def test_report_runs_yosys_and_nextpnr(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(zoo.mlp(0, sizes=(16, 16, 4)), path)
    out = tmp_path / "fpga"
    assert run_cli("convert", path, "--target", "fpga", "-o", out, "--pe", "4",
                   "--simd", "16").returncode == 0
    proc = run_cli("report", out)
    assert proc.returncode == 0, proc.stderr
    for word in ("up5k", "hx8k", "LUT4", "Fmax", "Yosys"):
        assert word in proc.stdout, proc.stdout
    rep = json.loads((out / "report.json").read_text())
    assert rep["devices"]["up5k"]["lut4"] > 0 and rep["devices"]["hx8k"]["fmax_mhz"] > 0


def test_verilog_is_byte_identical_across_conversions(tmp_path):
    for name in ("a", "b"):
        assert run_cli("convert", EXAMPLES / "cnn_digits.onnx", "--target", "fpga", "-o",
                       tmp_path / name).returncode == 0
    for f in ("edge_net.v", "edge_net.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_flash_without_a_board_says_so(tmp_path):
    out = tmp_path / "fpga"
    assert run_cli("convert", EXAMPLES / "mlp_digits.onnx", "--target", "fpga", "-o",
                   out).returncode == 0
    proc = run_cli("flash", out)
    assert proc.returncode == 2
    assert "programmer" in proc.stderr or "no bitstream" in proc.stderr or \
        "attached" in proc.stderr, proc.stderr


def test_model_too_big_for_the_device_is_refused(tmp_path):
    path = tmp_path / "big.onnx"
    onnx.save(zoo.mlp(0, sizes=(64, 512, 512, 10)), path)  # ~300 kbit of weights
    out = tmp_path / "o"
    proc = run_cli("convert", path, "--target", "fpga", "-o", out)
    assert proc.returncode == 2, proc.stderr
    assert "kbit" in proc.stderr and "UP5K" in proc.stderr and not out.exists()


def test_sim_board_simulates_a_model_too_big_for_the_device_and_builds_nothing(tmp_path):
    path = tmp_path / "big.onnx"
    onnx.save(zoo.mlp(0, sizes=(64, 512, 512, 10)), path)
    out = tmp_path / "o"
    proc = run_cli("convert", path, "--target", "fpga", "--board", "sim", "-o", out)
    assert proc.returncode == 0, proc.stderr
    x = np.random.default_rng(0).integers(-255, 256, size=(2, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), edge_sdk.load(path).run(x))
    proc = run_cli("build", out)
    assert proc.returncode == 2 and "simulation only" in proc.stderr, proc.stderr
