"""The block-wise softmax between a network's integer scores and the fixed-point decoder.

Why a table and not exp: the decoder normalises every block itself (fixed.normalise_queries),
so the softmax only has to give entries proportional to exp(logit - block max). With the
logit in fixed point, exp(-d / 2^frac) for the integer distance d from the block's maximum
is one small table, identical on the host, in C and in a ROM, with no float anywhere:

1. logit: t = floor((mul[e] * z + add[e]) / 2^shift) for the element's integer score z
   (the network's accumulator), mul/add the element's float affine (the BatchNorm/Mul/Add ops
   the source applies to the scores) scaled by 2^(frac + shift), add holding the rounding
   half; shift is the largest (<= 16) for which |mul * z| + |add| < 2^31 over the scores'
   range, so the product fits a signed 32-bit multiply.
2. per block of L entries: d = max(t) - t (>= 0).
3. entry = table[d] if d < len(table) else 0, table[d] = floor(2^EXP_BITS * exp(-d / 2^frac)
   + 1/2), cut where it reaches 0. The block maximum gets 2^EXP_BITS, so every block has mass.

The result (integers < 2^15, the query the decoders take) goes to fixed.decode unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

FRAC_BITS = 6  # logits in 1/64 nat: the table has ~666 entries (1.3 KB)
EXP_BITS = 14  # the block maximum maps to 2^14, below the decoders' 2^15 input bound
MAX_SHIFT = 16
ACC_LIMIT = 1 << 31


def exp_table(frac: int = FRAC_BITS, exp_bits: int = EXP_BITS) -> np.ndarray:
    """table[d] = floor(2^exp_bits * exp(-d / 2^frac) + 1/2) while that is > 0."""
    n = math.ceil((exp_bits + 1) * math.log(2) * (1 << frac)) + 2
    d = np.arange(n, dtype=np.float64)
    t = np.floor(np.exp(-d / (1 << frac)) * (1 << exp_bits) + 0.5).astype(np.int64)
    return t[t > 0]


@dataclass(frozen=True, eq=False)
class BlockSoftmax:
    B: int
    L: int
    frac: int
    shift: int
    mul: np.ndarray  # int64 [B*L]
    add: np.ndarray  # int64 [B*L]
    table: np.ndarray  # int64 [E], decreasing, table[0] = 2^EXP_BITS
    z_lo: int  # the integer score range the widths were checked for
    z_hi: int

    def logits(self, z: Any) -> np.ndarray:
        z = np.asarray(z, dtype=np.int64).reshape(-1, self.B * self.L)
        if z.size and (z.min() < self.z_lo or z.max() > self.z_hi):
            raise EdgeError(f"block softmax: scores outside [{self.z_lo}, {self.z_hi}]")
        return (self.mul * z + self.add) >> self.shift  # arithmetic shift: floor

    def apply(self, z: Any) -> np.ndarray:
        """Integer scores [N, B*L] -> integer queries [N, B*L] for fixed.decode."""
        t = self.logits(z).reshape(-1, self.B, self.L)
        d = t.max(axis=2, keepdims=True) - t
        e = len(self.table)
        q = np.where(d < e, self.table[np.minimum(d, e - 1)], 0)
        return q.reshape(-1, self.B * self.L)

    def to_json(self) -> dict:
        return {"B": self.B, "L": self.L, "frac": self.frac, "shift": self.shift,
                "mul": self.mul.tolist(), "add": self.add.tolist(),
                "table": self.table.tolist(), "z_lo": self.z_lo, "z_hi": self.z_hi}

    @classmethod
    def from_json(cls, d: dict) -> BlockSoftmax:
        return cls(int(d["B"]), int(d["L"]), int(d["frac"]), int(d["shift"]),
                   np.asarray(d["mul"], dtype=np.int64), np.asarray(d["add"], dtype=np.int64),
                   np.asarray(d["table"], dtype=np.int64), int(d["z_lo"]), int(d["z_hi"]))


def from_affine(a: np.ndarray, b: np.ndarray, B: int, L: int, z_lo: int, z_hi: int,
                frac: int = FRAC_BITS) -> BlockSoftmax:
    """The block softmax of logits a * z + b (float, per element) for integer z in range."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != (B * L,) or b.shape != (B * L,):
        raise EdgeError(f"block softmax: {a.size} scores for B={B} blocks of L={L}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise EdgeError("block softmax: the scores' scale or bias is not finite")
    zmax = max(abs(int(z_lo)), abs(int(z_hi)), 1)
    for shift in range(MAX_SHIFT, -1, -1):
        unit = float(1 << (frac + shift))
        mul = np.round(a * unit)
        add = np.round(b * unit) + (1 << shift >> 1)
        if np.all(np.abs(mul) * zmax + np.abs(add) < ACC_LIMIT):
            return BlockSoftmax(B, L, frac, shift, mul.astype(np.int64), add.astype(np.int64),
                                exp_table(frac), int(z_lo), int(z_hi))
    raise EdgeError(f"block softmax: logits up to {float(np.max(np.abs(a)) * zmax):.3g} do not "
                    f"fit 32-bit fixed point at 2^-{frac}")
