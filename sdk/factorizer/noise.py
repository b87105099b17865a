"""Test and benchmark queries: clean product vectors and the two noise models of FACTORIZER.md.

- `movedP`: each block's hot position is replaced, with probability P, by a position drawn
  uniformly from 0..L-1 (it may land on the same one);
- `softK`: block-wise softmax, inverse temperature K, of (one-hot + Gaussian noise, std 0.3),
  the way a network's output becomes a GSBC query.
Named noise strings ("clean", "moved0.1", "soft8") keep the bench and the tests on one spelling.
"""

from __future__ import annotations

import re

import numpy as np

from edge_sdk.errors import EdgeError

from .binding import product_indices
from .codebooks import Codebooks

SOFT_STD = 0.3


def onehot_blocks(pos: np.ndarray, L: int) -> np.ndarray:
    """Hot positions [N, B] -> one-hot queries [N, B*L]."""
    out = np.zeros((*pos.shape, L), dtype=np.float64)
    np.put_along_axis(out, pos[..., None], 1.0, axis=-1)
    return out.reshape(pos.shape[0], -1)


def moved(pos: np.ndarray, p: float, L: int, rng: np.random.Generator) -> np.ndarray:
    """One-hot queries whose blocks' hot positions move to a random one with probability p."""
    hit = rng.random(pos.shape) < p
    new = rng.integers(0, L, size=pos.shape)
    return onehot_blocks(np.where(hit, new, pos), L)


def soft(
    pos: np.ndarray, k: float, L: int, rng: np.random.Generator, std: float = SOFT_STD
) -> np.ndarray:
    """GSBC queries: per block softmax(k * (one-hot + N(0, std^2)))."""
    logits = onehot_blocks(pos, L).reshape(*pos.shape, L) + std * rng.standard_normal(
        (*pos.shape, L)
    )
    z = k * logits
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).reshape(pos.shape[0], -1)


def parse_noise(noise: str) -> tuple[str, float]:
    """'clean' | 'movedP' | 'softK' -> (kind, parameter)."""
    if noise == "clean":
        return "clean", 0.0
    m = re.fullmatch(r"(moved|soft)([0-9]*\.?[0-9]+)", noise)
    if not m:
        raise EdgeError(f"unknown noise {noise!r}: use 'clean', 'movedP' or 'softK'")
    return m.group(1), float(m.group(2))


def make_queries(
    codebooks: Codebooks, n: int, noise: str = "clean", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`n` random products of one-hot codebooks with `noise`: (queries [n, B*L], truth [n, F])."""
    if not codebooks.is_onehot:
        raise EdgeError("make_queries needs one-hot codebooks")
    kind, param = parse_noise(noise)
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, codebooks.M, size=(n, codebooks.F), dtype=np.int64)
    pos = product_indices(codebooks.indices, truth, codebooks.L)
    if kind == "clean":
        return onehot_blocks(pos, codebooks.L), truth
    if kind == "moved":
        return moved(pos, param, codebooks.L, rng), truth
    return soft(pos, param, codebooks.L, rng), truth
