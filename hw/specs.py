"""Plain descriptions of hardware stages: what the planner decides, what the blocks build.

These know nothing of ONNX or the IR; `converters/fpga/plan.py` fills them from a graph.
Activations travel as "value codes" of a fixed width per kind (see `value_bits`):
bipolar = 1 bit (1 = +1), ternary = 2 bits (bit 0 "is zero", bit 1 "is +1": -1/0/+1 -> 0/1/2,
so unsigned order is value order), int = two's complement of the range's width.
Frames are stored pixel-major (H, W, C): a pixel's channels occupy `words` memory words of
`lanes` values each, the last one padded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .adder_tree import shape_for
from .threshold import ThresholdConsts


def value_bits(kind: str, lo: int = -1, hi: int = 1) -> int:
    """Bits of one value code of this kind."""
    if kind == "bipolar":
        return 1
    if kind == "ternary":
        return 2
    if kind == "int":
        return shape_for(lo, hi).width
    raise ValueError(f"unknown value kind {kind!r}")


@dataclass(frozen=True)
class Values:
    """Kind and range of the values on one edge."""

    kind: str
    lo: int = -1
    hi: int = 1

    @property
    def bits(self) -> int:
        return value_bits(self.kind, self.lo, self.hi)

    @property
    def signed(self) -> bool:
        return self.kind == "int" and self.lo < 0


@dataclass(frozen=True)
class FrameSpec:
    """An input frame buffer: geometry, storage word, and how the producer's beats arrive."""

    height: int
    width: int
    channels: int
    lanes: int  # values per memory word (the consumer's SIMD)
    values: Values
    producer_lanes: int  # values per incoming stream beat
    producer_beats: int  # incoming beats per pixel
    block_ram: bool | None = None  # force block RAM (True) or registers (False); None: yosys

    @property
    def memory_bits(self) -> int:
        """Bits of both banks as laid out (depth rounded up to a power of two per bank)."""
        depth = 1 << max(0, (self.pixels * self.words - 1).bit_length())
        return 2 * depth * self.lanes * self.values.bits

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def words(self) -> int:
        """Memory words per pixel."""
        return math.ceil(self.channels / self.lanes)

    @property
    def granule(self) -> int:
        """Values written per cycle: gcd(producer beat, word)."""
        return math.gcd(self.producer_lanes, self.lanes)

    @property
    def write_cycles(self) -> int:
        """Cycles to take in one frame at full input rate."""
        return self.pixels * self.producer_beats * (self.producer_lanes // self.granule)


def ebr_count(width: int, depth: int) -> int:
    """iCE40 4-kbit block RAMs for a width x depth memory (best of the 4 aspect ratios)."""
    return min(-(-width // w) * -(-depth // d) for w, d in ((16, 256), (8, 512), (4, 1024),
                                                           (2, 2048)))


@dataclass(frozen=True)
class WindowSpec:
    """A sliding window over a frame (a dense layer is one window covering the frame)."""

    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    out_hw: tuple[int, int] = (1, 1)
    pad_value: int = 0  # what a padded tap holds: 0 (contributes nothing) or +1 (Larq)

    @property
    def taps(self) -> int:
        return self.kernel[0] * self.kernel[1]

    @property
    def padded(self) -> bool:
        return any(self.pads)


@dataclass(frozen=True)
class EngineSpec:
    """A folded dense/conv layer: PE output channels in parallel, `frame.lanes` inputs per cycle.

    weights: int8 [out_channels, taps, channels] in hardware order (tap = i * KW + j), values
    {-1, 0, +1}, or any int8 code with `int8_weights` (issue #11: 8-bit first/last layers,
    exact products x * w). threshold: per-channel constants or None (then the output is the
    accumulator).
    """

    frame: FrameSpec
    window: WindowSpec
    pe: int
    weights: np.ndarray
    acc_lo: int
    acc_hi: int
    threshold: ThresholdConsts | None = None
    ternary_out: bool = False
    external_weights: bool = False
    int8_weights: bool = False

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def weight_bits(self) -> int:
        """ROM bits per weight: 8 (int8 codes), 2 (ternary: sign + mask) or 1 (binary)."""
        if self.int8_weights:
            return 8
        return 2 if self.ternary_weights else 1

    @property
    def simd(self) -> int:
        return self.frame.lanes

    @property
    def folds(self) -> int:
        """Neuron folds NF = ceil(O / PE)."""
        return math.ceil(self.out_channels / self.pe)

    @property
    def ternary_weights(self) -> bool:
        return not self.int8_weights and bool((self.weights == 0).any())

    @property
    def out_values(self) -> Values:
        if self.threshold is None:
            return Values("int", self.acc_lo, self.acc_hi)
        return Values("ternary" if self.ternary_out else "bipolar")

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.window.out_hw

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def out_beats(self) -> int:
        return self.folds

    @property
    def compute_cycles(self) -> int:
        """Issue cycles per frame: output pixels * NF * taps * words per pixel."""
        oh, ow = self.out_hw
        return oh * ow * self.folds * self.window.taps * self.frame.words

    @property
    def macs(self) -> int:
        oh, ow = self.out_hw
        return oh * ow * self.out_channels * self.window.taps * self.frame.channels


@dataclass(frozen=True)
class PoolSpec:
    """Max-pool over a frame, one memory word (`frame.lanes` channels) per output beat."""

    frame: FrameSpec
    window: WindowSpec
    select_min: np.ndarray | None = None  # bool [channels]: pool with min instead

    @property
    def out_values(self) -> Values:
        return self.frame.values

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.window.out_hw

    @property
    def out_lanes(self) -> int:
        return self.frame.lanes

    @property
    def out_beats(self) -> int:
        return self.frame.words

    @property
    def out_channels(self) -> int:
        return self.frame.channels

    @property
    def compute_cycles(self) -> int:
        oh, ow = self.out_hw
        return oh * ow * self.frame.words * self.window.taps


@dataclass(frozen=True)
class ThresholdSpec:
    """A stand-alone threshold on a stream of integer beats (after a max-pool on integers)."""

    lanes: int
    beats: int  # beats per pixel
    pixels: int
    channels: int
    in_values: Values
    consts: ThresholdConsts
    ternary_out: bool = False

    @property
    def out_values(self) -> Values:
        return Values("ternary" if self.ternary_out else "bipolar")

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def out_beats(self) -> int:
        return self.beats

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def compute_cycles(self) -> int:
        return self.pixels * self.beats


@dataclass(frozen=True)
class StreamSpec:
    """Common geometry of the stream stages of real-valued layers (hw/fixed_stages.py).

    They keep the producer's beat layout: per pixel, `beats` beats of `lanes` values, channel
    b * lanes + k on lane k of beat b (lanes at or beyond `channels` are padding). They never
    buffer a frame, so they need the per-channel (natural) layout, one beat per cycle.
    """

    lanes: int
    beats: int  # beats per pixel
    pixels: int
    channels: int

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def out_beats(self) -> int:
        return self.beats

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def compute_cycles(self) -> int:
        return self.pixels * self.beats


@dataclass(frozen=True)
class RequantSpec(StreamSpec):
    """y = (x * mult_c + add_c) >> shift per channel (sdk/fixedpoint.py's affine rule)."""

    in_values: Values = Values("int", 0, 0)
    out_values: Values = Values("int", 0, 0)
    mult: np.ndarray = None  # type: ignore[assignment]  int64 [channels]
    add: np.ndarray = None  # type: ignore[assignment]  int64 [channels]
    shift: int = 1
    dsp: bool = False  # the product on `*` (SB_MAC16), else shift-and-add LUTs


@dataclass(frozen=True)
class PReluSpec(StreamSpec):
    """y = x if x >= 0 else (x * slope_c + 2**(shift-1)) >> shift (ReLU: slope 0)."""

    in_values: Values = Values("int", 0, 0)
    out_values: Values = Values("int", 0, 0)
    slope_q: np.ndarray = None  # type: ignore[assignment]  int64 [channels]
    shift: int = 15
    dsp: bool = False  # the product on `*` (SB_MAC16), else shift-and-add LUTs


@dataclass(frozen=True)
class GapSpec(StreamSpec):
    """Global average: per channel sum over `pixels`, then (sum * mult + 2**(shift-1)) >> shift;
    one output pixel (the same beats) once the frame's last pixel is in."""

    in_values: Values = Values("int", 0, 0)
    out_values: Values = Values("int", 0, 0)
    mult: int = 1
    shift: int = 24
    dsp: bool = False  # the product on `*` (SB_MAC16), else shift-and-add LUTs

    @property
    def sum_bound(self) -> int:
        return self.pixels * max(abs(self.in_values.lo), abs(self.in_values.hi))


@dataclass(frozen=True)
class AddSpec(StreamSpec):
    """Element-wise sum of two streams of one layout, each operand aligned first:
    shifts[k] >= 0 is a left shift, < 0 a rounded (half-up) right shift by -shifts[k]."""

    in_values: tuple[Values, ...] = ()
    shifts: tuple[int, ...] = ()
    out_values: Values = Values("int", 0, 0)


@dataclass(frozen=True)
class QuantizeSpec(StreamSpec):
    """sdk/fixedpoint.quantize per value: clip(((x * mult + 2**(shift-1)) >> shift) + zero_point,
    lo, hi) - zero_point (issue #11: fixed-point data onto the grid an 8-bit layer reads)."""

    in_values: Values = Values("int", 0, 0)
    out_values: Values = Values("int", 0, 0)
    mult: int = 1
    shift: int = 1
    zero_point: int = 0
    lo: int = -128
    hi: int = 127
    dsp: bool = False  # the product on `*` (SB_MAC16), else shift-and-add LUTs


@dataclass(frozen=True)
class SplitSpec(StreamSpec):
    """Cuts each beat of `in_lanes` values into in_lanes / lanes beats of `lanes` (channels
    stay in order; a padded tail stays padding): narrows the stream in front of a stage whose
    lanes cost multipliers when the network's II leaves it the cycles. `beats` counts the
    incoming beats per pixel."""

    in_lanes: int = 1
    values: Values = Values("int", 0, 0)

    @property
    def out_beats(self) -> int:
        return self.beats * (self.in_lanes // self.lanes)

    @property
    def out_values(self) -> Values:
        return self.values

    @property
    def compute_cycles(self) -> int:
        return self.pixels * self.out_beats


@dataclass(frozen=True)
class ConcatSpec:
    """Channel concatenation: per pixel, `in_beats[k]` beats of input k in turn, every input
    `lanes` wide (all but the last exactly full, so channels stay contiguous); values aligned
    by `shifts` (as AddSpec) for fixed data, re-coded to `out_values` (±1 -> ternary codes)."""

    lanes: int
    pixels: int
    channels: int
    in_beats: tuple[int, ...]
    in_values: tuple[Values, ...]
    shifts: tuple[int, ...]
    out_values: Values

    @property
    def beats(self) -> int:
        return sum(self.in_beats)

    @property
    def out_lanes(self) -> int:
        return self.lanes

    @property
    def out_beats(self) -> int:
        return self.beats

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def compute_cycles(self) -> int:
        return self.pixels * self.beats


StageSpec = (EngineSpec | PoolSpec | ThresholdSpec | RequantSpec | PReluSpec | GapSpec | AddSpec
             | ConcatSpec | SplitSpec | QuantizeSpec)


@dataclass(frozen=True)
class TflSpec(StreamSpec):
    """A TFLite int8 layer (sdk/tflite_int8.py: TflRequant, TflAdd, TflPRelu) on centred int8
    data, bit for bit: `op` is "requant", "prelu" or "add"; `in_values` has two entries for an
    add of two tensors. `cols` holds the per-channel integer constants by name (the layer's
    mult/shift/... arrays, [channels] each); zero_point, lo, hi are the output's."""

    op: str = "requant"
    in_values: tuple[Values, ...] = ()
    out_values: Values = Values("int", 0, 0)
    cols: tuple[tuple[str, np.ndarray], ...] = ()
    rounding: str = ""
    zero_point: int = 0
    lo: int = -128
    hi: int = 127
    dsp: bool = False  # the products on 16 x 16 DSP pieces, else shift-and-add LUTs

    def col(self, name: str) -> np.ndarray:
        return dict(self.cols)[name]
