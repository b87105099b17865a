"""Planning of the 8-bit layers (issue #11): a mixin of plan.Planner.

- Dense / Conv2d with `Int8Weights` -> `int8_dense` / `int8_conv` (kernels_int8.py): int8
  weights packed four per word, int32 accumulation, optional fused threshold (the BatchNorm +
  sign after an 8-bit first conv folds into integer thresholds like any other). A
  GroupConv2d with `Int8Weights` (TFLite int8 / calibrated depthwise convs, ONNX grouped
  8-bit convs) -> `int8_group_conv`: each output reads its own group only, so the cost is
  (C / groups) * KH * KW MACs per output, not the block-diagonal C * KH * KW. ±1 / ternary
  inputs (an 8-bit last layer reading signs) are unpacked to int32 first (`unpack_bits`).
- Quantize -> `quantize`, with the M, S of sdk/fixedpoint.py recorded in the IR.

The accumulator bound of the IR (max row sum |w| * max |x|) must stay within the planner's
INT_LIMIT, which the check_int of every compute layer enforces: the int32 sums are then exact.
"""

from __future__ import annotations

from ...errors import EdgeError
from ...ir import layers as L
from . import layout
from .kernels_copy import unpack_bits
from .kernels_int8 import int8_conv, int8_dense, int8_group_conv, int8_words, quantize
from .layout import Storage


def _where(i: int, layer: L.Layer) -> str:
    return f"layer {i} ({layer.kind})"


class Int8Layers:
    """The `on_*` handlers of the 8-bit layers; mixed into plan.Planner."""

    def int8_source(self, i: int, layer: L.Layer) -> Storage:
        """The layer's input as integers: ±1 / ternary maps are unpacked to int32 first."""
        src = self.env[layer.inputs[0]]
        if not src.is_bits:
            return src
        info = self.infos[layer.inputs[0]]
        if src.channels * src.pixels != info.size:
            raise EdgeError(f"{_where(i, layer)}: reads ±1 data laid out as {src.channels} "
                            f"channels x {src.pixels} pixels as {info.size} values")
        dst = Storage(self.new_buffer(), "int32", info.size)
        self.scratch[dst.buffer] = dst.words  # placed by liveness like any tensor buffer
        self.emit(i, "unpack", unpack_bits, (src.channels, src.pixels, src.mask),
                  [self.arg(src), self.arg(dst)],
                  f"layer {i}: unpack {info.size} ±1 values for an 8-bit layer")
        return dst

    def on_int8_dense(self, i: int, layer: L.Dense) -> None:
        from .plan import LayerCost  # plan.py imports this module

        out = self.infos[layer.output]
        self.check_int(i, layer, out)
        src = self.int8_source(i, layer)
        values = layer.weights.values
        rows, k = values.shape
        w = self.table("uint32_t", int8_words(values))
        dst, ep, t, note = self.compute_output(layer, out, rows, 1)
        self.emit(i, "dense_int8" + ("_thr" if ep else ""), int8_dense,
                  (rows, k, src.dtype, ep), [self.arg(src), w, *t, self.arg(dst)],
                  f"layer {i}: dense {k} -> {rows}, {src.dtype} input, int8 weights{note}")
        self.costs.append(LayerCost(i, "dense", rows * k, False))
        if ep is None:
            self.env[layer.output] = dst

    def on_int8_conv(self, i: int, layer: L.Conv2d) -> None:
        """Conv2d / GroupConv2d on integer data. The weights are read through
        `layout.weight_values`, so ±1 / ternary weights (IntWeights, PackedWeights) work too:
        a grouped conv of ones on integer data (TFLite's average-pool sums) costs its grouped
        MACs here instead of the block-diagonal ones, if plan_fixed routes it here."""
        from .plan import LayerCost

        groups = layer.groups if isinstance(layer, L.GroupConv2d) else 1
        if groups < 1 or layer.in_channels % groups or layer.weights.rows % groups:
            raise EdgeError(f"{_where(i, layer)}: {groups} groups do not divide "
                            f"{layer.in_channels} input / {layer.weights.rows} output channels")
        info = self.infos[layer.inputs[0]]
        out = self.infos[layer.output]
        g = self.window(info, out, layer.kernel, layer.strides, layer.pads, layer.dilations)
        if layer.pad_value and g.bounded:  # padded taps hold 0 here (centred integers)
            raise EdgeError(f"{_where(i, layer)}: +1 padding is for binary convolutions only")
        self.check_int(i, layer, out)
        src = self.int8_source(i, layer)
        w = self.table("uint32_t", int8_words(layout.weight_values(layer.weights)))
        dst, ep, t, note = self.compute_output(layer, out, g.o, g.oh * g.ow)
        shape = f"{g.c}x{g.h}x{g.w} -> {g.o}x{g.oh}x{g.ow}, kernel {g.kh}x{g.kw}"
        if groups == 1:
            self.emit(i, "conv_int8" + ("_thr" if ep else ""), int8_conv, (g, src.dtype, ep),
                      [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: conv {shape}, {src.dtype} input, int8 weights{note}")
        else:
            what = "depthwise" if groups == g.c else "grouped"
            self.emit(i, "group_conv_int8" + ("_thr" if ep else ""), int8_group_conv,
                      (g, groups, src.dtype, ep), [self.arg(src), w, *t, self.arg(dst)],
                      f"layer {i}: {what} conv {shape}, {groups} groups, {src.dtype} input, "
                      f"int8 weights{note}")
        # weights.k is the per-group row length: out.size * (C / groups) * KH * KW MACs
        self.costs.append(LayerCost(i, layer.kind, out.size * layer.weights.k, False))
        if ep is None:
            self.env[layer.output] = dst

    def on_quantize(self, i: int, layer: L.Quantize) -> None:
        if layer.mult is None:
            raise EdgeError(f"{_where(i, layer)}: not lowered to fixed point")
        src = self.int_source(i, layer, layer.inputs[0])
        info = self.infos[layer.inputs[0]]
        dst = self.int_output(self.infos[layer.output])
        self.emit(i, "quantize", quantize,
                  (info.size, src.dtype, int(layer.mult), int(layer.shift),
                   int(layer.zero_point), int(layer.lo), int(layer.hi)),
                  [self.arg(src), self.arg(dst)],
                  f"layer {i}: quantize {info.size} values to [{layer.lo}, {layer.hi}]")
        self.env[layer.output] = dst

