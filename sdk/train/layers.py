"""Drop-in Linear/Conv2d layers with quantised weights and an optional input quantiser.

`QuantLinear` / `QuantConv2d` take any `weight_quant` (weights.py) and optionally an
`input_quant` (activations.py) that binarises their input; a scale returned by the input
quantiser multiplies the accumulator (before the bias), so the exported graph holds a binary
layer followed by float ops on its accumulator, the form the SDK folds into thresholds.

The named classes are the usual configurations: `BinaryLinear(64, 128)` is sign(W) with the
clipped STE and no bias (the following BatchNorm supplies the per-channel offset, which the SDK
folds into an integer threshold); `TernaryLinear(..., method="twn" | "stats")`.

During `export.frozen_weights` a layer uses a precomputed constant instead of running its
weight quantiser, so the ONNX file holds the exact weights as an initializer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .estimators import Estimator
from .weights import SignWeight, StatsTernaryWeight, TWNWeight, WeightQuantizer

TERNARY_METHODS = ("twn", "stats")


def _ternary(method: str) -> WeightQuantizer:
    if method == "twn":
        return TWNWeight()
    if method == "stats":
        return StatsTernaryWeight()
    raise ValueError(f"ternary method must be one of {TERNARY_METHODS}, not {method!r}")


class _Quantised:
    """Shared by the Linear and Conv layers: weight quantiser, input quantiser, frozen weights."""

    weight: nn.Parameter
    weight_quant: WeightQuantizer
    input_quant: nn.Module | None
    frozen_weight: torch.Tensor | None

    def _setup(self, weight_quant: WeightQuantizer, input_quant: nn.Module | None) -> None:
        self.weight_quant = weight_quant
        self.input_quant = input_quant
        self.frozen_weight = None

    def quantized_weight(self) -> torch.Tensor:
        """The weights the layer computes with: exact binary/ternary values."""
        if self.frozen_weight is not None:
            return self.frozen_weight
        return self.weight_quant(self.weight)

    def _compute(self, x: torch.Tensor, op: Callable[..., torch.Tensor],
                 bias_shape: tuple[int, ...] | None) -> torch.Tensor:
        """op(x_q, W_q, bias), or op(x_q, W_q) * scale + bias when the input has a scale."""
        scale = None
        if self.input_quant is not None:
            x, scale = self.input_quant.quantize(x)
        w = self.quantized_weight()
        if scale is None:
            return op(x, w, self.bias)
        y = op(x, w, None) * scale
        if self.bias is None:
            return y
        return y + (self.bias if bias_shape is None else self.bias.reshape(bias_shape))


class QuantLinear(nn.Linear, _Quantised):
    """y = scale * (x_q @ W_q^T) + bias; W_q = weight_quant(W), (x_q, scale) = input_quant(x)."""

    def __init__(self, in_features: int, out_features: int, weight_quant: WeightQuantizer,
                 bias: bool = False, input_quant: nn.Module | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self._setup(weight_quant, input_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._compute(x, F.linear, None)


class QuantConv2d(nn.Conv2d, _Quantised):
    """Conv2d with quantised weights (zero padding, as ONNX pads) and an optional input quant."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 weight_quant: WeightQuantizer, stride: int = 1, padding: int = 0,
                 bias: bool = False, input_quant: nn.Module | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         bias=bias)
        self._setup(weight_quant, input_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._compute(x, self._conv_forward, (1, -1, 1, 1))


class BinaryLinear(QuantLinear):
    """sign(W) weights trained with `estimator` (default: STE clipped at 1), no bias by default."""

    def __init__(self, in_features: int, out_features: int, estimator: Estimator | None = None,
                 *, scale: str | None = None, bias: bool = False,
                 input_quant: nn.Module | None = None) -> None:
        super().__init__(in_features, out_features, SignWeight(estimator, scale), bias=bias,
                         input_quant=input_quant)


class BinaryConv2d(QuantConv2d):
    """2-D convolution with sign(W) weights (see BinaryLinear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, estimator: Estimator | None = None, *,
                 scale: str | None = None, bias: bool = False,
                 input_quant: nn.Module | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, SignWeight(estimator, scale),
                         stride=stride, padding=padding, bias=bias, input_quant=input_quant)


class TernaryLinear(QuantLinear):
    """{-a, 0, +a} weights by TWN's threshold ("twn") or BTNLG's row statistics ("stats")."""

    def __init__(self, in_features: int, out_features: int, method: str = "twn", *,
                 bias: bool = False, input_quant: nn.Module | None = None) -> None:
        super().__init__(in_features, out_features, _ternary(method), bias=bias,
                         input_quant=input_quant)


class TernaryConv2d(QuantConv2d):
    """2-D convolution with ternary weights (see TernaryLinear)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, method: str = "twn", *, bias: bool = False,
                 input_quant: nn.Module | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, _ternary(method),
                         stride=stride, padding=padding, bias=bias, input_quant=input_quant)


def quantised_layers(model: nn.Module) -> list[QuantLinear | QuantConv2d]:
    """Every layer of `model` with a weight quantiser, in module order."""
    return [m for m in model.modules() if isinstance(m, _Quantised)]
