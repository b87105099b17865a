"""Small binary/ternary torch networks with random weights, exported the ways users export.

Written for the tests (not the examples) so each exporter path is exercised on purpose: plain
`Sign` on weights and activations, `where(x >= 0, 1, -1)` written with `ones_like` (what an
inlined STE looks like under `dynamo=False`), TWN ternary weights computed in the forward pass
(the `Abs/ReduceMean/Greater/...` subgraph), negative BN gammas.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import nn


def sign_act(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x)


def where_act(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class BinLinear(nn.Linear):
    def forward(self, x):
        return nn.functional.linear(x, torch.sign(self.weight))


class TernLinear(nn.Linear):
    """TWN: delta = 0.7 mean|w|, alpha = mean of |w| above delta."""

    def forward(self, x):
        w = self.weight
        delta = 0.7 * w.abs().mean()
        mask = (w.abs() > delta).to(w.dtype)
        alpha = (w.abs() * mask).sum() / mask.sum()
        return nn.functional.linear(x, alpha * torch.sign(w) * mask)


class BinConv(nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, torch.sign(self.weight), None)


def _randomise_bn(bn: nn.modules.batchnorm._BatchNorm, gen: torch.Generator, k: int) -> None:
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=gen))  # about half negative
        bn.bias.copy_(torch.randn(c, generator=gen))
        bn.running_mean.copy_(torch.randn(c, generator=gen) * k**0.5)
        bn.running_var.copy_(torch.rand(c, generator=gen) * k + 0.5)


class MLP(nn.Module):
    def __init__(self, sizes, act, ternary=False, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layer = TernLinear if ternary else BinLinear
        self.fcs = nn.ModuleList(layer(a, b, bias=False) for a, b in itertools.pairwise(sizes))
        self.bns = nn.ModuleList(nn.BatchNorm1d(b) for b in sizes[1:])
        for fc, bn in zip(self.fcs, self.bns):
            with torch.no_grad():
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen))
            _randomise_bn(bn, gen, fc.in_features)
        self.act = act

    def forward(self, x):
        for i, (fc, bn) in enumerate(zip(self.fcs, self.bns)):
            x = bn(fc(x))
            if i < len(self.fcs) - 1:
                x = self.act(x)
        return x


class CNN(nn.Module):
    def __init__(self, act, seed=0, channels=(8, 16), n_out=10):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        c1, c2 = channels
        self.c1 = BinConv(1, c1, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c1)
        self.c2 = BinConv(c1, c2, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(c2)
        self.pool = nn.MaxPool2d(2)
        self.fc = BinLinear(c2 * 16, n_out, bias=False)
        self.b3 = nn.BatchNorm1d(n_out)
        for conv, bn, k in ((self.c1, self.b1, 9), (self.c2, self.b2, 9 * c1),
                            (self.fc, self.b3, 16 * c2)):
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
            _randomise_bn(bn, gen, k)
        self.act = act

    def forward(self, x):
        x = self.act(self.b1(self.c1(x)))
        x = self.pool(self.act(self.b2(self.c2(x))))
        return self.b3(self.fc(torch.flatten(x, 1)))


def export(model: nn.Module, example: torch.Tensor, path: Path, dynamo: bool) -> Path:
    model.eval()
    kwargs = {"input_names": ["x"], "output_names": ["y"]}
    if dynamo:
        torch.onnx.export(model, (example,), str(path), dynamo=True, **kwargs,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
    else:
        torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs,
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path
