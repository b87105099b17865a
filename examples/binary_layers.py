"""Binary building blocks (weights and activations in {-1, +1}) for the examples.

Binary nets are trained with a straight-through estimator (STE): the forward
pass uses the binarised value, while the backward pass lets the gradient
through unchanged where the input is inside [-1, 1] and blocks it outside
(the "clipped identity"), which keeps the float latent weights from drifting
away without bound. The latent weights stay in float so that small updates
accumulate until they flip a sign.

Two activation binarisers are offered because ``torch.sign`` maps 0 to 0, which
is not a valid binary value; ``torch.where(x >= 0, 1, -1)`` maps 0 to +1 and is
what hardware implementing a single sign bit actually computes. The two
examples deliberately use one each so the SDK converters are exercised on both
ONNX patterns (``Sign`` vs ``GreaterOrEqual``/``Where``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class SignSTE(torch.autograd.Function):
    """Forward ``torch.sign(x)``; backward ``grad * (|x| <= 1)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


class GeSignSTE(torch.autograd.Function):
    """Forward ``where(x >= 0, 1, -1)`` (never 0); backward ``grad * (|x| <= 1)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad_output * (x.abs() <= 1).to(grad_output.dtype)


def binarize(x: torch.Tensor, use_where: bool = False) -> torch.Tensor:
    """Binarise ``x`` with the STE.

    Args:
        x: tensor to binarise.
        use_where: if True use ``where(x >= 0, 1, -1)`` (0 -> +1), otherwise
            ``torch.sign`` (0 -> 0).
    """
    fn = GeSignSTE if use_where else SignSTE
    return fn.apply(x)


class BinaryActivation(nn.Module):
    """Sign activation trained with the STE (see :func:`binarize`)."""

    def __init__(self, use_where: bool = False) -> None:
        super().__init__()
        self.use_where = use_where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(x, self.use_where)

    def extra_repr(self) -> str:
        return f"use_where={self.use_where}"


class BinaryLinear(nn.Linear):
    """Fully connected layer with ``sign(W)`` weights and no bias.

    No bias because the following BatchNorm supplies the per-channel offset,
    which the SDK folds into an integer threshold.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, SignSTE.apply(self.weight))


class BinaryConv2d(nn.Conv2d):
    """2-D convolution with ``sign(W)`` weights and no bias (see BinaryLinear)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, SignSTE.apply(self.weight), None)
