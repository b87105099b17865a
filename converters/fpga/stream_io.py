"""Host side of the design's streams: model inputs -> input beats, output beats -> scores.

Both directions work from the manifest's JSON layouts (plan.Layout.to_json), so the cocotb
testbench, the Amaranth fast path and a board driver share one definition. Input beats: per
pixel (row-major), `beats_per_pixel` beats of `lanes` two's-complement values of `value_bits`
each, lane 0 in the low bits, padded lanes 0; a `perm` in the input layout names the IR index
of each streamed value (absent: the tensor is [C, H, W] of the frame). Output beats: `lanes` signed 32-bit values per
beat, in the same pixel-major order; `perm` puts each value back at its IR (C-order) index.
"""

from __future__ import annotations

import math

import numpy as np

OUT_BITS = 32


def encode_inputs(layout: dict, q: np.ndarray) -> list[int]:
    """Integer inputs [N, *shape] (already range-checked) -> input beats for all N."""
    h, w, c = layout["frame"]
    n = q.shape[0]
    if "perm" in layout:  # e.g. an NHWC input, streamed in its own order
        phys = q.reshape(n, -1)[:, np.asarray(layout["perm"], dtype=np.int64)].reshape(n, h, w, c)
    elif len(layout["shape"]) == 3:
        phys = q.reshape(n, c, h, w).transpose(0, 2, 3, 1)
    else:
        phys = q.reshape(n, 1, 1, c)
    lanes, vb = layout["lanes"], layout["value_bits"]
    beats = layout["beats_per_pixel"]
    padded = np.zeros((n, h, w, beats * lanes), dtype=np.int64)
    padded[..., :c] = phys
    codes = (padded & ((1 << vb) - 1)).reshape(-1, lanes)
    weights = [1 << (k * vb) for k in range(lanes)]
    return [sum(int(v) * wt for v, wt in zip(row, weights, strict=True)) for row in codes]


def beats_per_inference(layout: dict, direction: str = "in") -> int:
    h, w, _ = layout["frame"]
    return h * w * layout["beats_per_pixel"]


def decode_outputs(layout: dict, words: list[int], n: int) -> np.ndarray:
    """Output beats of n inferences -> int64 [n, *shape] in IR order."""
    h, w, c = layout["frame"]
    lanes, beats = layout["lanes"], layout["beats_per_pixel"]
    per = h * w * beats
    if len(words) < n * per:
        raise ValueError(f"expected {n * per} output beats, got {len(words)}")
    vals = np.empty((n * per, lanes), dtype=np.int64)
    mask = (1 << OUT_BITS) - 1
    for k, word in enumerate(words[:n * per]):
        for lane in range(lanes):
            v = (int(word) >> (lane * OUT_BITS)) & mask
            vals[k, lane] = v - (1 << OUT_BITS) if v >> (OUT_BITS - 1) else v
    phys = vals.reshape(n, h, w, beats * lanes)[..., :c]
    perm = np.asarray(layout["perm"], dtype=np.int64)
    size = math.prod(layout["shape"])
    out = np.empty((n, size), dtype=np.int64)
    out[:, perm] = phys.reshape(n, -1)
    return out.reshape((n, *layout["shape"]))
