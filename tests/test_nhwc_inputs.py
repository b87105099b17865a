"""NHWC model inputs (an [N, H, W, C] image turned NCHW by a Transpose, as Keras-to-ONNX
exporters write it) on both targets: the Cortex-M copy into CHW order and the FPGA's stream
view must give what the golden model gives, which test_golden_vs_onnxruntime checks against
onnxruntime. (TFLite's NHWC inputs: tests/test_tflite.py.)"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import zoo
from conftest import run_cli

import edge_sdk


@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("qemu-system-arm") is None,
                    reason="iverilog / qemu-system-arm missing")
@pytest.mark.parametrize("target", ["cortex-m", "fpga"])
def test_onnx_nhwc_input_on_target(tmp_path, target):
    path = tmp_path / "nhwc.onnx"
    onnx.save(zoo.cnn(5, in_shape=(3, 6, 5), channels=(6, 8), nhwc=True), path)
    x = np.random.default_rng(1).integers(0, 16, (5, 6, 5, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("convert", path, "--target", target, "-o", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", tmp_path / "b", "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), edge_sdk.load(path).run(x))
