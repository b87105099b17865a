"""Backward estimators for binarisation: one forward value, different surrogate gradients.

Why: the derivative of a step function is zero almost everywhere, so every binary network is
trained with a surrogate gradient, and the papers differ only in that surrogate. Keeping the
surrogate (`derivative`) apart from the value (`value`) is what guarantees that the exported
forward pass is the plain binarisation the SDK reads, whatever estimator trained it.

- `STE`: clipped identity, gradient 1 where |x| <= clip (BinaryConnect / BNN); `clip=None` is
  the unclipped identity used for weights by TWN and the statistics-based quantisers.
- `ApproxSign`: Bi-Real Net's piecewise-quadratic sign, gradient max(0, 2 - 2|x|); BiPer uses it
  for activations.
- `ReSTE`: the power function sign(x)|x|^(1/o) as the backward model of sign, gradient
  (1/o)|x|^((1-o)/o) for |x| <= t, linearised on |x| <= interval to stay finite at 0; `o` is
  raised from 1 during training (`ReSTE.exponent`).
- `BiPer`: a square wave sign(sin(freq x)) forward and the derivative of the sine with the same
  period, freq cos(freq x), backward. The forward is periodic, not a threshold, so it is for
  weights only (constants after export), never for activations.

Ties: ONNX/torch `Sign(0) = 0`; `zero_to_plus=True` computes `where(x >= 0, 1, -1)` instead
(0 -> +1). Both export to forms the frontend reads; the golden model reproduces either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch


@dataclass
class Estimator:
    """A binariser: `value` is the exact forward, `derivative` the surrogate d value / dx."""

    #: True when the forward is not a threshold at 0 (only usable on weights).
    periodic: ClassVar[bool] = False

    def value(self, x: torch.Tensor, zero_to_plus: bool = False) -> torch.Tensor:
        """The exact forward: sign(x), or where(x >= 0, 1, -1) when `zero_to_plus`."""
        if zero_to_plus:
            return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
        return torch.sign(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate gradient of `value` at x (elementwise)."""
        raise NotImplementedError


@dataclass
class STE(Estimator):
    """Straight-through estimator: gradient 1 where |x| <= clip, else 0 (no clip: always 1)."""

    clip: float | None = 1.0

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        if self.clip is None:
            return torch.ones_like(x)
        return x.abs() <= self.clip


@dataclass
class ApproxSign(Estimator):
    """Bi-Real Net's ApproxSign: gradient max(0, 2 - 2|x|) (a triangle of area 2)."""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (2.0 - 2.0 * x.abs()).clamp(min=0.0)


@dataclass
class ReSTE(Estimator):
    """Rectified STE: gradient of the power function sign(x)|x|^(1/o), zero beyond |x| > t.

    On |x| <= interval the power function's gradient would blow up for o > 1, so there it is
    replaced by the slope of the chord from 0 to (interval, interval^(1/o)). o = 1 is the STE
    clipped at t.
    """

    o: float = 1.0
    t: float = 1.5
    interval: float = 0.1

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        a = x.abs()
        power = (1.0 / self.o) * a.clamp(min=self.interval) ** ((1.0 - self.o) / self.o)
        chord = self.interval ** (1.0 / self.o) / self.interval
        grad = torch.where(a <= self.interval, torch.full_like(x, chord), power)
        return torch.where(a <= self.t, grad, torch.zeros_like(x))

    @staticmethod
    def exponent(epoch: int, epochs: int, o_end: float = 3.0) -> float:
        """The ReSTE schedule: o rises from 1 to `o_end` as 1 + (o_end - 1)(1 - cos(pi/2 r))."""
        r = epoch / max(epochs, 1)
        return 1.0 + (o_end - 1.0) * (1.0 - math.cos(0.5 * math.pi * r))


@dataclass
class BiPer(Estimator):
    """Binary periodic function: square wave forward, its sine's derivative backward."""

    freq: float = 20.0
    periodic: ClassVar[bool] = True

    def value(self, x: torch.Tensor, zero_to_plus: bool = False) -> torch.Tensor:
        return super().value(torch.sin(self.freq * x), zero_to_plus)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.freq * torch.cos(self.freq * x)


class _Binarize(torch.autograd.Function):
    """Forward `est.value(x)`, backward `grad * est.derivative(x)`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, est: Estimator, zero_to_plus: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.est = est
        return est.value(x, zero_to_plus)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.est.derivative(x).to(grad_output.dtype), None, None


class _Surrogate(torch.autograd.Function):
    """Forward a precomputed exact value `y`, backward `grad * est.derivative(x)`.

    For quantisers whose value is not a plain sign (ternary, scaled): computing `y` without
    autograd and attaching the gradient here keeps the forward exact, unlike the float
    expression `x + (y - x).detach()`.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, y: torch.Tensor, est: Estimator) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.est = est
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        return grad_output * ctx.est.derivative(x).to(grad_output.dtype), None, None


def binarize(x: torch.Tensor, est: Estimator | None = None,
             zero_to_plus: bool = False) -> torch.Tensor:
    """±1 (or Sign(0) = 0) values of x with `est`'s surrogate gradient (default: STE)."""
    return _Binarize.apply(x, est if est is not None else STE(), zero_to_plus)


def with_surrogate(x: torch.Tensor, y: torch.Tensor, est: Estimator) -> torch.Tensor:
    """`y` (computed from x without autograd) carrying the gradient `est.derivative(x)`."""
    return _Surrogate.apply(x, y.detach(), est)
