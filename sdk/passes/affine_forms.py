"""Per-channel exact forms (thresholds.AffineSqrt) of an `Affine` layer's float ops."""

from __future__ import annotations

import numpy as np

from ..ir import layers as L
from ..thresholds import AffineSqrt, exact


def channel_forms(ops: list[L.FloatOp], channels: int) -> list[AffineSqrt]:
    """Compose the ops exactly, one form per channel."""
    forms = [AffineSqrt() for _ in range(channels)]
    for op in ops:
        if isinstance(op, L.BatchNorm):
            # Every float32 runtime takes sqrt of float32(var + eps): use that exact value.
            v = (op.var.astype(np.float32) + np.float32(op.eps)).astype(np.float32)
            forms = [
                f.batchnorm(exact(op.gamma[c]), exact(op.beta[c]), exact(op.mean[c]), exact(v[c]))
                for c, f in enumerate(forms)
            ]
        elif isinstance(op, L.Mul):
            forms = [f.mul(exact(op.values[c])) for c, f in enumerate(forms)]
        elif isinstance(op, L.Add):
            forms = [f.add(exact(op.values[c])) for c, f in enumerate(forms)]
        elif isinstance(op, L.Div):
            forms = [f.div(exact(op.values[c])) for c, f in enumerate(forms)]
        else:  # pragma: no cover - closed set
            raise TypeError(type(op).__name__)
    return forms
