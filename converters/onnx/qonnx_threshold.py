"""The exact float32 threshold of a monotone two-level quantiser.

A binarising QONNX quantiser (or a Trunc feeding one) maps float32 x to two levels -a and +a,
monotonically, with its own float rounding on the way (x / s + z, round, clamp...). Instead of
reasoning about that rounding, search the float32 line itself: ordered as integers, it has 2**32
values, so 33 bisection steps per channel give the smallest float32 t at which the op's output
changes. Then `op(x) == +a  <=>  x >= t` (or `x < t` for a decreasing op) holds for every finite
float32 x, which the frontend reads as a plain comparison and folds into an exact integer
threshold, like any BatchNorm + sign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_MAX = np.float32(np.finfo(np.float32).max)


def _key(x: np.ndarray) -> np.ndarray:
    """Order-preserving int64 key of float32 values (-0.0 sorts just below +0.0)."""
    b = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(b < 0, -(b & 0x7FFFFFFF) - 1, b)


def _unkey(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, np.int64)
    b = np.where(k < 0, (-(k + 1)) | -0x80000000, k)
    return b.astype(np.int32).view(np.float32)


@dataclass(frozen=True)
class Binarisation:
    """`+a where x >= t` (increasing) or `+a where x < t` (decreasing), per element of t.

    An element whose output does not depend on x at all (`constant`) is compared as x = 0:
    no finite float32 t would give the same answer for every x, and an infinite one is not a
    usable threshold.
    """

    threshold: np.ndarray  # float32, the op's parameter shape
    magnitude: np.ndarray  # float32 a > 0, same shape
    increasing: bool
    constant: np.ndarray  # bool, same shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The levels this binarisation gives (what the op gives, for finite float32 x)."""
        x = np.where(self.constant, np.float32(0), x)
        hit = x >= self.threshold if self.increasing else x < self.threshold
        return np.where(hit, self.magnitude, -self.magnitude)


def search(fn: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...]) -> Binarisation:
    """Threshold of `fn` (elementwise, monotone, two levels ±a) for each element of `shape`.

    `fn` receives float32 arrays of `shape` and returns the levels; raises ValueError when its
    levels are not ±a or its direction differs between elements.
    """
    lo = np.full(shape, -_MAX, np.float32)
    hi = np.full(shape, _MAX, np.float32)
    f_lo = np.asarray(fn(lo))
    f_hi = np.asarray(fn(hi))
    a = np.maximum(np.abs(f_lo), np.abs(f_hi))
    levels = np.concatenate([f_lo.reshape(-1), f_hi.reshape(-1)])
    if not np.all(np.isfinite(levels)) or np.any(a == 0):
        raise ValueError("the output levels are not finite and nonzero")
    if np.any((np.abs(f_lo) != a) | (np.abs(f_hi) != a)):
        raise ValueError("the two output levels are not -a and +a")
    rising = f_hi > f_lo
    falling = f_hi < f_lo
    if np.any(rising) and np.any(falling):
        raise ValueError("the direction differs between channels (a negative scale)")
    increasing = not bool(np.any(falling))
    # smallest x whose output equals the output at +max (the "high end" level)
    target = f_hi
    k_lo = _key(lo)  # fn(lo) != target unless the element is constant (handled below)
    k_hi = _key(hi)  # fn(hi) == target
    while True:
        open_ = k_hi - k_lo > 1
        if not open_.any():
            break
        mid = (k_lo + k_hi) // 2
        at = np.asarray(fn(_unkey(mid))) == target
        k_hi = np.where(open_ & at, mid, k_hi)
        k_lo = np.where(open_ & ~at, mid, k_lo)
    constant = f_lo == f_hi
    t = _unkey(k_hi).astype(np.float32) + np.float32(0.0)
    # constant elements compare x = 0: "0 >= 0" / "0 < 1" hold, "0 >= 1" / "0 < 0" do not
    plus = f_hi > 0
    t = np.where(constant, np.where(plus == increasing, 0.0, 1.0), t)
    return Binarisation(t.astype(np.float32), a.astype(np.float32), increasing,
                        np.asarray(constant, bool))
