"""A QuickNet-style stem from torch: a float conv and a float depthwise conv with real weights
on real-valued data, quantised to 8 bits with a calibration set (grouped `Int8Weights`), then a
binary conv. References: onnxruntime (faithful mode, to float32 rounding; argmax for
`--fixed-point`) and the golden fixed-point mode for the Cortex-M C and the FPGA Verilog."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch_nets as tn
from conftest import assert_close_to_reference
from host_check import assert_host_bit_exact
from torch import nn

import edge_sdk
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.ir import layers as L

LO, HI = 0, 15
SHAPE = (3, 8, 8)


class DepthwiseStem(nn.Module):
    """conv 3x3 (3 -> 8, float) -> BN -> ReLU -> depthwise 3x3 stride 2 (x2 multiplier, float)
    -> BN -> sign -> binary conv 3x3 -> BN -> mean -> float Linear."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)  # the default bias / Linear init draws from the global RNG
        gen = torch.Generator().manual_seed(seed)
        self.conv0 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = tn.BinConv(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)
        with torch.no_grad():
            for p in (self.conv0.weight, self.dw.weight, self.conv2.weight):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        tn._randomise_bn(self.bn2, gen, 16 * 9)
        x = torch.randint(LO, HI + 1, (256, *SHAPE), generator=gen).float()
        with torch.no_grad():  # BN statistics from the data, so each sign splits
            for conv, bn, pre in ((self.conv0, self.bn0, None), (self.dw, self.bn1, "relu")):
                x = conv(x if pre is None else torch.relu(self.bn0(x)))
                bn.running_mean.copy_(x.mean(dim=(0, 2, 3)))
                bn.running_var.copy_(x.var(dim=(0, 2, 3)) + 0.1)

    def forward(self, x):
        x = torch.sign(self.bn1(self.dw(torch.relu(self.bn0(self.conv0(x))))))
        return self.fc(self.bn2(self.conv2(x)).mean(dim=(2, 3)))


def inputs(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).integers(LO, HI + 1, (n, *SHAPE)).astype(np.float32)
    x[0], x[1] = LO, HI
    return x


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("dw8") / "dw.onnx"
    tn.export(DepthwiseStem().eval(), torch.zeros((2, *SHAPE)), path, False)
    return path, edge_sdk.load(path, input_range=(LO, HI), calibration=inputs(128, seed=7))


def test_depthwise_is_an_8bit_grouped_conv(model):
    _, m = model
    (g,) = [layer for layer in m.source.layers if isinstance(layer, L.GroupConv2d)]
    assert L.is_int8(g.weights) and g.groups == 8 and g.weights.rows == 16


def test_faithful_and_fixed_point_against_onnxruntime(model):
    path, m = model
    x = inputs(300, seed=1)
    ref = run_onnxruntime(path, x)
    assert_close_to_reference(m.run(x), ref, exact=False)
    # random weights: the 8-bit stem's rounding flips a few signs after it, and near-tied
    # logits follow them; the bar catches a wrong rule (which agrees on ~10 %), not rounding
    agree = np.mean(m.run(x, fixed_point=True).argmax(1) == ref.argmax(1))
    assert agree >= 0.9, agree


def test_cortex_m_host_bit_exact(model, tmp_path):
    _, m = model
    cm = assert_host_bit_exact(m.ir, inputs(100, seed=3), tmp_path / "host")
    assert "depthwise conv" in "".join(cm.files.values())  # the int8 grouped kernel


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
def test_fpga_bit_exact(model, tmp_path):
    _, m = model
    x = inputs(2, seed=6)
    sim = m.convert("fpga", tmp_path / "fpga", board="sim").simulate(x)
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))
