"""Activation binarisers: a plain one (any threshold estimator) and an elastic one.

Both expose `quantize(x) -> (b, scale)`: `b` holds exactly ±1 (or Sign(0) = 0) and `scale` is
None or a positive scalar that the *next* layer applies to its accumulator. Why the split: a
scale on ±1 data before a Gemm/Conv is not a binary layer any more for the SDK, while
`scale * (W @ b)` is an integer accumulator followed by one float multiply, which the passes
fold into a threshold or keep as a score scale. `W @ (a b) = a (W @ b)`, so the network is
the same function; the layers in `layers.py` call `quantize` on their input.

`ElasticBinaryActivation` is the 1-bit case of the elastic (learned-scale) activation
quantiser of "Binary and Ternary Natural Language Generation" (after Learned Step-size
Quantisation, with BiT's learnable shift): y = a * sign(x - beta), a > 0 learned with its
gradient scaled by 1/sqrt(numel), a initialised to 2 mean|x - beta| on the first training
batch, beta learned per channel. The backward through the sign is the STE clipped at the
scale: dy/dx = 1 where |x - beta| <= a.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .estimators import STE, Estimator, binarize

#: Smallest scale the elastic quantiser uses (the BTNLG code clamps at the same value).
MIN_SCALE = 1e-5


class BinaryActivation(nn.Module):
    """sign(x) (0 -> 0) or, with `zero_to_plus`, where(x >= 0, 1, -1); gradient by estimator."""

    def __init__(self, estimator: Estimator | None = None, zero_to_plus: bool = False) -> None:
        super().__init__()
        est = estimator if estimator is not None else STE()
        if est.periodic:
            raise ValueError(f"{type(est).__name__} has a periodic forward; on activations it "
                             "is not a threshold and cannot be deployed (use it for weights)")
        self.estimator = est
        self.zero_to_plus = zero_to_plus

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return binarize(x, self.estimator, self.zero_to_plus), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x)[0]

    def extra_repr(self) -> str:
        return f"estimator={self.estimator}, zero_to_plus={self.zero_to_plus}"


class _ElasticSign(torch.autograd.Function):
    """Forward ±1 of u; backward grad / a where |u| <= a (b ~ u / a inside the clip)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, a: torch.Tensor, zero_to_plus: bool) -> torch.Tensor:
        ctx.save_for_backward(u, a)
        return STE().value(u, zero_to_plus)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        u, a = ctx.saved_tensors
        return grad_output * (u.abs() <= a).to(grad_output.dtype) / a, None, None


class _GradScale(torch.autograd.Function):
    """Identity forward (exact), gradient times `factor` (LSQ's step-size gradient scale)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return a.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_output * ctx.factor, None


class ElasticBinaryActivation(nn.Module):
    """y = a * sign(x - beta): learned scale a (scalar) and shift beta (per channel)."""

    def __init__(self, channels: int | None = None, zero_to_plus: bool = True) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.zeros(channels)) if channels else None
        self.zero_to_plus = zero_to_plus
        self.register_buffer("initialized", torch.tensor(False))

    def _shifted(self, x: torch.Tensor) -> torch.Tensor:
        if self.beta is None:
            return x
        return x - self.beta.reshape((1, -1) + (1,) * (x.dim() - 2))

    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self._shifted(x)
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.alpha.copy_((2.0 * u.abs().mean()).clamp(min=MIN_SCALE))
                self.initialized.fill_(True)
        a = self.alpha.clamp(min=MIN_SCALE)
        b = _ElasticSign.apply(u, a.detach(), self.zero_to_plus)
        if self.training:
            a = _GradScale.apply(a, 1.0 / math.sqrt(u.numel()))
        return b, a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, a = self.quantize(x)
        return b * a

    def extra_repr(self) -> str:
        ch = None if self.beta is None else self.beta.numel()
        return f"channels={ch}, zero_to_plus={self.zero_to_plus}"
