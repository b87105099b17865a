"""Bit-packing of ±1 / {-1, 0, +1} tensors, the layout every backend shares.

Layout (DESIGN.md, "Numerics"): bit 1 = +1, bit 0 = -1, LSB-first within little-endian 32-bit
words, along the last axis. A length K not a multiple of 32 is padded with 0 bits in *both*
operands, so the padding XORs to 0 and never changes `K - 2 * popcount(a ^ w)`.

Ternary values use two planes: `sign` (bit 1 = +1) and `mask` (bit 1 = nonzero). A zero has
sign bit 0 and mask bit 0. `mask is None` means "every one of the K positions is nonzero".
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 32


def n_words(k: int) -> int:
    return (int(k) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array along its last axis into uint32 words (LSB-first)."""
    bits = np.asarray(bits, dtype=bool)
    k = bits.shape[-1]
    w = n_words(k)
    padded = np.zeros(bits.shape[:-1] + (w * WORD_BITS,), dtype=bool)
    padded[..., :k] = bits
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(as_bytes).view("<u4").astype(np.uint32, copy=False)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of `pack_bits`: the first `k` bits of each row as booleans."""
    words = np.ascontiguousarray(np.asarray(words, dtype="<u4"))
    as_bytes = words.view(np.uint8)
    bits = np.unpackbits(as_bytes, axis=-1, bitorder="little")
    return bits[..., :k].astype(bool)


def pack_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Pack {-1, 0, +1} values into (sign, mask); mask is None when no value is 0."""
    values = np.asarray(values)
    sign = pack_bits(values > 0)
    nonzero = values != 0
    mask = None if bool(nonzero.all()) else pack_bits(nonzero)
    return sign, mask


def unpack_values(sign: np.ndarray, mask: np.ndarray | None, k: int) -> np.ndarray:
    """Inverse of `pack_values`, as int8 {-1, 0, +1}."""
    values = np.where(unpack_bits(sign, k), 1, -1).astype(np.int8)
    if mask is not None:
        values[~unpack_bits(mask, k)] = 0
    return values


def popcount_dot(
    a_sign: np.ndarray,
    a_mask: np.ndarray | None,
    w_sign: np.ndarray,
    w_mask: np.ndarray | None,
    k: int,
    max_elements: int = 1 << 22,
) -> np.ndarray:
    """Dot products of packed rows: a [N, W] x w [O, W] -> int64 [N, O].

    With masks m (nonzero in both operands): dot = popcount(m) - 2 * popcount(m & (a ^ w)).
    Without any mask this is the classic K - 2 * popcount(a ^ w). Words are visited one at a
    time (an [N, O] pass each, no reduction over a short axis) and N is chunked so the
    intermediates stay below `max_elements`.
    """
    n, words = a_sign.shape
    o = w_sign.shape[0]
    out = np.empty((n, o), dtype=np.int64)
    chunk = max(1, max_elements // max(1, o))
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        diff_count = np.zeros((sl.stop - sl.start, o), dtype=np.int32)
        valid = None if a_mask is None and w_mask is None else np.zeros_like(diff_count)
        for j in range(words):
            diff = a_sign[sl, j, None] ^ w_sign[None, :, j]
            if valid is not None:
                if a_mask is None:
                    m = np.broadcast_to(w_mask[None, :, j], diff.shape)
                elif w_mask is None:
                    m = np.broadcast_to(a_mask[sl, j, None], diff.shape)
                else:
                    m = a_mask[sl, j, None] & w_mask[None, :, j]
                valid += np.bitwise_count(m)
                diff &= m
            diff_count += np.bitwise_count(diff)
        total = k if valid is None else valid
        out[sl] = total - 2 * diff_count.astype(np.int64)
    return out
