"""Planning of the real-valued layers (issue #11): a mixin of plan.Planner.

Fixed-point tensors live like accumulators: int32 in the IR's C order ([C][P]), in arena
buffers placed by liveness (arena.py), so a residual's two inputs are simply two buffers live
at once. The parameters the lowering recorded (sdk/passes/fixed_point.py) go to int32 flash
tables; the kernels (kernels_fixed.py, kernels_concat.py) reproduce `golden._run_fixed`:

- Requant -> `requant` (table m[C], r_lo[C], r_hi[C]); AddTensors -> `add_align`;
  PRelu -> `prelu`; GlobalAvgPool -> `global_avg`; AvgPool (windowed) -> `avg_pool`
  (one multiplier, or a table of one per output position when padding is excluded from a
  padded window's divisor); Concat of fixed or integer tensors ->
  one `align_into` per input, of ±1 / ternary maps -> one `bits_into` per input;
- FixedThreshold -> the Threshold kernel (`threshold_pack`): its tau/flip/zero are exact
  integer thresholds on the fixed-point integers, so the bits are packed per pixel in the
  layout every binary layer reads;
- GroupConv2d on packed input -> the lane-parallel kernel (kernels_group.py: all groups at
  once, bit-sliced counters) when its cost model says it is cheaper (depthwise, many small
  groups); otherwise, and for multi-bit inputs, the ordinary conv kernels with block-diagonal
  weights (0 outside the group, so the masked XNOR-popcount skips them exactly).
"""

from __future__ import annotations

import numpy as np

from ... import bitpack
from ... import fixedpoint as fx
from ...errors import EdgeError
from ...ir import layers as L
from ...ir.graph import TensorInfo
from . import layout
from .kernels_concat import bits_into
from .kernels_fixed import add_align, align_into, avg_pool, global_avg, prelu, requant
from .kernels_group import group_conv, lanes_pay
from .layout import Storage

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# Fixed-point tensors may exceed 2**30 by the rounding slack of sdk/fixedpoint.py; the
# threshold kernel is exact up to here (plan.Planner.on_threshold).
FIXED_THRESHOLD_LIMIT = 2**31 - 3


def _frac(info: TensorInfo) -> int:
    return info.frac if info.kind == "fixed" else 0


def _where(i: int, layer: L.Layer) -> str:
    return f"layer {i} ({layer.kind})"


def _int32(i: int, layer: L.Layer, values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    if v.size and (int(v.min()) < INT32_MIN or int(v.max()) > INT32_MAX):
        raise EdgeError(f"{_where(i, layer)}: {what} does not fit int32")
    return v


def split_int64(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 v -> (low word as a signed int32 bit pattern, high word): v = hi * 2**32 + lo_u."""
    v = np.asarray(values, dtype=np.int64)
    lo = (v & 0xFFFFFFFF).astype(np.uint32).view(np.int32).astype(np.int64)
    return lo, v >> 32


def block_diagonal(layer: L.GroupConv2d) -> np.ndarray:
    """A grouped conv's [O, C/g*KH*KW] weights as an ordinary conv's [O, C*KH*KW] (0 outside
    each output row's group), in the (c, kh, kw) column order."""
    w = layout.weight_values(layer.weights)
    rows, g, taps = w.shape[0], layer.groups, layer.kernel[0] * layer.kernel[1]
    cin, per = layer.in_channels // g, rows // g
    full = np.zeros((rows, layer.in_channels, taps), dtype=np.int8)
    for o in range(rows):
        grp = o // per
        full[o, grp * cin:(grp + 1) * cin] = w[o].reshape(cin, taps)
    return full.reshape(rows, -1)


def group_lane_weights(values: np.ndarray, groups: int, taps: int, cw: int) -> np.ndarray:
    """[O, cin*taps] (i, kh, kw order) -> kernels_group's table: sign plane
    [rows][taps][cin][CW] words with bit gr*cin = weight of output gr*rows + r for input i,
    then the lane plane (bit set on lanes whose weight is nonzero)."""
    o = values.shape[0]
    rows, cin = o // groups, values.shape[1] // taps
    w = values.reshape(groups, rows, cin, taps).transpose(1, 3, 2, 0)  # [r][t][i][gr]
    lanes = np.zeros((rows, taps, cin, cw * 32), dtype=np.int8)
    lanes[..., np.arange(groups) * cin] = w
    return np.concatenate([bitpack.pack_bits(lanes > 0).ravel(),
                           bitpack.pack_bits(lanes != 0).ravel()])


class FixedLayers:
    """The `on_*` handlers of the real-valued layers; mixed into plan.Planner."""

    def fixed_handlers(self) -> dict:
        return {
            L.GroupConv2d: self.on_group_conv, L.Requant: self.on_requant,
            L.AddTensors: self.on_add, L.PRelu: self.on_prelu,
            L.GlobalAvgPool: self.on_gap, L.AvgPool: self.on_avg_pool,
            L.Concat: self.on_concat,
            L.FixedThreshold: self.on_fixed_threshold,
        }

    def int_source(self, i: int, layer: L.Layer, name: str) -> Storage:
        """An integer / fixed-point input of a real-valued layer (never packed bits)."""
        src = self.env[name]
        if src.is_bits:
            raise EdgeError(f"{_where(i, layer)}: takes ±1 data where the Cortex-M kernels "
                            "expect integer or fixed-point values")
        return src

    def on_group_conv(self, i: int, layer: L.GroupConv2d) -> None:
        if L.is_int8(layer.weights) or not self.env[layer.inputs[0]].is_bits:
            # 8-bit weights, or integer data (e.g. the per-channel window sums of a TFLite
            # MEAN): each output reads only its group (int8_group_conv), never the block-
            # diagonal form and never the ±1-weight kernels below
            self.on_int8_conv(i, layer)
            return
        g = layer.groups
        if g < 1 or layer.in_channels % g or layer.weights.rows % g:
            raise EdgeError(f"{_where(i, layer)}: {g} groups do not divide "
                            f"{layer.in_channels} input / {layer.weights.rows} output channels")
        out = self.infos[layer.output]
        macs = out.size * layer.weights.k
        src = self.env[layer.inputs[0]]
        info = self.infos[layer.inputs[0]]
        g_ = self.window(info, out, layer.kernel, layer.strides, layer.pads, layer.dilations)
        pad_one = bool(layer.pad_value) and g_.bounded
        cin, rows = layer.in_channels // g, layer.weights.rows // g
        values = layout.weight_values(layer.weights)
        w_zero = bool((values == 0).any())
        taps = g_.kh * g_.kw
        if not (src.is_bits and not pad_one
                and lanes_pay(g, cin, rows, taps, g_.cw, src.mask or w_zero)):
            self.on_conv(i, layer, block_diagonal(layer), macs)
            return
        self.check_int(i, layer, out)
        self.bits_as_chw(i, layer, src, info.shape)
        w = self.table("uint32_t", group_lane_weights(values, g, taps, g_.cw))
        dst, ep, t, note = self.compute_output(layer, out, g_.o, g_.oh * g_.ow)
        shape = (f"{g_.c}x{g_.h}x{g_.w} -> {g_.o}x{g_.oh}x{g_.ow}, kernel {g_.kh}x{g_.kw}, "
                 f"{g} groups")
        self.emit(i, "group_conv" + ("_thr" if ep else ""), group_conv,
                  (g_, g, src.mask, w_zero, ep), [self.arg(src), w, *t, self.arg(dst)],
                  f"layer {i}: grouped conv {shape}, packed input, lanes{note}")
        from .plan import LayerCost  # plan.py imports this module

        self.costs.append(LayerCost(i, layer.kind, macs, True))
        if ep is None:
            self.env[layer.output] = dst

    def on_requant(self, i: int, layer: L.Requant) -> None:
        src = self.int_source(i, layer, layer.inputs[0])
        info = self.infos[layer.inputs[0]]
        channels = info.shape[0]
        pixels = info.size // channels
        mult = _int32(i, layer, layer.mult, "a multiplier")
        lo, hi = split_int64(layer.add)
        t = self.table("int32_t", np.concatenate([mult, lo, hi]).astype(np.int32))
        dst = self.int_output(self.infos[layer.output])
        self.emit(i, "requant", requant, (channels, pixels, src.dtype, int(layer.shift)),
                  [self.arg(src), t, self.arg(dst)],
                  f"layer {i}: requant {channels} channels x {pixels} pixels, "
                  f">> {layer.shift}")
        self.env[layer.output] = dst

    def on_add(self, i: int, layer: L.AddTensors) -> None:
        if len(layer.inputs) != 2:
            raise EdgeError(f"{_where(i, layer)}: adds {len(layer.inputs)} tensors; the "
                            "Cortex-M kernel adds two")
        a, b = (self.int_source(i, layer, t) for t in layer.inputs)
        ia, ib = (self.infos[t] for t in layer.inputs)
        out = self.infos[layer.output]
        if ia.size != out.size or ib.size != out.size:
            raise EdgeError(f"{_where(i, layer)}: adds tensors of {ia.size} and {ib.size} "
                            f"values into {out.size} (no broadcasting on Cortex-M)")
        f = _frac(out)
        sa, sb = f - _frac(ia), f - _frac(ib)
        dst = self.int_output(out)
        self.emit(i, "add", add_align, (out.size, a.dtype, b.dtype, sa, sb),
                  [self.arg(a), self.arg(b), self.arg(dst)],
                  f"layer {i}: add {out.size} values, shifts {sa} and {sb}")
        self.env[layer.output] = dst

    def on_prelu(self, i: int, layer: L.PRelu) -> None:
        src = self.int_source(i, layer, layer.inputs[0])
        info = self.infos[layer.inputs[0]]
        channels = info.shape[0]
        pixels = info.size // channels
        if layer.slope_q is None:
            raise EdgeError(f"{_where(i, layer)}: not lowered to fixed point")
        slopes = _int32(i, layer, layer.slope_q, "a quantised slope")
        t = self.table("int32_t", slopes.astype(np.int32))
        dst = self.int_output(self.infos[layer.output])
        self.emit(i, "prelu", prelu, (channels, pixels, src.dtype, fx.PRELU_SHIFT),
                  [self.arg(src), t, self.arg(dst)],
                  f"layer {i}: prelu {channels} channels x {pixels} pixels")
        self.env[layer.output] = dst

    def on_gap(self, i: int, layer: L.GlobalAvgPool) -> None:
        src = self.int_source(i, layer, layer.inputs[0])
        info = self.infos[layer.inputs[0]]
        if len(info.shape) != 3:
            raise EdgeError(f"{_where(i, layer)}: averages a {list(info.shape)} tensor; "
                            "expected [C, H, W]")
        channels, pixels = info.shape[0], info.shape[1] * info.shape[2]
        mult = fx.gap_multiplier(pixels)
        dst = self.int_output(self.infos[layer.output])
        self.emit(i, "gap", global_avg, (channels, pixels, src.dtype, mult, fx.GAP_SHIFT),
                  [self.arg(src), self.arg(dst)],
                  f"layer {i}: global average {channels} channels x {pixels} pixels")
        self.env[layer.output] = dst

    def on_avg_pool(self, i: int, layer: L.AvgPool) -> None:
        src = self.int_source(i, layer, layer.inputs[0])
        info, out = self.infos[layer.inputs[0]], self.infos[layer.output]
        if len(info.shape) != 3:
            raise EdgeError(f"{_where(i, layer)}: averages a {list(info.shape)} tensor; "
                            "expected [C, H, W]")
        g = self.window(info, out, layer.kernel, layer.strides, layer.pads, (1, 1))
        counts = fx.avg_pool_counts(info.shape[1:], layer.kernel, layer.strides, layer.pads,
                                    layer.count_include_pad)
        mults = np.array([fx.gap_multiplier(int(n)) for n in counts.ravel()], dtype=np.int64)
        shift = fx.GAP_SHIFT - (_frac(out) - _frac(info))
        dst = self.int_output(out)
        shape = (f"{g.c}x{g.h}x{g.w} -> {g.oh}x{g.ow}, window {g.kh}x{g.kw}, "
                 f"strides {g.sh}x{g.sw}")
        if len(set(mults.tolist())) == 1:
            self.emit(i, "avg_pool", avg_pool, (g, src.dtype, int(mults[0]), shift),
                      [self.arg(src), self.arg(dst)], f"layer {i}: average pool {shape}")
        else:
            t = self.table("int32_t", _int32(i, layer, mults, "a multiplier").astype(np.int32))
            self.emit(i, "avg_pool", avg_pool, (g, src.dtype, None, shift),
                      [self.arg(src), t, self.arg(dst)],
                      f"layer {i}: average pool {shape}, a multiplier per position")
        self.env[layer.output] = dst

    def on_concat(self, i: int, layer: L.Concat) -> None:
        srcs = [self.env[t] for t in layer.inputs]
        ins = [self.infos[t] for t in layer.inputs]
        out = self.infos[layer.output]
        pixels = [x.size // x.shape[0] for x in ins]
        if len(set(pixels)) != 1 or any(x.shape[1:] != out.shape[1:] for x in ins):
            raise EdgeError(f"{_where(i, layer)}: concatenates maps of different sizes")
        if all(s.is_bits for s in srcs):
            self.concat_bits(i, layer, srcs, ins, out)
            return
        if any(s.is_bits for s in srcs):
            raise EdgeError(f"{_where(i, layer)}: concatenates ±1 and integer data")
        dst = self.int_output(out)
        offset = 0
        for src, x in zip(srcs, ins):
            shift = _frac(out) - _frac(x)
            self.emit(i, "concat", align_into, (x.size, src.dtype, shift, out.size, offset),
                      [self.arg(src), self.arg(dst)],
                      f"layer {i}: concat {x.size} values at {offset}, shift {shift}")
            offset += x.size
        self.env[layer.output] = dst

    def concat_bits(self, i: int, layer: L.Concat, srcs: list[Storage],
                    ins: list[TensorInfo], out: TensorInfo) -> None:
        pixels = ins[0].size // ins[0].shape[0]
        for src, x in zip(srcs, ins):
            if src.channels != x.shape[0] or src.pixels != pixels:
                raise EdgeError(f"{_where(i, layer)}: reads ±1 data laid out as "
                                f"{src.channels} channels x {src.pixels} pixels as "
                                f"{list(x.shape)}; the Cortex-M backend cannot re-pack bits")
        channels = out.shape[0]
        mask = any(s.mask for s in srcs)
        dst = Storage(self.new_buffer(), layout.BITS, out.size, channels, pixels, mask)
        offset = 0
        for n, (src, x) in enumerate(zip(srcs, ins)):
            self.emit(i, "concat_bits", bits_into,
                      (pixels, x.shape[0], src.mask, channels, offset, mask, n == 0),
                      [self.arg(src), self.arg(dst)],
                      f"layer {i}: concat {x.shape[0]} packed channels at {offset}")
            offset += x.shape[0]
        self.env[layer.output] = dst

    def on_fixed_threshold(self, i: int, layer: L.FixedThreshold) -> None:
        if layer.tau is None:
            raise EdgeError(f"{_where(i, layer)}: not lowered to fixed point")
        self.int_source(i, layer, layer.inputs[0])
        self.on_threshold(i, layer, FIXED_THRESHOLD_LIMIT)
