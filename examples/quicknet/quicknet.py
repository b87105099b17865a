"""A QuickNet-style binary network at CIFAR size (issue #11's hardware target), random weights.

Larq Zoo's QuickNet (sota/quicknet.py) is a stem, four sections of "fast residual blocks" and a
global-average-pool head. Each block is

    y = BN(ReLU(binary_conv3x3(sign(x)))) + x                      (same width)
    y = concat[BN(maxpool(x)), BN(ReLU(binary_conv3x3_s2(sign(x)))) + BN(maxpool(x))]
                                                                    (first block of a section:
                                                                     half the size, twice the width)

with real-valued tensors on every shortcut. Here the sections keep QuickNet's block counts
(2, 3, 4, 4) with the widths scaled down to 32-64-128-256 for a 32x32x3 input and 10 classes.
The stem is one 3x3 stride-2 convolution on the 8-bit pixels (binary weights on integer inputs,
QuickNet's own stem is an 8-bit conv + depthwise conv), ReLU and BN; the head is ReLU, global
average pooling, sign and a binary dense layer with a BN on the 10 scores.

The weights are random (seeded): the network exists for the hardware figures (flash, RAM,
instructions, FPGA resources), not for its accuracy. BatchNorm statistics are set so every
sign sees both signs and every ReLU passes about half its inputs, as in a trained network.

`binary=False` builds the same network with float convolutions and no signs: the int8
baseline, which the SDK quantises to 8 bits with a calibration set (`--calibrate`), as
TFLite Micro would run the network without binarisation.

Run: `python examples/quicknet/quicknet.py [-o quicknet.onnx] [--widths 32,64,128,256]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from edge_sdk.train import BinaryActivation, BinaryConv2d, BinaryLinear, export_onnx

HERE = Path(__file__).resolve().parent
BLOCKS = (2, 3, 4, 4)
WIDTHS = (32, 64, 128, 256)
INPUT_SHAPE = (3, 32, 32)
CLASSES = 10
SEED = 0


def _bn(c: int, gen: torch.Generator, spread: float, centre: float = 0.0) -> nn.BatchNorm2d:
    """BN whose inputs (std about `spread`) come out roughly zero-mean, unit-scale."""
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(1.0 + 0.25 * torch.randn(c, generator=gen))
        bn.bias.copy_(0.25 * torch.randn(c, generator=gen))
        bn.running_mean.copy_(centre + 0.2 * spread * torch.randn(c, generator=gen))
        bn.running_var.copy_((spread * (0.75 + 0.5 * torch.rand(c, generator=gen))) ** 2)
    return bn


def _conv(c_in: int, c_out: int, stride: int, binary: bool) -> nn.Conv2d:
    if binary:
        return BinaryConv2d(c_in, c_out, 3, stride=stride, padding=1)
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def _randomise(layer: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))


class FastBlock(nn.Module):
    """One QuickNet residual block (see the module docstring)."""

    def __init__(self, c_in: int, c_out: int, gen: torch.Generator, binary: bool = True) -> None:
        super().__init__()
        self.down = c_out != c_in
        stride = 2 if self.down else 1
        self.sign = BinaryActivation() if binary else nn.Identity()
        self.conv = _conv(c_in, c_in, stride, binary)
        _randomise(self.conv, gen)
        fan = 9 * c_in
        # ReLU of a +-1 dot product of fan terms: mean ~0.4 sqrt(fan), std ~0.6 sqrt(fan)
        self.bn = _bn(c_in, gen, 0.6 * fan**0.5, 0.4 * fan**0.5)
        if self.down:
            self.pool = nn.MaxPool2d(2, 2)
            self.bn_res = _bn(c_in, gen, 1.0, 0.8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn_res(self.pool(x)) if self.down else x
        y = self.bn(torch.relu(self.conv(self.sign(x)))) + residual
        return torch.cat([residual, y], 1) if self.down else y


class QuickNetStyle(nn.Module):
    def __init__(self, widths: tuple[int, ...] = WIDTHS, blocks: tuple[int, ...] = BLOCKS,
                 classes: int = CLASSES, seed: int = SEED, binary: bool = True) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        c0 = widths[0]
        self.stem = _conv(INPUT_SHAPE[0], c0, 2, binary)
        _randomise(self.stem, gen)
        fan = 27
        # +-1 weights on pixels 0..255: the sum of 27 terms has std ~ 255 * sqrt(27 / 3)
        self.bn0 = _bn(c0, gen, 0.6 * 255 * (fan / 3) ** 0.5, 0.4 * 255 * (fan / 3) ** 0.5)
        layers: list[nn.Module] = []
        c = c0
        for section, (n, width) in enumerate(zip(blocks, widths)):
            for i in range(n):
                out = width if (section > 0 and i == 0) else c
                layers.append(FastBlock(c, out, gen, binary))
                c = out
        self.blocks = nn.Sequential(*layers)
        self.sign = BinaryActivation() if binary else nn.Identity()
        self.fc = BinaryLinear(c, classes) if binary else nn.Linear(c, classes, bias=False)
        _randomise(self.fc, gen)
        self.bnf = nn.BatchNorm1d(classes)
        with torch.no_grad():
            self.bnf.running_var.fill_(float(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn0(torch.relu(self.stem(x)))
        x = self.blocks(x)
        x = torch.relu(x).mean((2, 3))
        # mean of ReLU outputs is >= 0: centre it so the sign splits the channels
        return self.bnf(self.fc(self.sign(x - 0.5)))


def build(widths: tuple[int, ...] = WIDTHS, seed: int = SEED,
          binary: bool = True) -> QuickNetStyle:
    return QuickNetStyle(widths=widths, seed=seed, binary=binary).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=HERE / "quicknet.onnx")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--float", action="store_true",
                        help="float convolutions, no signs (the int8 baseline's source)")
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    model = build(widths, args.seed, binary=not args.float)
    export_onnx(model, torch.zeros((2, *INPUT_SHAPE)), args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
