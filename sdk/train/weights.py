"""Weight quantisers: latent float weights -> the exact constants the exported model holds.

Why modules: a layer takes any of them (`QuantLinear(..., weight_quant=...)`), and
`export.frozen_weights` evaluates them once to put plain constants into the ONNX file. Every
value is exact in float32: ±1, ±a (one magnitude per layer or per output row) or {-a, 0, +a},
which is what the frontend's weight classifier accepts (one magnitude per row).

- `SignWeight`: sign(w) (or BiPer's square wave) with an estimator's gradient, optionally scaled
  by mean|w| per layer (XNOR-Net, ReSTE) or per output row (the binary weights of "Binary and
  Ternary Natural Language Generation", BTNLG).
- `TWNWeight`: Ternary Weight Networks, delta = 0.7 mean|w|, w -> a sign(w) where |w| > delta,
  a = mean of |w| over those weights.
- `StatsTernaryWeight`: BTNLG's statistics-based ternary weights, per output row
  a = 4/3 mean|w_row| and w -> a round(clip(w / a, -1, 1)): nonzero where |w| > a / 2 (a tie at
  exactly a / 2 rounds half to even, to 0).

The scales are statistics of the weights, not trained: they are detached, and the gradient
with respect to the latent weights is the estimator's (identity by default for the ternary
quantisers, as in TWN and BTNLG).
"""

from __future__ import annotations

import torch
from torch import nn

from .estimators import STE, Estimator, binarize, with_surrogate


def _rows(w: torch.Tensor) -> torch.Tensor:
    """[O, K] view: one row per output channel (Linear [O, K], Conv [O, C, kh, kw])."""
    return w.reshape(w.shape[0], -1)


def _row_mean_abs(w: torch.Tensor) -> torch.Tensor:
    """mean|w| per output row, shaped to broadcast against w."""
    return _rows(w).abs().mean(dim=1).reshape((-1,) + (1,) * (w.dim() - 1))


class WeightQuantizer(nn.Module):
    """Maps latent weights to exact binary/ternary values; the gradient is a surrogate's."""

    #: "binary" (±a, never 0 but for an exact zero latent weight) or "ternary"
    levels: str = "binary"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SignWeight(WeightQuantizer):
    """sign(w) with `estimator`'s gradient; `scale` None, "layer" or "row" multiplies mean|w|."""

    def __init__(self, estimator: Estimator | None = None, scale: str | None = None) -> None:
        super().__init__()
        if scale not in (None, "layer", "row"):
            raise ValueError(f"scale must be None, 'layer' or 'row', not {scale!r}")
        self.estimator = estimator if estimator is not None else STE()
        self.scale = scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return binarize(w, self.estimator)
        with torch.no_grad():
            a = w.abs().mean() if self.scale == "layer" else _row_mean_abs(w)
            y = a * self.estimator.value(w)
        return with_surrogate(w, y, self.estimator)

    def extra_repr(self) -> str:
        return f"estimator={self.estimator}, scale={self.scale}"


class TWNWeight(WeightQuantizer):
    """TWN: a sign(w) where |w| > ratio * mean|w| (per layer, or per row), else 0."""

    levels = "ternary"

    def __init__(self, ratio: float = 0.7, per_row: bool = False,
                 estimator: Estimator | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.per_row = per_row
        self.estimator = estimator if estimator is not None else STE(clip=None)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = w.abs()
            delta = self.ratio * (_row_mean_abs(w) if self.per_row else a.mean())
            mask = (a > delta).to(w.dtype)
            if self.per_row:
                kept = _rows(a * mask).sum(dim=1) / _rows(mask).sum(dim=1).clamp(min=1.0)
                alpha = kept.reshape((-1,) + (1,) * (w.dim() - 1))
            else:
                alpha = (a * mask).sum() / mask.sum().clamp(min=1.0)
            y = alpha * torch.sign(w) * mask
        return with_surrogate(w, y, self.estimator)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, per_row={self.per_row}, estimator={self.estimator}"


class StatsTernaryWeight(WeightQuantizer):
    """BTNLG: a = factor * mean|w_row| per output row, w -> a round(clip(w / a, -1, 1))."""

    levels = "ternary"

    def __init__(self, factor: float = 4.0 / 3.0, estimator: Estimator | None = None) -> None:
        super().__init__()
        self.factor = factor
        self.estimator = estimator if estimator is not None else STE(clip=None)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            alpha = (self.factor * _row_mean_abs(w)).clamp(min=torch.finfo(w.dtype).tiny)
            y = alpha * torch.round(torch.clamp(w / alpha, -1.0, 1.0))
        return with_surrogate(w, y, self.estimator)

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}, estimator={self.estimator}"
