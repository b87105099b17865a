"""Fixed-point rules for the real-valued tensors between binary layers (issue #11).

Deployed binary networks (Bi-Real Net, ReActNet) keep real-valued tensors between their binary
convolutions: residual sums, per-channel affine results, (R)PReLU outputs, global averages.
`edge-sdk run` evaluates those in float32 as the source does; `edge-sdk run --fixed-point` runs
what the targets compute, with the rules below, recorded in the lowered IR (`passes/fixed_point`).

Representation. A real-valued tensor is an int32 tensor `q` with a per-tensor binary point
`frac` (real = q * 2**-frac); `frac` may be negative. No calibration set: every tensor has a
static worst-case bound B (|real| <= B) derived from the integer ranges of the binary layers, and

    frac = min(FRAC_MAX, 30 - ceil(log2(B + 1)))        (FRAC_MAX = 24)

so |q| < 2**30 plus rounding slack: int32 never overflows and sums of two fit. FRAC_MAX only
stops tiny bounds from asking for pointless bits; it was 16 at first, which left deep residual
networks (a QuickNet of 13 blocks, bounds ~1000) with a resolution of 2**-16 where float32 has
about 2**-17 at |x| ~ 100, so a few signs per image fell the other way and `run --fixed-point`
agreed with `run` on only ~90 % of the argmaxes of a random QuickNet; at 24 (frac 20 there)
every output was identical on 128 images (bench/quicknet_targets.py measures it). Saturation never
happens; the golden model asserts it (an overflow would be a bug in the bounds, not data).

Rounding is always "half up" through an arithmetic shift: round(v / 2**s) = (v + 2**(s-1)) >> s
(floor division, so -2.5 -> -2 and 2.5 -> 3).

Affine (BatchNorm, per-channel Mul/Add) of an integer accumulator (frac_in = 0) or a fixed
tensor (frac_in), per channel c, with real scale a_c and bias b_c:

    y = (x * m_c + r_c) >> s        m_c = round(a_c * 2**(s + frac - frac_in))
                                    r_c = round(b_c * 2**(s + frac)) + 2**(s - 1)

x int32, m_c int32 (|m_c| < 2**31), x * m_c + r_c in int64 (checked when lowering); s in
[1, SHIFT_MAX] is the largest that keeps every |m_c| < 2**30. a_c, b_c come from the exact
rational composition of the source's float32 ops (thresholds.AffineSqrt), rounded in float64.

Add of two tensors (fracs fa, fb) to the output frac f: each operand is aligned first,
align(x, fi -> f) = x << (f - fi) when f >= fi, else (x + 2**(fi-f-1)) >> (fi - f); then summed.
Concat aligns every input the same way, to the frac of the largest input bound.

PReLU (same frac in and out): y = x if x >= 0 else (x * a_c + 2**14) >> 15,
a_c = round(slope_c * 2**15) (int32; the product in int64). ReLU is PReLU with slope 0.

Global average over n = H*W positions (same frac): y = (sum * R + 2**(S-1)) >> S with
R = round(2**S / n), S = GAP_SHIFT = 24; sum and product in int64.

Windowed average (AvgPool), input frac f_in, output frac f = max(f_in, frac_for(B)) (B the
input's real bound, which also bounds the mean), at most f_in + GAP_SHIFT - 1: the same frac
for a fixed-point input (already at frac_for of its bound), finer for integers (an average of
accumulators keeps its fraction instead of being rounded to an integer). Per output position

    y = (sum * R_n + 2**(s-1)) >> s        R_n = round(2**S / n), s = S - (f - f_in)

with the window's sum over its taps inside the map (padded taps hold 0), n its divisor (the
kernel size with count_include_pad, else the taps inside the map), S = GAP_SHIFT as for the
global average; sum and product in int64. One rounding: the result is within half a step
plus |sum| * |R_n - 2**S / n| / 2**s of the exact mean, and exact up to that half step for n
a power of two (R_n exact).

Quantize (the input of an 8-bit layer, issue #11): a fixed tensor x (frac f) onto the integer
grid of a quantiser with real scale s, zero point z and codes [lo, hi]:

    q = clip(((x * M + 2**(S-1)) >> S) + z, lo, hi) - z        M = round(2**(S - f) / s)

M is the exact rational 2**(S-f)/s rounded half to even, S in [1, QUANT_SHIFT_MAX] the largest
that keeps M < 2**30 (S = 1 with M < 2**31 when even that is too large; beyond, refused); the
product in int64 (|x| < 2**31, so |x * M| < 2**62). Rounding is half up (the shift
rule above), so a value exactly halfway between two codes may round differently from the
source's half-to-even (QONNX Quant); M's own rounding moves x * 2**-f / s by at most
|x| / 2**(S+1). The clip saturates: values beyond the code range take lo or hi, as the source
does. The result is q - z, integers the 8-bit layer multiplies exactly.

Sign (or a comparison) of a fixed tensor, after optional per-channel float ops (ReActNet's
RSign x - t): an exact integer threshold on q, solved with thresholds.solve_threshold on the
exact real value q * 2**-frac, so Sign(0) = 0 ties are reproduced as the Threshold layer does.
"""

from __future__ import annotations

import math

import numpy as np

FRAC_MAX = 24
SHIFT_MAX = 32
PRELU_SHIFT = 15
GAP_SHIFT = 24
INT32_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1


def frac_for(bound: float) -> int:
    """Binary point of a tensor whose real values satisfy |v| <= bound."""
    return min(FRAC_MAX, 30 - math.ceil(math.log2(bound + 1)))


def round_shift(v: np.ndarray | int, s: int):
    """round(v / 2**s), half up, by an arithmetic shift (s >= 0)."""
    if s <= 0:
        return v
    return (v + (1 << (s - 1))) >> s


def align(q: np.ndarray, frac_in: int, frac_out: int) -> np.ndarray:
    """Re-express q (binary point frac_in) at frac_out: left shift, or rounded right shift."""
    if frac_out >= frac_in:
        return q << (frac_out - frac_in)
    return round_shift(q, frac_in - frac_out)


def align_bound(m: int, frac_in: int, frac_out: int) -> int:
    """Largest |align(q)| over |q| <= m (alignment is monotone and odd up to rounding)."""
    if frac_out >= frac_in:
        return m << (frac_out - frac_in)
    return int(round_shift(m, frac_in - frac_out))


def affine_params(scale: np.ndarray, bias: np.ndarray, frac_in: int,
                  frac: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(m_c, r_c, s) of the affine rule above for real per-channel scale and bias."""
    top = float(np.max(np.abs(scale), initial=0.0)) * 2.0 ** (frac - frac_in)
    s = SHIFT_MAX if top == 0 else 29 - math.floor(math.log2(top))
    s = max(1, min(SHIFT_MAX, s))
    m = np.array([round(float(a) * 2.0 ** (s + frac - frac_in)) for a in scale], dtype=np.int64)
    r = np.array([round(float(b) * 2.0 ** (s + frac)) + (1 << (s - 1)) for b in bias],
                 dtype=np.int64)
    return m, r, s


def affine_bound(m_in: int, mult: np.ndarray, add: np.ndarray, shift: int) -> int:
    """max |(x * m_c + r_c) >> s| over |x| <= m_in, exactly (Python integers)."""
    worst = 0
    for m, r in zip(mult.tolist(), add.tolist()):
        worst = max(worst, abs((m_in * abs(m) + r) >> shift), abs((-m_in * abs(m) + r) >> shift))
    return worst


def affine(x: np.ndarray, mult: np.ndarray, add: np.ndarray, shift: int) -> np.ndarray:
    """y = (x * m_c + r_c) >> s per channel (axis 1), int64 arithmetic."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x.astype(np.int64) * mult.reshape(shape) + add.reshape(shape)) >> shift


def prelu_params(slope: np.ndarray) -> np.ndarray:
    return np.array([round(float(a) * 2.0 ** PRELU_SHIFT) for a in slope], dtype=np.int64)


def prelu(x: np.ndarray, slope_q: np.ndarray) -> np.ndarray:
    shape = (1, -1) + (1,) * (x.ndim - 2)
    neg = round_shift(x.astype(np.int64) * slope_q.reshape(shape), PRELU_SHIFT)
    return np.where(x >= 0, x, neg)


def prelu_bound(m_in: int, slope_q: np.ndarray) -> int:
    top = int(np.max(np.abs(slope_q), initial=0))
    return max(m_in, int(round_shift(m_in * top, PRELU_SHIFT)) + 1)


def gap_multiplier(n: int) -> int:
    return round(2.0 ** GAP_SHIFT / n)


def gap(x: np.ndarray) -> np.ndarray:
    """Mean over the last two axes of int data: (sum * R + 2**(S-1)) >> S, int64."""
    n = x.shape[-2] * x.shape[-1]
    total = x.astype(np.int64).sum(axis=(-2, -1))
    return round_shift(total * gap_multiplier(n), GAP_SHIFT)


def gap_bound(m_in: int, n: int) -> int:
    return int(round_shift(n * m_in * gap_multiplier(n), GAP_SHIFT))


def avg_pool_counts(hw: tuple[int, int], kernel, strides, pads,
                    include_pad: bool) -> np.ndarray:
    """Divisor n of every output position [OH, OW] of a windowed average pool (see AvgPool)."""
    (h, w), (kh, kw), (sh, sw) = hw, kernel, strides
    t, lft, b, r = pads
    oh, ow = (h + t + b - kh) // sh + 1, (w + lft + r - kw) // sw + 1
    if include_pad:
        return np.full((oh, ow), kh * kw, dtype=np.int64)
    h0 = np.arange(oh) * sh - t
    w0 = np.arange(ow) * sw - lft
    nh = np.minimum(h0 + kh, h) - np.maximum(h0, 0)
    nw = np.minimum(w0 + kw, w) - np.maximum(w0, 0)
    return (nh[:, None] * nw[None, :]).astype(np.int64)


def window_sums(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Sum of each window of [N, C, H, W] integers (padded taps 0), int64 [N, C, OH, OW]."""
    from numpy.lib.stride_tricks import sliding_window_view

    t, lft, b, r = pads
    a = np.pad(np.asarray(x).astype(np.int64), ((0, 0), (0, 0), (t, b), (lft, r)))
    win = sliding_window_view(a, tuple(kernel), axis=(2, 3))
    return win[:, :, ::strides[0], ::strides[1]].sum(axis=(4, 5))


def avg_pool_frac(bound: float, frac_in: int) -> int:
    """Output binary point of an AvgPool reading data of real bound `bound` at `frac_in`."""
    return max(frac_in, min(frac_for(bound), frac_in + GAP_SHIFT - 1))


def avg_pool(x: np.ndarray, kernel, strides, pads, include_pad: bool,
             shift: int = GAP_SHIFT) -> np.ndarray:
    """The AvgPool rule: (window sum * R_n + 2**(s-1)) >> s per output position, int64
    (s = GAP_SHIFT - (f - f_in))."""
    counts = avg_pool_counts(x.shape[-2:], kernel, strides, pads, include_pad)
    mult = np.vectorize(gap_multiplier, otypes=[np.int64])(counts)
    return round_shift(window_sums(x, kernel, strides, pads) * mult, shift)


def avg_pool_bound(m_in: int, counts: np.ndarray, shift: int = GAP_SHIFT) -> int:
    """Largest |avg_pool| over |x| <= m_in."""
    return max(int(round_shift(int(n) * m_in * gap_multiplier(int(n)), shift))
               for n in np.unique(counts))


QUANT_SHIFT_MAX = 62
QUANT_MULT_LIMIT = 1 << 30


def quantize_params(scale: float, frac_in: int) -> tuple[int, int]:
    """(M, S) of the Quantize rule for a quantiser of real scale `scale` reading data at
    binary point `frac_in`; ValueError when even S = 1 needs M >= 2**31."""
    from fractions import Fraction

    real = Fraction(2) ** -frac_in / Fraction(float(scale))
    best = None
    for s in range(1, QUANT_SHIFT_MAX + 1):
        m = round(real * 2**s)  # Fraction rounds half to even
        if m >= QUANT_MULT_LIMIT:
            break
        best = (int(m), s)
    if best is None:
        m = round(real * 2)
        if m > INT32_MAX:
            raise ValueError(f"quantiser scale {scale:g} is too small for data at frac "
                             f"{frac_in}: the multiplier does not fit int32")
        best = (int(m), 1)
    return best


def quantize(x: np.ndarray, mult: int, shift: int, zero_point: int, lo: int,
             hi: int) -> np.ndarray:
    """q - z with q = clip(((x * M + 2**(S-1)) >> S) + z, lo, hi), int64 arithmetic."""
    q = round_shift(np.asarray(x).astype(np.int64) * np.int64(mult), shift) + zero_point
    return np.clip(q, lo, hi) - zero_point


def check_int32(q: np.ndarray, where: str) -> np.ndarray:
    """The bounds promise no saturation; an overflow is a bug, never silently wrapped."""
    if q.size and (int(q.max()) > INT32_MAX or int(q.min()) < -INT32_MAX - 1):
        raise AssertionError(f"{where}: fixed-point value outside int32 (bounds are wrong)")
    return q
