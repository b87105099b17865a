"""Planning of the TFLite int8 layers (LCE int8 conversion, issue #11): a mixin of plan.Planner.

TflRequant -> `tfl_requant`, TflAdd -> `tfl_add` (two tensors) or `tfl_add_const` (a tensor
and a per-channel constant), TflPRelu -> `tfl_prelu` (kernels_tflite.py). Their parameters
(scalars or per channel in the IR) become per-channel int32 flash tables.

The kernels hold every intermediate in int64, while TFLite computes x * f + b, x * 2**left,
v_1 + v_2 and x * alpha in int32 and the golden model (sdk/tflite_int8.run) raises where one of
them leaves int32 (TFLite would wrap). So the planner proves that none can, for every input in
the tensor's static range [lo, hi], by running `tflite_int8.run` itself on the extremes (each
intermediate is affine or monotone in each input, so the extremes of the inputs bound it);
otherwise it refuses the layer. On the inputs it accepts, int64 and TFLite's int32 agree.
"""

from __future__ import annotations

import itertools

import numpy as np

from ... import tflite_int8 as ti
from ...errors import EdgeError
from ...ir import layers as L
from ...ir.graph import TensorInfo
from .kernels_tflite import tfl_add, tfl_add_const, tfl_prelu, tfl_requant
from .layout import Storage

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SHIFT_MIN, SHIFT_MAX = -31, 30  # TFLite's QuantizeMultiplier exponents


def _where(i: int, layer: L.Layer) -> str:
    return f"layer {i} ({layer.kind} '{layer.name}')"


class TfliteLayers:
    """The `on_*` handlers of the TFLite int8 layers; mixed into plan.Planner."""

    def tflite_handlers(self) -> dict:
        return {L.TflRequant: self.on_tfl_requant, L.TflAdd: self.on_tfl_add,
                L.TflPRelu: self.on_tfl_prelu}

    # ------------------------------------------------------------------ helpers
    def tfl_geometry(self, i: int, layer: L.Layer) -> tuple[int, int]:
        """(channels, pixels) of the layer's input: [C] or [C, ...] in C order."""
        info = self.infos[layer.inputs[0]]
        if not info.shape:
            raise EdgeError(f"{_where(i, layer)}: takes a scalar; expected [C] or [C, H, W]")
        channels = int(info.shape[0])
        return channels, info.size // channels

    def tfl_column(self, i: int, layer: L.Layer, attr: str, channels: int,
                   kind: str = "value") -> np.ndarray:
        """Parameter `attr` per channel (a scalar is broadcast), checked to fit its use."""
        v = getattr(layer, attr)
        if v is None:
            raise EdgeError(f"{_where(i, layer)}: parameter {attr} is missing")
        a = np.asarray(v, dtype=np.int64)
        if a.shape not in ((), (channels,)):
            raise EdgeError(f"{_where(i, layer)}: {attr} has {a.size} values for {channels} "
                            "channels")
        a = np.broadcast_to(a, (channels,))
        lo, hi = (SHIFT_MIN, SHIFT_MAX) if kind == "shift" else (INT32_MIN, INT32_MAX)
        if a.size and (int(a.min()) < lo or int(a.max()) > hi):
            what = "a shift" if kind == "shift" else f"{attr}"
            raise EdgeError(f"{_where(i, layer)}: {what} outside [{lo}, {hi}] "
                            f"({int(a.min())}..{int(a.max())})")
        return a

    def tfl_prove_int32(self, i: int, layer: L.Layer, ins: list[TensorInfo],
                        channels: int) -> None:
        """Refuse a layer whose int32 intermediates can overflow on its input range: the
        golden kernel on every combination of the inputs' extremes (module docstring)."""
        corners = list(itertools.product(*[(x.lo, x.hi) for x in ins]))
        args = []
        for k in range(len(ins)):
            a = np.empty((1, channels, len(corners)), dtype=np.int64)
            a[...] = np.array([c[k] for c in corners], dtype=np.int64)
            args.append(a)
        try:
            ti.run(layer, args)
        except EdgeError as exc:
            ranges = ", ".join(f"[{x.lo}, {x.hi}]" for x in ins)
            raise EdgeError(f"{_where(i, layer)}: for inputs in {ranges} "
                            f"{str(exc).split(': ', 1)[-1]}; the Cortex-M kernel computes "
                            "TFLite's int32 arithmetic exactly only where it cannot wrap"
                            ) from None

    def tfl_sources(self, i: int, layer: L.Layer) -> list[Storage]:
        srcs = [self.int_source(i, layer, t) for t in layer.inputs]
        size = self.infos[layer.inputs[0]].size
        for t in layer.inputs[1:]:
            if self.infos[t].size != size:
                raise EdgeError(f"{_where(i, layer)}: adds tensors of {size} and "
                                f"{self.infos[t].size} values (no broadcasting on Cortex-M)")
        return srcs

    @staticmethod
    def tfl_out_args(layer) -> tuple[int, int, int]:
        return int(layer.zero_point), int(layer.lo), int(layer.hi)

    # ------------------------------------------------------------------ layers
    def on_tfl_requant(self, i: int, layer: L.TflRequant) -> None:
        if layer.rounding not in ("", "ruy"):
            raise EdgeError(f"{_where(i, layer)}: unknown rounding {layer.rounding!r}")
        (src,) = self.tfl_sources(i, layer)
        c, p = self.tfl_geometry(i, layer)
        self.tfl_prove_int32(i, layer, [self.infos[layer.inputs[0]]], c)
        cols = [self.tfl_column(i, layer, "factor", c), self.tfl_column(i, layer, "bias", c),
                self.tfl_column(i, layer, "mult", c),
                self.tfl_column(i, layer, "shift", c, "shift")]
        t = self.table("int32_t", np.concatenate(cols).astype(np.int32))
        dst = self.int_output(self.infos[layer.output])
        ruy = layer.rounding == "ruy"
        self.emit(i, "tfl_requant", tfl_requant,
                  (c, p, src.dtype, ruy, *self.tfl_out_args(layer)),
                  [self.arg(src), t, self.arg(dst)],
                  f"layer {i}: TFLite requantise {c} channels x {p} pixels"
                  + (" (ruy rounding)" if ruy else ""))
        self.env[layer.output] = dst

    def on_tfl_add(self, i: int, layer: L.TflAdd) -> None:
        srcs = self.tfl_sources(i, layer)
        c, p = self.tfl_geometry(i, layer)
        want = 1 if layer.const is not None else 2
        if len(srcs) != want:
            raise EdgeError(f"{_where(i, layer)}: takes {want} input(s), got {len(srcs)}")
        self.tfl_prove_int32(i, layer, [self.infos[t] for t in layer.inputs], c)
        m1 = self.tfl_column(i, layer, "mult1", c)
        e1 = self.tfl_column(i, layer, "shift1", c, "shift")
        mo = self.tfl_column(i, layer, "mult_out", c)
        eo = self.tfl_column(i, layer, "shift_out", c, "shift")
        dst = self.int_output(self.infos[layer.output])
        out = self.tfl_out_args(layer)
        if layer.const is not None:
            k = self.tfl_column(i, layer, "const", c)
            t = self.table("int32_t", np.concatenate([m1, e1, k, mo, eo]).astype(np.int32))
            self.emit(i, "tfl_add_const", tfl_add_const, (c, p, srcs[0].dtype, *out),
                      [self.arg(srcs[0]), t, self.arg(dst)],
                      f"layer {i}: TFLite add of a constant, {c} channels x {p} pixels")
        else:
            m2 = self.tfl_column(i, layer, "mult2", c)
            e2 = self.tfl_column(i, layer, "shift2", c, "shift")
            t = self.table("int32_t",
                           np.concatenate([m1, e1, m2, e2, mo, eo]).astype(np.int32))
            a, b = srcs
            self.emit(i, "tfl_add", tfl_add, (c, p, a.dtype, b.dtype, *out),
                      [self.arg(a), self.arg(b), t, self.arg(dst)],
                      f"layer {i}: TFLite add, {c} channels x {p} pixels")
        self.env[layer.output] = dst

    def on_tfl_prelu(self, i: int, layer: L.TflPRelu) -> None:
        (src,) = self.tfl_sources(i, layer)
        c, p = self.tfl_geometry(i, layer)
        self.tfl_prove_int32(i, layer, [self.infos[layer.inputs[0]]], c)
        cols = [self.tfl_column(i, layer, "alpha", c), self.tfl_column(i, layer, "mult1", c),
                self.tfl_column(i, layer, "shift1", c, "shift"),
                self.tfl_column(i, layer, "mult2", c),
                self.tfl_column(i, layer, "shift2", c, "shift")]
        t = self.table("int32_t", np.concatenate(cols).astype(np.int32))
        dst = self.int_output(self.infos[layer.output])
        self.emit(i, "tfl_prelu", tfl_prelu, (c, p, src.dtype, *self.tfl_out_args(layer)),
                  [self.arg(src), t, self.arg(dst)],
                  f"layer {i}: TFLite PReLU {c} channels x {p} pixels")
        self.env[layer.output] = dst
