"""Binding (block-wise circular convolution) and unbinding (block-wise circular correlation).

For one-hot blocks both reduce to index arithmetic mod L, which is what C and RTL implement
(no multiplier); general blocks use the FFT, whose per-row results do not depend on the batch
they are computed in (checked by the tests), so decoding stays independent per query.

Conventions, per block of length L:
    bind:   out[l] = sum_j x[j] * y[(l - j) mod L]        (hot positions add)
    unbind: out[l] = sum_j x[j] * s[(j + l) mod L]        (x's hot position is subtracted)
"""

from __future__ import annotations

import numpy as np


def bind_indices(a: np.ndarray, b: np.ndarray, L: int) -> np.ndarray:
    """Hot positions of the binding of one-hot blocks: (a + b) mod L."""
    return np.mod(np.asarray(a, dtype=np.int64) + np.asarray(b, dtype=np.int64), L)


def unbind_indices(s: np.ndarray, a: np.ndarray, L: int) -> np.ndarray:
    """Hot positions left after unbinding one-hot `a` from one-hot `s`: (s - a) mod L."""
    return np.mod(np.asarray(s, dtype=np.int64) - np.asarray(a, dtype=np.int64), L)


def product_indices(indices: np.ndarray, combos: np.ndarray, L: int) -> np.ndarray:
    """Hot positions [K, B] of the products of combos [K, F] of an index table [F, M, B]."""
    combos = np.asarray(combos, dtype=np.int64)
    pos = np.zeros((combos.shape[0], indices.shape[2]), dtype=np.int64)
    for f in range(indices.shape[0]):
        pos += indices[f, combos[:, f]]
    return np.mod(pos, L)


def bind_blocks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Block-wise circular convolution of [..., B, L] arrays (broadcasting)."""
    L = np.shape(x)[-1]
    return np.fft.irfft(np.fft.rfft(x) * np.fft.rfft(y), n=L)


def unbind_blocks(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Block-wise circular correlation: remove estimate `x` from `s` ([..., B, L])."""
    L = np.shape(s)[-1]
    return np.fft.irfft(np.conj(np.fft.rfft(x)) * np.fft.rfft(s), n=L)


def product_vectors(dense: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """Product vectors [K, B, L] of combos [K, F] of dense codebooks [F, M, B, L]."""
    combos = np.asarray(combos, dtype=np.int64)
    spec = np.fft.rfft(dense[0, combos[:, 0]])
    for f in range(1, dense.shape[0]):
        spec = spec * np.fft.rfft(dense[f, combos[:, f]])
    return np.fft.irfft(spec, n=dense.shape[-1])


def encode(codebooks_indices: np.ndarray, combos: np.ndarray, L: int) -> np.ndarray:
    """Clean one-hot query vectors [K, B*L] of combos [K, F] (the exact product vectors)."""
    pos = product_indices(codebooks_indices, combos, L)
    out = np.zeros((pos.shape[0], pos.shape[1], L), dtype=np.float64)
    np.put_along_axis(out, pos[..., None], 1.0, axis=-1)
    return out.reshape(pos.shape[0], -1)
