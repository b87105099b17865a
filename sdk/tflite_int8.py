"""TFLite's int8 integer kernels, bit for bit (LCE int8 conversion, issue #11).

LCE's converter with int8 input/output and a default int8 range makes every real-valued op
around the binary convolutions TFLite integer arithmetic: int8 codes q with a per-tensor
(per-channel for conv weights) scale s and zero point z, real = s * (q - z). The IR holds such
a tensor *centred*: the integers q - z (kind "int", range [-128 - z, 127 - z]), so an 8-bit
conv reads it as `Int8Weights` with zero padding, a max-pool is a max-pool, LCE's int8
LceQuantize (bit 1 iff q < z) is the "ge0" binarisation, DEQUANTIZE is a float `Affine` and
QUANTIZE a `Quantize` (rounding "tflite"), both below.
The ops below are integer already in the source, so `run` and `run --fixed-point` compute
the same thing, and a backend implements them with int32/int64 arithmetic only.

Primitives (tensorflow/lite/kernels/internal/common.h, quantization_util.cc; the interpreter
is built without TFLITE_SINGLE_ROUNDING, so the multiplier rounds twice):

    QuantizeMultiplier(m): m = q * 2**e, q in [0.5, 1) (frexp); M = round_half_away(q * 2**31)
        (M == 2**31 -> M /= 2, e += 1); e < -31 -> M = 0, e = 0. Returns (M, e).
    SRDHM(a, b) = (a * b + (2**30 if a*b >= 0 else 1 - 2**30)) / 2**31, C division (towards
        zero); a == b == INT32_MIN -> INT32_MAX.
    RDBPOT(x, n) = (x >> n) + ((x & (2**n - 1)) > ((2**n - 1) >> 1) + (x < 0)).
    MBQM(x, M, e) = RDBPOT(SRDHM(x * 2**max(e, 0), M), max(-e, 0)).

Layers (all on centred int8 values; each output is clamped to the activation range [lo, hi]
in codes, then centred again with its zero point z):

    TflRequant  (CONV_2D / FULLY_CONNECTED output, MUL by a per-channel constant, MEAN below)
        y_c = clamp(z + MBQM(x_c * f_c + b_c, M_c, e_c), lo, hi) - z
        conv: x = the accumulator sum (q_in - z_in) * w, f = 1, b = the int32 bias,
              M_c, e_c = QuantizeMultiplier(s_in * s_w[c] / s_out) (double); the product
              goes through ruy, whose last shift rounds half up: MBQM_ruy(x, M, e) =
              (SRDHM(x * 2**max(e, 0), M) + 2**(n-1)) >> n, n = max(-e, 0) (`rounding`
              "ruy"; measured: MBQM's half-away RDBPOT differs on negative ties, e.g. -28.5);
        FC:   the same, with QuantizeMultiplier(float32(s_in * s_w) / s_out) for per-tensor
              weights (GetQuantizedConvolutionMultipler);
        MUL:  x = q - z_x, f_c = k_c - z_k (the constant's codes), b = 0,
              M, e = QuantizeMultiplier(s_x * s_k / s_out).
    TflAdd      (ADD of two tensors, or of a tensor and a per-channel constant)
        v_i = MBQM(x_i * 2**20, M_i, e_i) with M_i, e_i = QuantizeMultiplier(s_i / (2 max s)),
        y = clamp(z + MBQM(v_1 + v_2, M_o, e_o), lo, hi) - z,
        M_o, e_o = QuantizeMultiplier(2 max s / (2**20 s_out)); a constant operand's v_2 is
        computed once, with the same formula, as `const` (per channel).
    TflPRelu    (PRELU, alpha per channel)
        y = clamp(z + (MBQM(x, M1, e1) if x >= 0 else MBQM(x * a_c, M2, e2)), lo, hi) - z,
        a_c = alpha codes - z_alpha, M1 = QM(s_in / s_out), M2 = QM(s_in * s_alpha / s_out)
        with the ratios in float32 (activations.cc), unlike conv/MUL/ADD (double).

int8 MEAN over H, W (LCE writes it without keep_dims): one requantisation of the centred sum
S = sum(q - z_in) by a multiplier with 1/n folded in (`mean_multiplier`): (M0, e0) =
QuantizeMultiplier(s_in / s_out), k = min(floor(log2 n), 32, 31 + e0), M = (M0 * 2**k) // n
(not renormalised, so MBQM's first rounding is coarser: 374 * 2.5 / 25 = 37.4 -> 38),
e = e0 - k; y = clamp(z + MBQM(S, M, e), lo, hi) - z. Measured bit for bit against LCE's
interpreter on n = 9, 16, 25 and s_in / s_out = 1, 2.5 (every output of three fixtures); a
properly renormalised QuantizeMultiplier(s_in / (n s_out)) or a float mean disagree there.
The frontend emits a per-channel sum (`GroupConv2d` of ones) and a `TflRequant`.

DEQUANTIZE (int8 -> float), measured against LCE's interpreter (x86): float32(q * s) +
float32(-z * s), two float32 roundings, as TFLite's NEON kernel computes it (x86 builds
emulate NEON); the reference kernel's float32(s * (q - z)) differs in the last bit. The scalar
tail of a tensor whose size is not a multiple of 8 takes the reference formula in TFLite and
is not modelled (every map of LCE's int8 networks has a multiple of 8 values per sample).
The frontend emits `Affine([Add(z), Mul(s), Add(-z * s)])` on the centred values.

QUANTIZE (float -> int8): q = clamp(round_half_away(double(x) / double(s)) + z, -128, 127)
(AffineQuantize), golden.quantize_tflite; in `--fixed-point` mode the Quantize rule of
sdk/fixedpoint.py on the fixed-point input instead (the float region is approximate there).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import EdgeError

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
ADD_LEFT_SHIFT = 20


# ---------------------------------------------------------------------------- primitives
def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: (M, e) with m ~= M * 2**(e - 31), M in [2**30, 2**31)."""
    if m == 0.0:
        return 0, 0
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"multiplier {m!r} must be positive and finite")
    q, e = math.frexp(m)
    qf = q * (1 << 31)
    mult = math.floor(qf + 0.5)  # std::round: half away from zero (qf > 0)
    if mult == 1 << 31:
        mult //= 2
        e += 1
    if e < -31:
        return 0, 0
    if e > 30:
        raise ValueError(f"multiplier {m!r} is too large for TFLite's int32 requantisation")
    return mult, e


def srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul on int32 values held as int64 (elementwise)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b  # |a * b| <= 2**62: fits int64
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    q = np.where(s >= 0, s >> 31, -((-s) >> 31))  # C division by 2**31: towards zero
    return np.where((a == INT32_MIN) & (b == INT32_MIN), np.int64(INT32_MAX), q)


def rdbpot(x: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """RoundingDivideByPOT: x / 2**n rounded half away from zero (n >= 0)."""
    x = np.asarray(x, np.int64)
    n = np.asarray(n, np.int64)
    mask = (np.int64(1) << n) - 1
    rem = x & mask
    thr = (mask >> 1) + (x < 0)
    return (x >> n) + (rem > thr)


def _check32(x: np.ndarray, what: str) -> np.ndarray:
    if x.size and (int(x.max()) > INT32_MAX or int(x.min()) < INT32_MIN):
        raise EdgeError(f"{what}: an int32 intermediate overflows (TFLite would wrap)")
    return x


def mbqm(x: np.ndarray, mult: np.ndarray, shift: np.ndarray, what: str = "requant"
         ) -> np.ndarray:
    """MultiplyByQuantizedMultiplier(x, M, e) (int32 x, elementwise/broadcast)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xs = _check32(np.asarray(x, np.int64) << left, what)
    return rdbpot(srdhm(xs, mult), right)


def mean_multiplier(scale_ratio: float, n: int) -> tuple[int, int]:
    """(M, e) of TFLite's int8 MEAN over n positions (module docstring)."""
    m0, e0 = quantize_multiplier(scale_ratio)
    k = max(0, min(n.bit_length() - 1, 32, 31 + e0))
    return (m0 << k) // n, e0 - k


def mbqm_ruy(x: np.ndarray, mult: np.ndarray, shift: np.ndarray, what: str = "requant"
             ) -> np.ndarray:
    """ruy's multiplier (CONV_2D, FULLY_CONNECTED on x86): SRDHM as MBQM, then a right shift
    that rounds half up, (h + 2**(n-1)) >> n, where MBQM's RDBPOT rounds half away from 0."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    h = srdhm(_check32(np.asarray(x, np.int64) << left, what), mult)
    return (h + ((np.int64(1) << right) >> 1)) >> right


def act_range(activation: str, scale: float, zp: int, what: str) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs (codes)."""
    lo, hi = -128, 127

    def q(v: float) -> int:
        r = float(np.float32(v) / np.float32(scale))
        return zp + math.floor(abs(r) + 0.5) * (1 if r >= 0 else -1)

    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, q(0.0)), hi
    if activation == "RELU6":
        return max(lo, q(0.0)), min(hi, q(6.0))
    if activation == "RELU_N1_TO_1":
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise EdgeError(f"{what}: fused activation {activation} on int8 data is not supported")


# ---------------------------------------------------------------------------- layers
def run(layer, args: list[np.ndarray]) -> np.ndarray:
    """One TFLite int8 layer (sdk.ir.layers.TFLITE_INT8) on centred int8 data; int64."""
    from .ir import layers as L

    what = f"layer '{layer.name}'"
    x = np.asarray(args[0]).astype(np.int64)
    shape = (1, -1) + (1,) * (x.ndim - 2)

    def pc(v) -> np.ndarray:
        return np.asarray(v, np.int64).reshape(shape)

    zp = int(layer.zero_point)
    if isinstance(layer, L.TflRequant):
        acc = _check32(x * pc(layer.factor) + pc(layer.bias), what)
        if layer.rounding not in ("", "ruy"):
            raise EdgeError(f"{what}: unknown rounding {layer.rounding!r}")
        fn = mbqm_ruy if layer.rounding == "ruy" else mbqm
        y = fn(acc, pc(layer.mult), pc(layer.shift), what)
    elif isinstance(layer, L.TflAdd):
        ls = ADD_LEFT_SHIFT
        v1 = mbqm(x << ls, pc(layer.mult1), pc(layer.shift1), what)
        if len(args) == 2:
            v2 = mbqm(np.asarray(args[1]).astype(np.int64) << ls, pc(layer.mult2),
                      pc(layer.shift2), what)
        else:
            v2 = pc(layer.const)
        y = mbqm(_check32(v1 + v2, what), pc(layer.mult_out), pc(layer.shift_out), what)
    elif isinstance(layer, L.TflPRelu):
        pos = mbqm(x, pc(layer.mult1), pc(layer.shift1), what)
        neg = mbqm(_check32(x * pc(layer.alpha), what), pc(layer.mult2), pc(layer.shift2), what)
        y = np.where(x >= 0, pos, neg)
    else:
        raise EdgeError(f"{what}: unknown TFLite int8 layer {type(layer).__name__}")
    return np.clip(y + zp, int(layer.lo), int(layer.hi)) - zp


def infer(layer, ins):
    """Output facts (graph.infer) of a TFLite int8 layer, checking its inputs."""
    from .ir import layers as L
    from .ir.graph import TensorInfo

    where = f"layer '{layer.name}'" + (f" (from '{layer.source}')" if layer.source else "")
    n_in = 2 if isinstance(layer, L.TflAdd) and layer.const is None else 1
    if len(ins) != n_in:
        raise EdgeError(f"{where}: takes {n_in} input(s), got {len(ins)}")
    x = ins[0]
    if any(i.kind != "int" for i in ins):
        raise EdgeError(f"{where}: needs integer data, got {', '.join(i.kind for i in ins)}")
    if n_in == 2 and ins[1].shape != x.shape:
        raise EdgeError(f"{where}: shape mismatch: {list(x.shape)} and {list(ins[1].shape)}")
    c = x.shape[0] if x.shape else 1
    for name, v in vars(layer).items():
        if isinstance(v, np.ndarray) and v.shape not in ((c,), ()):
            raise EdgeError(f"{where}: shape mismatch: {name} has {v.size} values for {c} "
                            "channels")
    zp, lo, hi = int(layer.zero_point), int(layer.lo), int(layer.hi)
    if not -128 <= lo <= hi <= 127 or not -128 <= zp <= 127:
        raise EdgeError(f"{where}: bad int8 range [{lo}, {hi}] or zero point {zp}")
    return TensorInfo(x.shape, "int", lo - zp, hi - zp)
