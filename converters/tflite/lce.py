"""Larq Compute Engine conventions: custom-option attributes and the bitpacked filter layout.

LCE packs ±1 values along the channel axis into little-endian int32 words, LSB first, with
bit 1 = -1 and bit 0 = +1 (edge-sdk's own packing, `bitpack.py`, is the opposite: bit 1 = +1),
and pads a partial last word with 0 bits. A bitpacked `LceBconv2d` filter is OHWI with the
channel axis packed: [O, kh, kw, ceil(channels_in / 32)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_sdk.errors import EdgeError

from .schema import ACTIVATIONS, PADDING

MAX_WINDOW = 1 << 12


@dataclass(frozen=True)
class BconvAttributes:
    channels_in: int | None
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: str
    pad_values: int
    activation: str


@dataclass(frozen=True)
class PoolAttributes:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: str


def _int(opts: dict, key: str, where: str, default: int | None = None, lo: int = 1) -> int:
    v = opts.get(key, default)
    if v is None:
        raise EdgeError(f"{where}attribute '{key}' is missing")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_WINDOW:
        raise EdgeError(f"{where}attribute '{key}' = {v!r} is not an integer in [{lo}, "
                        f"{MAX_WINDOW}]")
    return v


def _enum(opts: dict, key: str, table: dict[int, str], where: str, default: str) -> str:
    v = opts.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, str) and v.upper() in table.values():
        return v.upper()
    if isinstance(v, int) and not isinstance(v, bool) and v in table:
        return table[v]
    raise EdgeError(f"{where}attribute '{key}' = {v!r} is not supported")


def bconv_attributes(opts: dict, where: str) -> BconvAttributes:
    channels = opts.get("channels_in")
    if channels is not None:
        channels = _int(opts, "channels_in", where, lo=1)
    pad_values = _int(opts, "pad_values", where, default=0, lo=0)
    if pad_values not in (0, 1):
        raise EdgeError(f"{where}attribute 'pad_values' = {pad_values} must be 0 or 1")
    return BconvAttributes(
        channels,
        (_int(opts, "stride_height", where), _int(opts, "stride_width", where)),
        (_int(opts, "dilation_height_factor", where, default=1),
         _int(opts, "dilation_width_factor", where, default=1)),
        _enum(opts, "padding", PADDING, where, "SAME"),
        pad_values,
        _enum(opts, "fused_activation_function", ACTIVATIONS, where, "NONE"),
    )


def pool_attributes(opts: dict, where: str) -> PoolAttributes:
    return PoolAttributes(
        (_int(opts, "filter_height", where), _int(opts, "filter_width", where)),
        (_int(opts, "stride_height", where), _int(opts, "stride_width", where)),
        _enum(opts, "padding", PADDING, where, "SAME"),
    )


def unpack_bits(words: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """LCE words [..., W] -> (bits [..., count], padding bits [..., 32 W - count]), uint8,
    LSB of word 0 first."""
    w = np.ascontiguousarray(words, dtype="<i4").view(np.uint8)
    bits = np.unpackbits(w, axis=-1, bitorder="little")
    return bits[..., :count], bits[..., count:]


def bconv_groups(data: np.ndarray, type_code: int, channels: int, out_channels: int,
                 where: str) -> int:
    """Groups of an LceBconv2d, LCE's rule (bconv2d.cc Prepare): a bitpacked filter with fewer
    words per tap than the input has is grouped, groups = input words / filter words, each
    group a multiple of 32 channels and an equal share of the outputs. (LCE's converter keeps
    other grouped binary convs as float CONV_2D.)"""
    words = math.ceil(channels / 32)
    if type_code != 2 or data.ndim != 4 or data.shape[3] in (0, words):
        return 1
    groups = words // data.shape[3]
    if words % data.shape[3] or channels % groups or (channels // groups) % 32 \
            or out_channels % groups:
        raise EdgeError(f"{where}shape mismatch: a bitpacked filter of {data.shape[3]} words per "
                        f"tap for {channels} input and {out_channels} output channels is "
                        "neither one group nor groups of a multiple of 32 channels")
    return groups


def filter_values(data: np.ndarray, type_code: int, channels: int, where: str) -> np.ndarray:
    """An LceBconv2d filter as int8 ±1 values [O, kh, kw, channels]."""
    if data.ndim != 4:
        raise EdgeError(f"{where}filter must be [O, kh, kw, I], got shape {list(data.shape)}")
    if type_code == 2:  # bitpacked int32
        words = math.ceil(channels / 32)
        if data.shape[3] != words:
            raise EdgeError(f"{where}shape mismatch: a bitpacked filter for {channels} channels "
                            f"has {words} words per tap, not {data.shape[3]}")
        bits, pad = unpack_bits(data, channels)
        if pad.any():
            raise EdgeError(f"{where}bitpacked filter has nonzero padding bits (LCE writes 0)")
        return (1 - 2 * bits.astype(np.int8)).astype(np.int8)
    if type_code == 0:  # float ±1
        if data.shape[3] != channels:
            raise EdgeError(f"{where}shape mismatch: the filter takes {data.shape[3]} channels, "
                            f"the data has {channels}")
        if not np.all(np.abs(data) == 1):
            raise EdgeError(f"{where}float filter of LceBconv2d must hold only +1 and -1")
        return np.sign(data).astype(np.int8)
    raise EdgeError(f"{where}filter of TFLite type {type_code} is not supported (int32 "
                    "bitpacked or float32)")
