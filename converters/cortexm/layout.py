"""Where each tensor lives in C, and how weights and thresholds are re-laid to match.

A tensor's storage never depends on its logical shape, only on the layer that produced it:
Flatten and Reshape keep the IR's C-order flat index, so they are free views of the same
buffer and only consumers that read bits need to know the producer's (channels, pixels)
grouping. Packed bit positions follow `edge_sdk.bitpack` (bit 1 = +1, LSB first, pad 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ... import bitpack
from ...ir import layers as L

BITS = "bits"
INT_DTYPES = ("int8", "int16", "int32")


@dataclass(frozen=True)
class Storage:
    """One tensor in C.

    dtype "int8"/"int16"/"int32": integers in the IR's C order (only the model input is
    narrower than int32). dtype "bits": ±1 / ternary values of a producer with `channels`
    channels at `pixels` positions (1 for 1-D tensors), packed per pixel over channels:
    [pixels][cw] uint32 words with channel c at bit c of the pixel's words; then, when `mask`,
    a second plane of the same shape with bit 1 = nonzero. A flat C-order index i of any view
    is channel i // pixels at pixel i % pixels.
    """

    buffer: str
    dtype: str
    size: int  # number of values
    channels: int = 0
    pixels: int = 1
    mask: bool = False

    @property
    def is_bits(self) -> bool:
        return self.dtype == BITS

    @property
    def cw(self) -> int:
        return bitpack.n_words(self.channels)

    @property
    def plane_words(self) -> int:
        return self.pixels * self.cw

    @property
    def words(self) -> int:
        """uint32 words this tensor occupies in the arena."""
        if self.is_bits:
            return self.plane_words * (2 if self.mask else 1)
        return self.size  # arena tensors are int32


def _planes(values: np.ndarray, ternary: bool) -> np.ndarray:
    """Pack int8 {-1, 0, +1} rows along the last axis: sign plane, then mask plane if ternary."""
    sign = bitpack.pack_bits(values > 0)
    if not ternary:
        return sign.ravel()
    return np.concatenate([sign.ravel(), bitpack.pack_bits(values != 0).ravel()])


def weight_values(weights: L.Weights) -> np.ndarray:
    """The layer's weights as int8 [O, K] in the IR's (im2col) order."""
    return np.asarray(weights.unpack(), dtype=np.int8)


def dense_bits_positions(k: int, src: Storage) -> np.ndarray:
    """The packed activation bit that each of a Dense's `k` columns (IR C order) reads."""
    i = np.arange(k)
    return (i % src.pixels) * src.cw * 32 + i // src.pixels


def dense_bits_weights(values: np.ndarray, src: Storage) -> np.ndarray:
    """Weights of a Dense reading a packed tensor: column i goes to bit (i % P) * CW*32 + i // P.

    Positions no column maps to (channel padding) stay 0 in both planes, like the activations.
    """
    rows, k = values.shape
    scattered = np.zeros((rows, src.plane_words * 32), dtype=np.int8)
    scattered[:, dense_bits_positions(k, src)] = values
    return _planes(scattered, bool((values == 0).any()))


def conv_bits_weights(values: np.ndarray, channels: int, kh: int, kw: int) -> np.ndarray:
    """[O, C*KH*KW] (c, kh, kw order) -> [O][KH][KW][CW] words, channels packed per tap."""
    rows = values.shape[0]
    taps = values.reshape(rows, channels, kh, kw).transpose(0, 2, 3, 1)
    return _planes(np.ascontiguousarray(taps), bool((values == 0).any()))


def int_input_weights(values: np.ndarray) -> np.ndarray:
    """Weights of a multi-bit-input layer: [O][ceil(K/32)] words in the IR's column order."""
    return _planes(values, bool((values == 0).any()))


def threshold_table(layer: L.Threshold, lo: int, hi: int) -> tuple[np.ndarray, bool, bool]:
    """int32 table for `kernels_threshold.threshold_pack` -> (table, any flip, any zero).

    tau is clamped to [lo - 1, hi + 1] (same outputs for every x in [lo, hi]); a channel
    whose tau was clamped cannot reach its tie value, so its `zero` flag is dropped.
    """
    tau = np.asarray(layer.tau, dtype=np.int64)
    flip = np.asarray(layer.flip, dtype=bool)
    zero = np.asarray(layer.zero, dtype=bool).copy()
    clamped = np.clip(tau, lo - 1, hi + 1)
    zero &= clamped == tau
    s = np.where(flip, -1, 1).astype(np.int64)
    parts = [s * clamped]
    any_flip, any_zero = bool(flip.any()), bool(zero.any())
    if any_flip:
        parts.append(s)
    if any_zero:
        parts.append(bitpack.pack_bits(zero).view(np.int32).astype(np.int64))
    return np.concatenate(parts).astype(np.int32), any_flip, any_zero
