"""NumPy models of the blocks' stream formats and arithmetic, for testbenches.

`encode`/`decode` convert values to and from the value codes of hw/specs.py; `frame_beats`
packs an (H, W, C) frame into a producer's beats; `window_dot` and `window_pool` are the plain
loops an engine and a max-pool must agree with (padded taps contribute nothing / never win).
"""

from __future__ import annotations

import math

import numpy as np

from .specs import Values, WindowSpec


def encode(values: np.ndarray, kind: Values) -> np.ndarray:
    """Values -> codes (int64)."""
    v = np.asarray(values, dtype=np.int64)
    if kind.kind == "bipolar":
        return (v > 0).astype(np.int64)
    if kind.kind == "ternary":
        return v + 1
    return v & ((1 << kind.bits) - 1)


def decode(codes: np.ndarray, kind: Values) -> np.ndarray:
    """Codes -> values (int64)."""
    c = np.asarray(codes, dtype=np.int64)
    if kind.kind == "bipolar":
        return np.where(c & 1, 1, -1)
    if kind.kind == "ternary":
        return c - 1
    if kind.signed:
        return np.where(c >> (kind.bits - 1), c - (1 << kind.bits), c)
    return c


def pack_lanes(codes: np.ndarray, bits: int) -> int:
    """A 1-D array of codes -> one integer, lane k at bits [k*bits, (k+1)*bits)."""
    return sum(int(c) << (k * bits) for k, c in enumerate(codes))


def unpack_lanes(word: int, lanes: int, bits: int) -> np.ndarray:
    mask = (1 << bits) - 1
    return np.array([(int(word) >> (k * bits)) & mask for k in range(lanes)], dtype=np.int64)


def frame_beats(frame: np.ndarray, kind: Values, lanes: int) -> list[int]:
    """(H, W, C) values -> beats of `lanes` codes, pixel-major, ceil(C / lanes) per pixel."""
    h, w, c = frame.shape
    nb = math.ceil(c / lanes)
    codes = np.zeros((h, w, nb * lanes), dtype=np.int64)
    codes[..., :c] = encode(frame, kind)
    return [pack_lanes(row, kind.bits) for row in codes.reshape(-1, lanes)]


def beats_frame(words: list[int], kind: Values, lanes: int, hw: tuple[int, int], channels: int
                ) -> np.ndarray:
    """Inverse of `frame_beats` for one frame of output beats."""
    h, w = hw
    nb = math.ceil(channels / lanes)
    codes = np.array([unpack_lanes(x, lanes, kind.bits) for x in words], dtype=np.int64)
    return decode(codes.reshape(h, w, nb * lanes)[..., :channels], kind)


def _taps(frame_hw, win: WindowSpec):
    h, w = frame_hw
    kh, kw = win.kernel
    (sy, sx), (dy, dx) = win.strides, win.dilations
    pt, pl = win.pads[0], win.pads[1]
    oh, ow = win.out_hw
    for oy in range(oh):
        for ox in range(ow):
            for i in range(kh):
                for j in range(kw):
                    y, x = oy * sy - pt + i * dy, ox * sx - pl + j * dx
                    if 0 <= y < h and 0 <= x < w:
                        yield oy, ox, i * kw + j, y, x


def window_dot(frame: np.ndarray, weights: np.ndarray, win: WindowSpec) -> np.ndarray:
    """frame (H, W, C), weights (O, taps, C) -> accumulators (OH, OW, O); a padded tap holds
    `win.pad_value` in every channel."""
    oh, ow = win.out_hw
    out = np.zeros((oh, ow, weights.shape[0]), dtype=np.int64)
    if win.pad_value:
        frame = np.pad(frame, ((win.pads[0], win.pads[2]), (win.pads[1], win.pads[3]), (0, 0)),
                       constant_values=win.pad_value)
        win = WindowSpec(kernel=win.kernel, strides=win.strides, dilations=win.dilations,
                         out_hw=win.out_hw)
    for oy, ox, tap, y, x in _taps(frame.shape[:2], win):
        out[oy, ox] += weights[:, tap, :].astype(np.int64) @ frame[y, x].astype(np.int64)
    return out


def window_pool(frame: np.ndarray, win: WindowSpec, select_min=None) -> np.ndarray:
    """Max (or per-channel min) over each window's real taps: (OH, OW, C)."""
    oh, ow = win.out_hw
    c = frame.shape[2]
    hi = np.full((oh, ow, c), np.iinfo(np.int64).min)
    lo = np.full((oh, ow, c), np.iinfo(np.int64).max)
    for oy, ox, _, y, x in _taps(frame.shape[:2], win):
        hi[oy, ox] = np.maximum(hi[oy, ox], frame[y, x])
        lo[oy, ox] = np.minimum(lo[oy, ox], frame[y, x])
    if select_min is None:
        return hi
    return np.where(np.asarray(select_min, dtype=bool), lo, hi)
