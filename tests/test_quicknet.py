"""The QuickNet-style example (examples/quicknet/quicknet.py) at reduced widths: it converts for the
STM32F746 board within its memory, runs bit-exactly under QEMU's Cortex-M7, and its int8
baseline (float convolutions quantised with a calibration set) does too. The full-width
figures come from bench/quicknet_targets.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import edge_sdk
from edge_sdk.converters.cortexm.boards import get_board
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.ir import layers as L

torch = pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")

from conftest import EXAMPLES

sys.path.insert(0, str(EXAMPLES / "quicknet"))
import quicknet

from edge_sdk.train import export_onnx

WIDTHS = (8, 16, 32, 64)


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *quicknet.INPUT_SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quicknet")
    paths = {}
    for binary in (True, False):
        path = folder / f"q_{binary}.onnx"
        net = quicknet.build(WIDTHS, binary=binary)
        export_onnx(net, torch.zeros((2, *quicknet.INPUT_SHAPE)), path)
        paths[binary] = path
    return paths


def test_structure_is_quicknet(onnx_paths):
    m = edge_sdk.load(onnx_paths[True], input_range=(0, 255))
    kinds = [type(layer) for layer in m.ir.layers]
    # 13 blocks: one residual add each, a concat per downsampling block, one GAP
    assert kinds.count(L.AddTensors) == sum(quicknet.BLOCKS)
    assert kinds.count(L.Concat) == len(quicknet.BLOCKS) - 1
    assert kinds.count(L.GlobalAvgPool) == 1
    convs = [layer for layer in m.ir.layers if isinstance(layer, L.Conv2d)]
    assert len(convs) == 1 + sum(quicknet.BLOCKS)
    x = _images(16, 0)
    ref = run_onnxruntime(onnx_paths[True], x)
    assert np.array_equal(m.run(x), ref)
    fixed = m.run(x, fixed_point=True)
    assert np.mean(fixed.argmax(1) == ref.argmax(1)) >= 0.99


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "int8"])
def test_f746_fit_and_cortex_m7_bit_exact(onnx_paths, tmp_path, binary):
    cal = None if binary else _images(16, 5)
    m = edge_sdk.load(onnx_paths[binary], input_range=(0, 255), calibration=cal)
    if not binary:
        assert any(isinstance(layer, L.Quantize) for layer in m.ir.layers)
    board = get_board("nucleo-f746zg")
    rep = m.convert("cortex-m", tmp_path / "f746", board=board.name).report().data
    assert rep["flash_bytes"] <= board.flash_bytes and rep["ram_bytes"] <= board.ram_bytes
    assert rep["cpu"] == "cortex-m7" and rep["instructions_per_inference"]["mean"] > 0
    x = _images(2, 1)
    sim = m.convert("cortex-m", tmp_path / "m7", board="qemu-mps2-an500").simulate(x)
    assert np.array_equal(sim.output, m.run(x, fixed_point=True))
