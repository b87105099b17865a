"""CLI commands on the shipped examples, and the IR folder (round trip, determinism, safety)."""

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, run_cli

import edge_sdk
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.ir import serialize

MLP = EXAMPLES / "mlp_digits.onnx"
CNN = EXAMPLES / "cnn_digits.onnx"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "edge-sdk"  # the venv's console script
    proc = subprocess.run([script, "--version"], check=False, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("edge-sdk ")


def test_inspect_table_counts(tmp_path):
    proc = run_cli("inspect", CNN)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for word in ("Conv2d", "Threshold", "MaxPool", "Dense", "Scores", "total", "float32"):
        assert word in out
    proc = run_cli("inspect", CNN, "--json")
    doc = json.loads(proc.stdout)
    convs = [r for r in doc["layers"] if r["type"] == "Conv2d"]
    # 16x1x3x3 and 32x16x3x3 binary weights, packed per output row into 32-bit words
    assert [c["params"] for c in convs] == [144, 4608]
    assert [c["packed_bytes"] for c in convs] == [16 * 1 * 4, 32 * 5 * 4]
    assert doc["totals"]["float32_bytes"] == 4 * sum(
        r["params"] for r in doc["layers"] if r["type"] in ("Conv2d", "Dense")
    ) + sum(r["float32_bytes"] for r in doc["layers"] if r["type"] in ("Threshold", "Scores"))


@pytest.mark.parametrize("model,x", [(MLP, "digits_mlp_x.npy"), (CNN, "digits_cnn_x.npy")])
def test_run_writes_golden_output(tmp_path, model, x):
    out = tmp_path / "y.npy"
    proc = run_cli("run", model, "--input", EXAMPLES / x, "--output", out)
    assert proc.returncode == 0, proc.stderr
    y = np.load(out)
    xs = np.load(EXAMPLES / x)
    assert np.array_equal(y, edge_sdk.load(model).run(xs))
    ref = run_onnxruntime(model, xs)
    assert y.shape == ref.shape and y.dtype == ref.dtype
    assert np.array_equal(y.argmax(1), ref.argmax(1))


def test_convert_ir_round_trip_and_determinism(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = run_cli("convert", CNN, "--target", "ir", "-o", out)
        assert proc.returncode == 0, proc.stderr
    cmp = filecmp.dircmp(a, b)
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert not filecmp.dircmp(a / "arrays", b / "arrays").diff_files
    x = np.load(EXAMPLES / "digits_cnn_x.npy")
    assert np.array_equal(edge_sdk.load(a).run(x), edge_sdk.load(CNN).run(x))
    # an IR folder is a model for `run` too
    out = tmp_path / "y.npy"
    assert run_cli("run", a, "--input", EXAMPLES / "digits_cnn_x.npy", "--output", out).returncode == 0
    assert np.array_equal(np.load(out), edge_sdk.load(CNN).run(x))


def test_convert_replaces_existing_folder(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert run_cli("convert", MLP, "--target", "ir", "-o", out).returncode == 0
    assert (out / "ir.json").exists() and not (out / "stale.txt").exists()


def test_ir_folder_refuses_other_versions_and_escaping_paths(tmp_path):
    folder = tmp_path / "ir"
    edge_sdk.load(MLP).save_ir(folder)
    doc = json.loads((folder / "ir.json").read_text())
    doc["version"] = 999
    (folder / "ir.json").write_text(json.dumps(doc))
    with pytest.raises(edge_sdk.EdgeError, match="version 999"):
        serialize.load(folder)
    edge_sdk.load(MLP).save_ir(folder)
    text = (folder / "ir.json").read_text()
    first = json.loads(text)["layers"][1]["weights"]["sign"]["npy"]
    (folder / "ir.json").write_text(text.replace(first, "../../etc/passwd"))
    with pytest.raises(edge_sdk.EdgeError, match="outside"):
        serialize.load(folder)


def test_input_range_option(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.full((1, 64), 20, np.float32))
    out = tmp_path / "y.npy"
    proc = run_cli("run", MLP, "--input", x, "--output", out, "--input-range", "0,16")
    assert proc.returncode == 2 and "[0, 16]" in proc.stderr
    proc = run_cli("run", MLP, "--input", x, "--output", out, "--input-range", "0,255")
    assert proc.returncode == 0, proc.stderr


def test_ir_has_source_and_lowered_forms():
    m = edge_sdk.load(CNN)
    kinds = {type(layer).__name__ for layer in m.source.layers}
    assert {"Affine", "Binarize"} <= kinds
    assert m.ir.lowered and not m.source.lowered
