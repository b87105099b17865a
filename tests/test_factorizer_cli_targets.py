"""Factorizer models through the CLI on both targets: convert, simulate --check, report, refusals.

The backends' own tests (test_cortexm_factorizer_deployed, test_fpga_factorizer_deployed) hold
the generated C and Verilog to the fixed-point golden model; these hold the commands a user
types to `edge-sdk run --fixed-point` of the same model, and the build folder to the contract.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from test_factorizer_deploy import _relu_tail_model
from zoo.factorizer import factorizer_only

import edge_sdk.factorizer as fz

ATTRIBUTES = "examples/attributes/attributes_factorizer.onnx"


def decoder_only(path, F=2, M=6, B=2, L=8, **attrs) -> tuple[str, object]:
    cb = fz.random_sbc(F, M, B, L, seed=5)
    return factorizer_only(path, cb, **attrs), cb


def _queries(cb, n: int, seed: int) -> np.ndarray:
    return np.concatenate([fz.make_queries(cb, n, "clean", seed)[0],
                           fz.make_queries(cb, n, "moved0.05", seed + 1)[0]]).astype(np.float32)


def _run_fixed(model, x_path, tmp_path) -> dict:
    proc = run_cli("run", model, "--input", x_path, "--output", tmp_path / "ref.npz",
                   "--fixed-point")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "ref.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("target,extra", [("cortex-m", []), ("fpga", ["--factorizer-lanes",
                                                                       "1,2"])])
def test_decoder_only_published_simulates_as_run_fixed_point(tmp_path, target, extra):
    model, cb = decoder_only(tmp_path / "m.onnx", decoder="published", threshold=0.1,
                             sampling_width=2, max_iters=6)
    np.save(tmp_path / "x.npy", _queries(cb, 6, 3))
    out = tmp_path / "build"
    proc = run_cli("convert", model, "--target", target, "-o", out, *extra)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npz",
                   "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bit-exact" in proc.stdout
    ref = _run_fixed(model, tmp_path / "x.npy", tmp_path)
    with np.load(tmp_path / "y.npz") as got:
        assert sorted(got.files) == ["idx", "it"]
        for k in ("idx", "it"):
            np.testing.assert_array_equal(got[k], ref[k])
    assert len(set(ref["it"].tolist())) > 1  # some queries converge later than others
    proc = run_cli("report", out)
    assert proc.returncode == 0 and "published" in proc.stdout, proc.stderr


def test_attributes_network_and_head_on_cortex_m(tmp_path):
    x = np.load("examples/attributes/test_x.npy")[:8]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "cm"
    assert run_cli("convert", ATTRIBUTES, "--target", "cortex-m", "-o", out).returncode == 0
    proc = run_cli("simulate", out, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ref = _run_fixed(ATTRIBUTES, tmp_path / "x.npy", tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref["attributes"])
    rep = run_cli("report", out, "--json")
    assert rep.returncode == 0 and '"instructions_head"' in rep.stdout, rep.stderr


def test_refusals_are_one_line_exit_2_and_leave_nothing(tmp_path):
    model, _cb = decoder_only(tmp_path / "m.onnx")
    out = tmp_path / "lib"
    proc = run_cli("convert", model, "--target", "cortex-m", "--library", "-o", out)
    assert proc.returncode == 2 and not out.exists(), proc.stderr
    assert "library" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    relu = _relu_tail_model(str(tmp_path / "relu.onnx"))
    proc = run_cli("convert", relu, "--target", "cortex-m", "-o", tmp_path / "r")
    assert proc.returncode == 2 and "relu" in proc.stderr and not (tmp_path / "r").exists()
    proc = run_cli("convert", model, "--target", "fpga", "--factorizer-lanes", "0", "-o",
                   tmp_path / "f")
    assert proc.returncode == 2 and not (tmp_path / "f").exists()
    build = tmp_path / "cm"
    assert run_cli("convert", model, "--target", "cortex-m", "-o", build).returncode == 0
    for cmd in (["build", build], ["report", build, "--html"],
                ["infer", build, "--port", "/dev/null", "--input", tmp_path / "x.npy",
                 "--output", tmp_path / "y.npy"]):
        proc = run_cli(*cmd)
        assert proc.returncode == 2, (cmd, proc.stderr)
        assert "factorizer" in proc.stderr and "Traceback" not in proc.stderr
