"""The IR: typed layers between frontends and backends.

Two stages share these dataclasses. A frontend emits the *source* form: integer-valued layers
(weights as int8 {-1, 0, +1}) plus `Affine` (the float ops the source applies to an
accumulator) and `Binarize` (Sign or a comparison). The passes lower it to the *target* form that
the golden model and every backend run: `Threshold` (integer thresholds), `Scores` (integer
scores with their float post-ops), and `PackedWeights`. Tensors are named; a layer reads
`inputs` and writes `output`, so graphs that are not chains fit later without a new format.

Networks with real-valued tensors between binary layers (residual shortcuts, RPReLU, averages;
`REAL_VALUED` below) keep them as layers that carry both the source's float parameters (the
faithful golden mode) and, after `passes.fixed_point`, their fixed-point parameters (the
`--fixed-point` mode and the targets; rules in sdk/fixedpoint.py). Grouped and depthwise
binary convs are `GroupConv2d`.

8-bit first and last layers (QuickNet, ReActNet, Bi-Real keep them): `Dense`/`Conv2d` with
`Int8Weights` (never packed; their per-channel scale is the next Affine/Scores op, so BN + sign
still folds to integer thresholds), and `Quantize`, which puts a real-valued tensor on the
integer grid an 8-bit layer reads.

Layout: activations are NCHW (conv) or NC (dense), batch first; the batch is free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..bitpack import pack_values, unpack_values

IR_VERSION = 1


# ---------------------------------------------------------------------------- weights
@dataclass
class IntWeights:
    """Weights as int8 {-1, 0, +1}, one row per output channel ([O, K], im2col order)."""

    values: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def ternary(self) -> bool:
        return bool((self.values == 0).any())

    def unpack(self) -> np.ndarray:
        return self.values

    def pack(self) -> PackedWeights:
        sign, mask = pack_values(self.values)
        return PackedWeights(sign=sign, mask=mask, k=self.k)


@dataclass
class PackedWeights:
    """Bit planes (bitpack.py layout): sign [O, W] uint32, mask [O, W] or None (binary)."""

    sign: np.ndarray
    mask: np.ndarray | None
    k: int

    @property
    def rows(self) -> int:
        return int(self.sign.shape[0])

    @property
    def ternary(self) -> bool:
        return self.mask is not None

    def unpack(self) -> np.ndarray:
        return unpack_values(self.sign, self.mask, self.k)

    def pack(self) -> PackedWeights:
        return self


@dataclass
class Int8Weights:
    """8-bit weights (issue #11: the first conv and the last dense of QuickNet/ReActNet-style
    networks): int8 codes in [-128, 127], one row per output channel ([O, K], im2col order),
    never bit-packed. Symmetric quantisers (narrow range, and the SDK's own calibration) stay
    in [-127, 127]; Brevitas' non-narrow 8-bit weights do reach -128. The real weight is code * s_o; the per-output-channel scale s_o is not
    stored here but applied by the float ops that follow (an `Affine`'s first `Mul`, or
    `Scores`), so BatchNorm + sign after the layer still folds into exact integer thresholds.

    `float_values`/`unit` are set when the source layer was a float layer quantised with a
    calibration set (converters/onnx/calibrate.py): the faithful
    golden mode then computes the source's float32 product x . float_values and expresses it
    in accumulator units (divided by `unit`, float32 [O]: the real value of one accumulator
    step), so the same following ops apply in both modes.
    """

    values: np.ndarray
    float_values: np.ndarray | None = None
    unit: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    @property
    def ternary(self) -> bool:
        return False

    @property
    def int8(self) -> bool:
        return True

    @property
    def row_l1(self) -> int:
        """Largest sum of |w| over a row: |acc| <= row_l1 * max|x| (accumulator bound)."""
        return int(np.abs(self.values.astype(np.int64)).sum(axis=1).max(initial=0))

    def unpack(self) -> np.ndarray:
        return self.values

    def pack(self) -> Int8Weights:
        return self  # 8-bit weights stay unpacked


Weights = IntWeights | PackedWeights | Int8Weights
INT8_MIN, INT8_MAX = -128, 127


def is_int8(weights) -> bool:
    return isinstance(weights, Int8Weights)


# ---------------------------------------------------------------------------- float ops
@dataclass
class Mul:
    """y = x * values (per channel)."""

    values: np.ndarray


@dataclass
class Add:
    """y = x + values (per channel)."""

    values: np.ndarray


@dataclass
class Div:
    """y = x / values (per channel)."""

    values: np.ndarray


@dataclass
class Softmax:
    """y = softmax(x * beta) over the channels: only at the output (TFLite models end in it)."""

    beta: float = 1.0


@dataclass
class BatchNorm:
    """ONNX BatchNormalization (inference), per channel."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


FloatOp = Mul | Add | Div | BatchNorm | Softmax


# ---------------------------------------------------------------------------- layers
@dataclass
class Layer:
    name: str
    inputs: list[str]
    output: str
    source: str = ""  # the source-model node(s) this came from, for messages
    kind: ClassVar[str] = "layer"


@dataclass
class Input(Layer):
    """A model input: integers in [lo, hi], given as integer-valued numbers.

    A real input x maps to q = x / scale + zero_point, which must be an integer in [lo, hi];
    the golden model refuses inputs that are not (no silent rounding). `rounding`
    "half_even": the source itself quantises its input (an 8-bit QONNX Quant with zero point 0
    right on the model input, issue #11), so q = clip(round(x / scale), lo, hi) in float32
    as that quantiser computes it, for any real x.
    """

    shape: tuple[int, ...] = ()
    lo: int = 0
    hi: int = 255
    scale: float = 1.0
    zero_point: int = 0
    rounding: str = ""
    kind: ClassVar[str] = "input"


@dataclass
class Dense(Layer):
    """acc[n, o] = sum_k w[o, k] * x[n, k], integer."""

    weights: Weights = None  # type: ignore[assignment]
    kind: ClassVar[str] = "dense"


@dataclass
class Conv2d(Layer):
    """Integer conv (groups = 1). Padded taps hold `pad_value`: 0 (ONNX: they contribute
    nothing) or +1 (Larq/LCE `pad_values=1`: they count as +1 inputs)."""

    weights: Weights = None  # type: ignore[assignment]
    in_channels: int = 0
    kernel: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    pad_value: int = 0
    kind: ClassVar[str] = "conv2d"


@dataclass
class GroupConv2d(Conv2d):
    """Grouped (depthwise when groups == in_channels) integer conv: output channel o reads
    only input group o // (rows / groups); weights are [O, (in_channels / groups) * kh * kw]."""

    groups: int = 1
    kind: ClassVar[str] = "groupconv2d"


@dataclass
class Affine(Layer):
    """Source form only: float ops the source applies to an accumulator, in order."""

    ops: list[FloatOp] = field(default_factory=list)
    kind: ClassVar[str] = "affine"


@dataclass
class Binarize(Layer):
    """Source form only: mode "sign" (Sign), "ge0" (x >= 0 -> +1 else -1), "gt0" (x > 0)."""

    mode: str = "sign"
    kind: ClassVar[str] = "binarize"


@dataclass
class Threshold(Layer):
    """Target form of Affine + Binarize: see thresholds.py for the exact semantics."""

    tau: np.ndarray = None  # type: ignore[assignment]  int64 [C]
    flip: np.ndarray = None  # type: ignore[assignment]  bool [C]
    zero: np.ndarray = None  # type: ignore[assignment]  bool [C]
    # The source's float ops and binarisation mode, for the faithful golden mode of an
    # accumulator that a calibrated float layer computes in float32 (Int8Weights.float_values).
    ops: list[FloatOp] = field(default_factory=list)
    mode: str = ""
    kind: ClassVar[str] = "threshold"


@dataclass
class MaxPool(Layer):
    """Max-pool (padding never wins). `select_min[c]` pools with min instead: used when a
    decreasing per-channel transform was commuted past the pool."""

    kernel: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    select_min: np.ndarray | None = None
    kind: ClassVar[str] = "maxpool"


@dataclass
class Flatten(Layer):
    """[N, ...] -> [N, prod(...)], C order."""

    kind: ClassVar[str] = "flatten"


@dataclass
class Reshape(Layer):
    """[N, ...] -> [N, *shape], C order."""

    shape: tuple[int, ...] = ()
    kind: ClassVar[str] = "reshape"


@dataclass
class Transpose(Layer):
    """[N, *dims] -> [N, *(dims[p] for p in perm)]: moves data, unlike Reshape. The one use is
    a TFLite model's multi-channel NHWC input handed to the IR's NCHW layers (perm (2, 0, 1)):
    the model keeps its own input layout, so users give the arrays the source takes."""

    perm: tuple[int, ...] = ()
    kind: ClassVar[str] = "transpose"


@dataclass
class Scores(Layer):
    """Model output: integer scores, then the source's float ops (float32, in order)."""

    ops: list[FloatOp] = field(default_factory=list)
    kind: ClassVar[str] = "scores"


# ---------------------------------------------------------------------------- real-valued
# Layers on real-valued tensors between binary layers (issue #11). Each keeps the source's float
# parameters (what `edge-sdk run` evaluates in float32) and, once `passes.fixed_point` has run,
# its fixed-point parameters (what `run --fixed-point` and the targets compute; rules in
# sdk/fixedpoint.py). `frac` None = not yet lowered: the output is then "float" data.


@dataclass
class Requant(Layer):
    """Target form of an `Affine` whose result stays real-valued: per channel
    y = (x * mult + add) >> shift on an accumulator or fixed tensor; `ops` are the float ops."""

    ops: list[FloatOp] = field(default_factory=list)
    mult: np.ndarray | None = None  # int64 [C]
    add: np.ndarray | None = None  # int64 [C]
    shift: int = 0
    frac: int | None = None
    kind: ClassVar[str] = "requant"


@dataclass
class AddTensors(Layer):
    """Residual add of two real-valued (or integer) tensors of one shape."""

    frac: int | None = None
    kind: ClassVar[str] = "add"


@dataclass
class PRelu(Layer):
    """x if x >= 0 else slope_c * x (ReLU: slope 0); `slope_q` = round(slope * 2**15)."""

    slope: np.ndarray = None  # type: ignore[assignment]  float32 [C]
    slope_q: np.ndarray | None = None  # int64 [C]
    kind: ClassVar[str] = "prelu"


@dataclass
class GlobalAvgPool(Layer):
    """Mean over H, W of CHW data: [C, 1, 1] (keepdims) or [C]. `float_kernel` names the
    onnxruntime kernel whose float32 summation order the faithful mode mirrors
    ("GlobalAveragePool" or "ReduceMean")."""

    keepdims: bool = True
    float_kernel: str = "GlobalAveragePool"
    kind: ClassVar[str] = "gap"


@dataclass
class AvgPool(Layer):
    """Windowed average pool of CHW real-valued (or integer) data (issue #11: the Bi-Real /
    ReActNet / QuickNet downsampling shortcut, AvgPool2d(2, 2) before a 1x1 conv).

    Padded taps hold 0. The divisor n of an output position is kernel[0] * kernel[1] when
    `count_include_pad` (ONNX count_include_pad=1), else the number of taps inside the map
    (ONNX's default, TFLite SAME). Every pad is smaller than its kernel side, so n >= 1.
    `float_kernel` names the float32 summation order the faithful mode mirrors: "mlas"
    (onnxruntime's AveragePool up to opset 18, MLAS: each column of the window summed over the
    rows, top to bottom, then those column sums left to right) or "rows" (onnxruntime's
    AveragePool from opset 19 on, and TFLite's AVERAGE_POOL_2D: the taps row by row); both
    start from 0 and divide the sum by float32(n). Fixed-point rule: sdk/fixedpoint.py;
    `frac` is the output's binary point once lowered (None: not lowered, "float" data).
    """

    kernel: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    count_include_pad: bool = False
    float_kernel: str = "rows"
    frac: int | None = None
    kind: ClassVar[str] = "avgpool"


@dataclass
class Concat(Layer):
    """Concatenation along the channels (axis 1 with the batch)."""

    frac: int | None = None
    kind: ClassVar[str] = "concat"


@dataclass
class FixedThreshold(Layer):
    """Sign/comparison (`mode` as Binarize) of a real-valued tensor after the float `ops`
    (ReActNet's RSign: x - t_c): tau/flip/zero as in `Threshold`, on the fixed-point integers."""

    ops: list[FloatOp] = field(default_factory=list)
    mode: str = "sign"
    tau: np.ndarray | None = None
    flip: np.ndarray | None = None
    zero: np.ndarray | None = None
    kind: ClassVar[str] = "fixedthreshold"


@dataclass
class Quantize(Layer):
    """Puts a real-valued tensor on an integer grid for an 8-bit layer that reads it:
    q = clip(round(x / scale) + zero_point, lo, hi); the output is q - zero_point (integers,
    so the reader's accumulator times `scale` is the real dot product).

    Faithful mode (`in_source`): as the source computes it (QONNX `Quant`: float32 x / scale
    + zero_point, clamped, rounded half to even). A Quantize that the SDK inserted (a float
    layer quantised with a calibration set, `in_source` False) is the identity there: the
    source has no such step. Fixed-point mode: `mult`/`shift` of the Quantize rule in
    sdk/fixedpoint.py (set by passes.fixed_point), an integer rule on the fixed input.
    """

    scale: float = 1.0
    zero_point: int = 0
    lo: int = -127
    hi: int = 127
    in_source: bool = True
    mult: int | None = None
    shift: int = 0
    # Faithful-mode rounding: "" = QONNX Quant (above); "tflite" = TFLite's QUANTIZE
    # (AffineQuantize): q = clip(round_half_away(double(x) / double(scale)) + z, lo, hi).
    rounding: str = ""
    kind: ClassVar[str] = "quantize"


REAL_VALUED = (Requant, AddTensors, PRelu, GlobalAvgPool, AvgPool, Concat, FixedThreshold)

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Input, Dense, Conv2d, GroupConv2d, Affine, Binarize, Threshold, MaxPool, Flatten,
                Reshape, Transpose, Scores, Quantize, *REAL_VALUED)
}
OP_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Mul, Add, Div, BatchNorm, Softmax)}
WEIGHT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (IntWeights, PackedWeights,
                                                                 Int8Weights)}
SOURCE_ONLY = (Affine, Binarize)


def channels_of(op: FloatOp) -> int:
    """Per-channel parameter count (0 for Softmax, which has none)."""
    if isinstance(op, Softmax):
        return 0
    arr = op.gamma if isinstance(op, BatchNorm) else op.values
    return int(np.asarray(arr).shape[0])


# ---------------------------------------------------------------------------- TFLite int8
# LCE's int8 conversion (issue #11): TFLite's own integer kernels on centred int8 values
# (q - zero_point), bit for bit; exact formulas in sdk/tflite_int8.py. Integer in both golden
# modes. Per-channel parameters are int64 [C] (or scalars); lo/hi the activation range in codes.


@dataclass
class TflInt8Output(Layer):
    """The output step TFLite int8 layers end with: y = clamp(z + v, lo, hi) - z, z the output
    zero point, [lo, hi] the activation range in codes (a fused RELU / RELU6 narrows it). The
    fields are declared here once so that every layer built on it carries the same names with
    the same defaults, which sdk/tflite_int8.py (run, infer: the range check) and both
    backends read. Not a layer of its own (not in LAYER_TYPES); as a base it puts these fields
    before the subclass's in the constructor's order, which the IR never relies on (keywords
    everywhere; serialize stores fields by name)."""

    zero_point: int = 0
    lo: int = -128
    hi: int = 127


@dataclass
class TflRequant(TflInt8Output):
    """y_c = clamp(z + MBQM(x_c * factor_c + bias_c, mult_c, shift_c), lo, hi) - z; `rounding`
    "ruy": the final right shift rounds half up (CONV_2D / FULLY_CONNECTED run through ruy)."""

    factor: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray = None  # type: ignore[assignment]
    mult: np.ndarray = None  # type: ignore[assignment]
    shift: np.ndarray = None  # type: ignore[assignment]
    rounding: str = ""
    kind: ClassVar[str] = "tflrequant"


@dataclass
class TflAdd(TflInt8Output):
    """TFLite int8 ADD: v_i = MBQM(x_i << 20, mult_i, shift_i); y = clamp(z + MBQM(v_1 + v_2,
    mult_out, shift_out), lo, hi) - z. One input and `const` (v_2 per channel) for a constant
    operand."""

    mult1: np.ndarray = None  # type: ignore[assignment]
    shift1: np.ndarray = None  # type: ignore[assignment]
    mult2: np.ndarray | None = None
    shift2: np.ndarray | None = None
    const: np.ndarray | None = None
    mult_out: np.ndarray = None  # type: ignore[assignment]
    shift_out: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "tfladd"


@dataclass
class TflPRelu(TflInt8Output):
    """TFLite int8 PRELU: clamp(z + (MBQM(x, m1, s1) if x >= 0 else MBQM(x * alpha_c, m2,
    s2)), lo, hi) - z, alpha the centred alpha codes."""

    alpha: np.ndarray = None  # type: ignore[assignment]
    mult1: np.ndarray = None  # type: ignore[assignment]
    shift1: np.ndarray = None  # type: ignore[assignment]
    mult2: np.ndarray = None  # type: ignore[assignment]
    shift2: np.ndarray = None  # type: ignore[assignment]
    kind: ClassVar[str] = "tflprelu"


TFLITE_INT8 = (TflRequant, TflAdd, TflPRelu)
LAYER_TYPES.update({cls.__name__: cls for cls in TFLITE_INT8})
