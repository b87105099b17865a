"""Default folding: PE and SIMD per engine layer so the network fits a device's LUTs.

The network's initiation interval is its slowest stage, so folding aims at one common cycle
target T: each layer takes the cheapest (PE, SIMD) that finishes a frame within T, and T is
the smallest value whose summed LUT estimate fits the budget. SIMD stops at 64 (DESIGN.md:
the registered popcount tree holds ~100 MHz on UP5K up to about that width) and at the channels
of one pixel (an engine word never spans two pixels); PE stops at the layer's outputs.

8-bit layers on integer data (issue #11) multiply: each of their PE x SIMD lanes is an x * w
product, an SB_MAC16 on the UP5K (yosys `synth_ice40 -dsp`), which has 8. The default folding
therefore also keeps the summed products within DEFAULT_DSPS, slowing the network's target
cycle if it must (the stream stages' multipliers of real-valued layers are not counted here:
the synthesis report's `fits` checks the real DSP count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...hw.specs import ebr_count

MAX_SIMD = 64
MAX_PE = 64

# Logic-cell budget of the default folding: 3/4 of an iCE40 UP5K's 5280, leaving room for
# placement (the estimate below is calibrated against yosys synth_ice40 on the examples).
DEVICE_LCS = {"up5k": 5280, "hx8k": 7680}
DEFAULT_BUDGET = int(DEVICE_LCS["up5k"] * 0.75)
MAX_FRAME_EBR = 8  # a frame buffer needing more block RAMs than this lives in registers
DEFAULT_DSPS = 8  # the UP5K's SB_MAC16 blocks (iCE40 UltraPlus DS1056)


@dataclass(frozen=True)
class LayerShape:
    """What folding needs to know about one engine layer."""

    out_channels: int
    in_channels: int  # channels per input pixel (the SIMD ceiling)
    taps: int
    out_pixels: int
    int_bits: int | None  # value bits of a multi-bit input, None for ±1 inputs
    acc_bits: int
    value_bits: int = 1  # bits per stored input value (frame word = SIMD * value_bits)
    in_pixels: int = 1  # pixels of the input frame
    weight_bits: int = 1  # 8: int8 weight codes (issue #11), a product per lane

    def cycles(self, pe: int, simd: int) -> int:
        return (self.out_pixels * math.ceil(self.out_channels / pe) * self.taps
                * math.ceil(self.in_channels / simd))

    def products(self, pe: int, simd: int) -> int:
        """Parallel x * w multipliers: integer data times int8 codes (±1 data need none)."""
        return pe * simd if self.weight_bits == 8 and self.int_bits is not None else 0

    def luts(self, pe: int, simd: int) -> float:
        """Logic cells (LUT4 + unpaired FFs), roughly: per lane, per PE, per engine, frame.

        Measured with yosys synth_ice40 (flattening off): a ±1 lane costs ~3.4 LUT + 3 FF
        (XNOR + registered tree), a B-bit lane ~2.3 (B+1) LUT + 1.3 (B+1) FF; each PE adds an
        accumulator and threshold (~3 LUT per accumulator bit); an engine ~300 LUT of control.
        A frame buffer that cannot use a few block RAMs lives in registers (~1.6 LC per bit).
        """
        if self.weight_bits == 8:
            # a +-w mux (±1 data) or a B x 8 product in LUTs, then a tree of 9 + B bits
            bits = 1 if self.int_bits is None else self.int_bits
            lane = (bits * 8 if self.int_bits is not None else 9) + (2.3 + 0.39) * (bits + 9)
        elif self.int_bits is None:
            lane = 3.4 + 0.3 * 3
        else:
            lane = (2.3 + 0.3 * 1.3) * (self.int_bits + 1)
        cost = pe * simd * lane + pe * 3 * self.acc_bits + 300
        width = simd * self.value_bits
        depth = 2 * self.in_pixels * math.ceil(self.in_channels / simd)
        if ebr_count(width, depth) > MAX_FRAME_EBR:
            cost += 1.6 * width * depth
        return cost


def _options(limit: int, cap: int) -> list[int]:
    opts = {v for v in (1 << k for k in range(12)) if v <= min(limit, cap)}
    if limit <= cap:
        opts.add(limit)
    return sorted(opts)


def pairs(layer: LayerShape) -> list[tuple[int, int]]:
    return [(pe, simd) for pe in _options(layer.out_channels, MAX_PE)
            for simd in _options(layer.in_channels, MAX_SIMD)]


def _pick(layer: LayerShape, target: int) -> tuple[int, int]:
    ok = [p for p in pairs(layer) if layer.cycles(*p) <= target]
    if not ok:
        return max(pairs(layer), key=lambda p: (-layer.cycles(*p), -p[1]))
    # cheapest; among equals prefer wide SIMD (one popcount tree beats many accumulators)
    return min(ok, key=lambda p: (layer.luts(*p), layer.cycles(*p), -p[1]))


def default_folding(layers: list[LayerShape], budget: float = DEFAULT_BUDGET,
                    dsps: int = DEFAULT_DSPS) -> list[tuple[int, int]]:
    """(PE, SIMD) per layer: the smallest common cycle target that fits `budget` LUTs and
    `dsps` parallel products of 8-bit layers on integer data."""
    targets = sorted({layer.cycles(*p) for layer in layers for p in pairs(layer)})
    best = [_pick(layer, targets[-1]) for layer in layers]
    lo, hi = 0, len(targets) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        choice = [_pick(layer, targets[mid]) for layer in layers]
        pairs_ = list(zip(layers, choice, strict=True))
        if sum(la.luts(*c) for la, c in pairs_) <= budget and \
                sum(la.products(*c) for la, c in pairs_) <= dsps:
            best, hi = choice, mid - 1
        else:
            lo = mid + 1
    return best
