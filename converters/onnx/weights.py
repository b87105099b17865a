"""Classify a weight tensor, one output row (or channel) at a time.

What exporters write (DESIGN.md): {±1}; {±a}; per-row ±a_n (torch folds a BN or an XNOR-net
scale into the weights); {-a, 0, +a} ternary (zeros may be -0.0). Each row must use one
magnitude; the row's magnitude becomes a per-row float scale on the integer accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import EdgeError


@dataclass
class ClassifiedWeights:
    values: np.ndarray  # int8 [O, K] in {-1, 0, +1}
    scale: np.ndarray | None  # float32 [O]; None when every magnitude is exactly 1
    kind: str  # "binary" | "ternary"


def classify(w: np.ndarray, where: str) -> ClassifiedWeights:
    """w: [O, ...] float weights, already in the layer's (out, in...) order."""
    w = np.asarray(w)
    if not np.issubdtype(w.dtype, np.floating) and not np.issubdtype(w.dtype, np.integer):
        raise EdgeError(f"{where}weights of dtype {w.dtype} are not numeric")
    rows = w.reshape(w.shape[0], -1).astype(np.float64)
    if not np.all(np.isfinite(rows)):
        raise EdgeError(f"{where}weights hold NaN or infinity")
    mag = np.abs(rows)
    nonzero = mag != 0  # -0.0 counts as 0
    # per-row magnitude: the largest; every nonzero entry must equal it exactly
    a = mag.max(axis=1)
    bad = nonzero & (mag != a[:, None])
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        vals = np.unique(mag[r][nonzero[r]])
        shown = ", ".join(f"{v:.6g}" for v in vals[:4]) + (", ..." if len(vals) > 4 else "")
        raise EdgeError(
            f"{where}weights are not binary or ternary: row {r} has {len(vals)} distinct "
            f"magnitudes ({shown}); expected ±a or {{-a, 0, +a}} per row"
        )
    values = (np.sign(rows) * nonzero).astype(np.int8)
    empty = ~nonzero.any(axis=1)
    a = np.where(empty, 1.0, a).astype(np.float32)
    scale = None if bool(np.all(a == 1.0)) else a
    kind = "ternary" if bool((~nonzero).any()) else "binary"
    return ClassifiedWeights(values, scale, kind)


INT8_MIN, INT8_MAX = -128, 127


def int8_codes(w: np.ndarray) -> np.ndarray | None:
    """w [O, ...] as int8 [O, K] when every value is an integer in [-128, 127] (an 8-bit
    layer's codes, e.g. a QONNX 8-bit Quant's weights once their scale was moved onto the
    accumulator); None otherwise. The product with integer data is then exact."""
    rows = np.asarray(w).reshape(np.shape(w)[0], -1).astype(np.float64)
    if not np.all(np.isfinite(rows)) or np.any(rows != np.round(rows)):
        return None
    if rows.size and (rows.max() > INT8_MAX or rows.min() < INT8_MIN):
        return None
    return rows.astype(np.int8)
