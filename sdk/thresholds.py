"""Exact integer thresholds for "affine float ops, then sign" on integer accumulators.

A binary layer produces an integer accumulator x per channel. Before the next sign the source
model applies float ops (a per-row weight scale, a bias, BatchNormalization, a comparison
constant). Per channel those compose into

    g(x) = (P * x + Q) / sqrt(S) + R        with P, Q, R, S rational and S > 0,

where every float32 parameter enters as its exact rational value (S is float32(var + eps), the
value every float32 runtime takes the square root of). The sign of g at an integer x is decided
exactly (no float rounding luck), so thresholds are right at tau - 1, tau and tau + 1.

`Threshold` semantics, per channel (flip = False):  out = +1 if x >= tau else -1;
(flip = True): out = +1 if x <= tau else -1.  When `zero` is set the single accumulator value
next to tau on the -1 side (tau - 1, or tau + 1 when flipped) gives 0: what `Sign(0) = 0`
computes on an exact tie.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


def exact(value: float | np.floating) -> Fraction:
    """The exact rational value of a float (float32 converts exactly to float64)."""
    f = float(value)
    if not np.isfinite(f):
        raise ValueError(f"non-finite parameter {f}")
    return Fraction(f)


@dataclass(frozen=True)
class AffineSqrt:
    """g(x) = (p*x + q) / sqrt(s) + r for one channel, exact."""

    p: Fraction = Fraction(1)
    q: Fraction = Fraction(0)
    r: Fraction = Fraction(0)
    s: Fraction = Fraction(1)

    def mul(self, a: Fraction) -> AffineSqrt:
        return AffineSqrt(self.p * a, self.q * a, self.r * a, self.s)

    def add(self, c: Fraction) -> AffineSqrt:
        return AffineSqrt(self.p, self.q, self.r + c, self.s)

    def div(self, c: Fraction) -> AffineSqrt:
        if c == 0:
            raise ValueError("division by zero")
        return self.mul(1 / c)

    def neg(self) -> AffineSqrt:
        return self.mul(Fraction(-1))

    def batchnorm(self, gamma: Fraction, beta: Fraction, mean: Fraction, v: Fraction) -> AffineSqrt:
        """gamma * (g - mean) / sqrt(v) + beta, with v = float32(var + eps) > 0."""
        if v <= 0:
            raise ValueError("variance + epsilon must be positive")
        if self.s != 1 and self.r != mean:
            raise ValueError("two BatchNormalization steps on one accumulator are not supported")
        if self.s != 1:
            # (p x + q)/sqrt(s) scaled again by 1/sqrt(v): sqrt(s) * sqrt(v) = sqrt(s * v).
            return AffineSqrt(gamma * self.p, gamma * self.q, beta, self.s * v)
        return AffineSqrt(gamma * self.p, gamma * (self.q + self.r - mean), beta, v)

    def sign_at(self, x: int) -> int:
        """Exact sign of g(x) in {-1, 0, +1}."""
        a = self.p * x + self.q  # sign(g) = sign(a + r * sqrt(s)) since sqrt(s) > 0
        b = self.r
        sa = (a > 0) - (a < 0)
        sb = (b > 0) - (b < 0)
        if self.s == 1:
            t = a + b
            return (t > 0) - (t < 0)
        if sa == 0 or sb == 0 or sa == sb:
            return sa if sa != 0 else sb
        lhs, rhs = a * a, b * b * self.s
        if lhs == rhs:
            return 0
        return sa if lhs > rhs else sb

    @property
    def direction(self) -> int:
        """+1 if g increases with x, -1 if it decreases, 0 if constant."""
        return (self.p > 0) - (self.p < 0)


def _boundary(pred, lo: int, hi: int, increasing: bool) -> int:
    """Smallest x in [lo, hi] with pred(x) (increasing pred) or largest (decreasing pred).

    Returns hi + 1 / lo - 1 when pred holds nowhere in range.
    """
    if increasing:
        if not pred(hi):
            return hi + 1
        a, b = lo, hi  # pred(b) is true
        while a < b:
            mid = (a + b) // 2
            if pred(mid):
                b = mid
            else:
                a = mid + 1
        return a
    if not pred(lo):
        return lo - 1
    a, b = lo, hi  # pred(a) is true
    while a < b:
        mid = (a + b + 1) // 2
        if pred(mid):
            a = mid
        else:
            b = mid - 1
    return a


@dataclass(frozen=True)
class ChannelThreshold:
    tau: int
    flip: bool
    zero: bool


def solve_threshold(g: AffineSqrt, mode: str, lo: int, hi: int) -> ChannelThreshold:
    """Integer threshold of one channel for x in [lo, hi].

    mode: "sign" (Sign: +1, 0, -1), "ge0" (+1 iff g >= 0, else -1), "gt0" (+1 iff g > 0).
    """
    if mode not in ("sign", "ge0", "gt0"):
        raise ValueError(f"unknown binarisation mode {mode!r}")
    if mode == "ge0":
        pos = lambda x: g.sign_at(x) >= 0
    else:
        pos = lambda x: g.sign_at(x) > 0
    d = g.direction
    if d == 0:
        s = g.sign_at(lo)
        if s == 0 and mode == "sign":
            raise ValueError("the channel is constant 0 after Sign (not binary)")
        return ChannelThreshold(lo if pos(lo) else hi + 1, False, False)
    flip = d < 0
    tau = _boundary(pos, lo, hi, increasing=not flip)
    zero = False
    if mode == "sign":
        nxt = tau + 1 if flip else tau - 1
        zero = lo <= nxt <= hi and g.sign_at(nxt) == 0
    return ChannelThreshold(tau, flip, zero)


def apply_threshold(
    acc: np.ndarray, tau: np.ndarray, flip: np.ndarray, zero: np.ndarray, axis: int = 1
) -> np.ndarray:
    """Vectorised `Threshold` on an integer accumulator [N, C, ...] -> int8 {-1, 0, +1}."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    tau_b = np.asarray(tau, dtype=np.int64).reshape(shape)
    flip_b = np.asarray(flip, dtype=bool).reshape(shape)
    zero_b = np.asarray(zero, dtype=bool).reshape(shape)
    plus = np.where(flip_b, acc <= tau_b, acc >= tau_b)
    out = np.where(plus, 1, -1).astype(np.int8)
    tie = zero_b & (acc == np.where(flip_b, tau_b + 1, tau_b - 1))
    out[tie] = 0
    return out
