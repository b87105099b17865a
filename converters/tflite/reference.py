"""A NumPy reading of the TFLite / LCE operators: the reference `run --check` compares with.

It executes the .tflite graph as the file states it, independently of the IR: NHWC float32
tensors, LCE's bitpacked int32 words for `LceQuantize` outputs (bit 1 = -1, LSB first),
XOR-popcount binary convolutions on those words, `LceBMaxPool2d` as an AND of words. It shares
only the file reader (schema.py) with the frontend, so a mistake in the IR mapping (layout,
bit order, padding, thresholds) shows up as a difference. Float accumulations run in float64
and round once to float32, so float results agree with TFLite to float32 rounding; integer
parts are exact. The committed LCE fixtures check this module against LCE's own interpreter.
Fused activations are applied after the op; MEAN over H, W sums in float32 in TFLite's
row-major order (h outer, w inner) and divides once.

int8 tensors (LCE's int8 conversion) are held as their raw codes q (the frontend holds
q - z) and computed element by element with Python integers, written from TFLite's C++
(quantization_util.cc QuantizeMultiplier, common.h MultiplyByQuantizedMultiplier) rather than
from sdk/tflite_int8.py, so the two implementations check each other.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edge_sdk.errors import EdgeError

from . import lce, quant, schema
from .frontend import tflite_pads
from .schema import Operator

F32 = np.float32


def pack(x: np.ndarray) -> np.ndarray:
    """LceQuantize: float [..., C] -> int32 words [..., ceil(C/32)], bit 1 where x < 0."""
    c = x.shape[-1]
    words = math.ceil(c / 32)
    bits = np.zeros(x.shape[:-1] + (words * 32,), np.uint8)
    bits[..., :c] = x < 0
    return np.packbits(bits, axis=-1, bitorder="little").view("<i4").astype(np.int32)


def unpack(words: np.ndarray, channels: int) -> np.ndarray:
    """LceDequantize: words -> float ±1 [..., channels]."""
    bits, _ = lce.unpack_bits(words, channels)
    return (1 - 2 * bits.astype(np.int8)).astype(F32)


def _windows(x: np.ndarray, kernel, stride, dilation, pads, fill) -> np.ndarray:
    """NHWC [N, H, W, C] -> [N, OH, OW, kh, kw, C] with padding value `fill`."""
    t, lft, b, r = pads
    x = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=fill)
    (kh, kw), (dh, dw) = kernel, dilation
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    win = win[:, :: stride[0], :: stride[1], :, ::dh, ::dw]  # [N, OH, OW, C, kh, kw]
    return win.transpose(0, 1, 2, 4, 5, 3)


def _average_pool(x: np.ndarray, kernel, stride, padding: str) -> np.ndarray:
    """TFLite's float AVERAGE_POOL_2D (reference_ops::AveragePool, and the optimized kernel's
    order): per output pixel, from 0.0 the taps inside the map row by row in float32, divided
    by float32(their count) (padding excluded)."""
    n, h, w, c = x.shape
    t, lft, _, _ = tflite_pads((h, w), kernel, stride, (1, 1), padding)
    (kh, kw), (sh, sw) = kernel, stride
    oh = -(-h // sh) if padding == "SAME" else (h - kh) // sh + 1
    ow = -(-w // sw) if padding == "SAME" else (w - kw) // sw + 1
    out = np.zeros((n, oh, ow, c), dtype=F32)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * sh - t, j * sw - lft
            total = np.zeros((n, c), dtype=F32)
            count = 0
            for yy in range(max(y0, 0), min(y0 + kh, h)):
                for xx in range(max(x0, 0), min(x0 + kw, w)):
                    total = (total + x[:, yy, xx, :]).astype(F32)
                    count += 1
            out[:, i, j, :] = (total / F32(count)).astype(F32)
    return out


def _activation(y: np.ndarray, activation: str) -> np.ndarray:
    """A fused activation after the op (float32)."""
    if activation == "NONE":
        return y
    if activation == "RELU":
        return np.maximum(y, F32(0)).astype(F32)
    if activation == "RELU6":
        return np.clip(y, F32(0), F32(6)).astype(F32)
    if activation == "RELU_N1_TO_1":
        return np.clip(y, F32(-1), F32(1)).astype(F32)
    raise ValueError(f"fused activation {activation}")


def _mean_hw(x: np.ndarray, keepdims: bool) -> np.ndarray:
    total = np.zeros((x.shape[0], x.shape[3]), F32)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            total = (total + x[:, i, j, :]).astype(F32)
    y = (total / F32(x.shape[1] * x.shape[2])).astype(F32)
    return y[:, None, None, :] if keepdims else y


# ---------------------------------------------------------------------------- int8 (Python ints)
def _qmult(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: frexp, then round(q * 2**31) half away from zero."""
    if real == 0:
        return 0, 0
    q, e = math.frexp(real)
    m = int(q * 2**31 + 0.5)  # q > 0: truncation of +0.5 is round half away
    if m == 2**31:
        m, e = m // 2, e + 1
    if e < -31:
        return 0, 0
    return m, e


def _mbqm1(x: int, m: int, e: int, ruy: bool = False) -> int:
    """MultiplyByQuantizedMultiplier on one Python int (no int64 tricks); `ruy`: the last
    shift rounds half up (ruy's kernels: CONV_2D, FULLY_CONNECTED)."""
    x = x * 2 ** max(e, 0)
    if not -2**31 <= x < 2**31:
        raise ValueError("int32 overflow before the high multiply")
    if x == m == -2**31:
        hi = 2**31 - 1
    else:
        p = x * m
        p += 2**30 if p >= 0 else 1 - 2**30
        hi = abs(p) // 2**31 * (1 if p >= 0 else -1)  # C++ division truncates
    n = max(-e, 0)
    if ruy:
        return (hi + (2**n // 2)) // 2**n  # floor division: round half towards +infinity
    mask = 2**n - 1
    rem = hi & mask
    thr = (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> n) + (1 if rem > thr else 0)


def _mbqm(x: np.ndarray, m, e, ruy: bool = False) -> np.ndarray:
    """Elementwise _mbqm1 (m, e broadcast against x)."""
    x = np.asarray(x, np.int64)
    m, e = np.broadcast_to(np.asarray(m, np.int64), x.shape), np.broadcast_to(
        np.asarray(e, np.int64), x.shape)
    out = [_mbqm1(int(a), int(b), int(c), ruy) for a, b, c in zip(x.ravel(), m.ravel(),
                                                                  e.ravel())]
    return np.array(out, np.int64).reshape(x.shape)


def _act_codes(activation: str, scale: float, zp: int) -> tuple[int, int]:
    def q(v: float) -> int:
        r = float(F32(v) / F32(scale))
        return zp + int(math.copysign(math.floor(abs(r) + 0.5), r))

    return {"NONE": (-128, 127), "RELU": (max(-128, q(0)), 127),
            "RELU6": (max(-128, q(0)), min(127, q(6))),
            "RELU_N1_TO_1": (max(-128, q(-1)), min(127, q(1)))}[activation]


class Reference:
    def __init__(self, model: schema.Model):
        self.m = model
        self.env: dict[int, np.ndarray] = {}
        self.q = quant.read(model.file) if any(t.quantized for t in model.tensors) else {}

    def int8(self, idx: int) -> bool:
        return idx >= 0 and self.m.tensors[idx].type_code == 9 and idx in self.q

    def sz(self, idx: int) -> tuple[float, int]:
        p = self.q[idx]
        return float(p.scale[0]), int(p.zero_point[0])

    def codes(self, idx: int, y: np.ndarray, activation: str = "NONE") -> np.ndarray:
        """Centred result y -> raw codes of tensor idx, clamped to the activation range."""
        s, z = self.sz(idx)
        lo, hi = _act_codes(activation, s, z)
        return np.clip(y + z, lo, hi).astype(np.int64)

    def get(self, idx: int) -> np.ndarray:
        if idx < 0:
            raise EdgeError(f"{self.m.file}: reference: a required input is missing")
        if idx in self.env:
            return self.env[idx]
        t = self.m.tensors[idx]
        if t.data is None:
            raise EdgeError(f"{self.m.file}: reference: tensor '{t.name}' has no value")
        return t.data

    def run(self, x: np.ndarray) -> np.ndarray:
        t_in = self.m.tensors[self.m.inputs[0]]
        x = np.asarray(x)
        if x.shape[1:] != t_in.shape[1:]:
            raise EdgeError(f"input: shape {list(x.shape)} does not match the model's input "
                            f"[N, {', '.join(map(str, t_in.shape[1:]))}]")
        self.env[t_in.index] = x.astype(np.int64) if self.int8(t_in.index) else x.astype(F32)
        for op in self.m.operators:
            fn = getattr(self, f"op_{op.name}", None)
            if fn is None:
                raise EdgeError(f"{self.m.file}: reference: operator {op.name} is not supported")
            try:
                self.env[op.outputs[0]] = fn(op)
            except (ValueError, IndexError, TypeError) as exc:  # shapes the frontend let pass
                raise EdgeError(f"{self.m.file}: reference: operator #{op.index} {op.name} "
                                f"cannot run: {exc}") from None
        return self.env[self.m.outputs[0]]

    # ------------------------------------------------------------------ plain ops
    def op_CONV_2D(self, op: Operator) -> np.ndarray:
        o = schema.conv_options(op)
        if self.int8(op.inputs[0]):
            s_in, z_in = self.sz(op.inputs[0])
            x = self.get(op.inputs[0]).astype(np.int64) - z_in  # padding holds z_in: 0 here
            w = self.get(op.inputs[1]).astype(np.int64)
            pads = tflite_pads(x.shape[1:3], w.shape[1:3], o.stride, o.dilation, o.padding)
            win = _windows(x, w.shape[1:3], o.stride, o.dilation, pads, 0)
            acc = np.einsum("nyxijc,oijc->nyxo", win, w)
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                acc = acc + self.get(op.inputs[2]).astype(np.int64)
            s_w = np.broadcast_to(self.q[op.inputs[1]].scale, (w.shape[0],))
            s_out, _ = self.sz(op.outputs[0])
            me = [_qmult(float(s_in) * float(sw) / float(s_out)) for sw in s_w]
            y = _mbqm(acc, [m for m, _ in me], [e for _, e in me], ruy=True)
            return self.codes(op.outputs[0], y, o.activation)
        x, w = self.get(op.inputs[0]), self.get(op.inputs[1]).astype(np.float64)
        pads = tflite_pads(x.shape[1:3], w.shape[1:3], o.stride, o.dilation, o.padding)
        win = _windows(x.astype(np.float64), w.shape[1:3], o.stride, o.dilation, pads, 0.0)
        acc = np.einsum("nyxijc,oijc->nyxo", win, w).astype(F32)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            acc = acc + self.get(op.inputs[2]).astype(F32)
        return _activation(acc, o.activation)

    def op_DEPTHWISE_CONV_2D(self, op: Operator) -> np.ndarray:
        """Output channel o = c * multiplier + j reads input channel c (zero padding). int8:
        TFLite's depthwise kernels requantise with MultiplyByQuantizedMultiplier's own
        rounding (no ruy), per channel, multiplier in double."""
        o = schema.depthwise_options(op)
        if self.int8(op.inputs[0]):
            s_in, z_in = self.sz(op.inputs[0])
            x = self.get(op.inputs[0]).astype(np.int64) - z_in  # padding holds z_in: 0 here
            w = self.get(op.inputs[1]).astype(np.int64)
            pads = tflite_pads(x.shape[1:3], w.shape[1:3], o.stride, o.dilation, o.padding)
            win = np.repeat(_windows(x, w.shape[1:3], o.stride, o.dilation, pads, 0),
                            o.multiplier, axis=-1)
            acc = np.einsum("nyxijo,ijo->nyxo", win, w[0])
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                acc = acc + self.get(op.inputs[2]).astype(np.int64)
            s_w = np.broadcast_to(self.q[op.inputs[1]].scale, (w.shape[3],))
            s_out, _ = self.sz(op.outputs[0])
            me = [_qmult(float(s_in) * float(sw) / float(s_out)) for sw in s_w]
            y = _mbqm(acc, [m for m, _ in me], [e for _, e in me], ruy=False)
            return self.codes(op.outputs[0], y, o.activation)
        x, w = self.get(op.inputs[0]), self.get(op.inputs[1]).astype(np.float64)
        kernel = w.shape[1:3]
        pads = tflite_pads(x.shape[1:3], kernel, o.stride, o.dilation, o.padding)
        win = _windows(x.astype(np.float64), kernel, o.stride, o.dilation, pads, 0.0)
        win = np.repeat(win, o.multiplier, axis=-1)  # [N, OH, OW, kh, kw, C * multiplier]
        acc = np.einsum("nyxijo,ijo->nyxo", win, w[0]).astype(F32)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            acc = acc + self.get(op.inputs[2]).astype(F32)
        return _activation(acc, o.activation)

    def op_FULLY_CONNECTED(self, op: Operator) -> np.ndarray:
        if self.int8(op.inputs[0]):  # GetQuantizedConvolutionMultipler: float32 product
            (s_in, z_in), (s_out, _) = self.sz(op.inputs[0]), self.sz(op.outputs[0])
            x = self.get(op.inputs[0]).astype(np.int64) - z_in
            w = self.get(op.inputs[1]).astype(np.int64)
            acc = x.reshape(x.shape[0], -1) @ w.T
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                acc = acc + self.get(op.inputs[2]).astype(np.int64)
            s_w = self.q[op.inputs[1]].scale
            if s_w.size == 1:
                me = [_qmult(float(F32(F32(s_in) * s_w[0])) / float(s_out))] * w.shape[0]
            else:
                me = [_qmult(float(s_in) * float(sw) / float(s_out)) for sw in s_w]
            y = _mbqm(acc, [m for m, _ in me], [e for _, e in me], ruy=True)
            return self.codes(op.outputs[0], y, schema.fc_options(op)[0])
        x = self.get(op.inputs[0])
        x = x.reshape(x.shape[0], -1).astype(np.float64)
        acc = (x @ self.get(op.inputs[1]).astype(np.float64).T).astype(F32)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            acc = acc + self.get(op.inputs[2]).astype(F32)
        return acc

    def op_MAX_POOL_2D(self, op: Operator) -> np.ndarray:
        o = schema.pool_options(op)
        x = self.get(op.inputs[0])
        if self.int8(op.inputs[0]):
            pads = tflite_pads(x.shape[1:3], o.kernel, o.stride, (1, 1), o.padding)
            y = _windows(x, o.kernel, o.stride, (1, 1), pads, -(1 << 20)).max(axis=(3, 4))
            return self.codes(op.outputs[0], y - self.sz(op.outputs[0])[1], o.activation)
        pads = tflite_pads(x.shape[1:3], o.kernel, o.stride, (1, 1), o.padding)
        return _windows(x, o.kernel, o.stride, (1, 1), pads, -np.inf).max(axis=(3, 4))

    def _binary(self, op: Operator, fn) -> np.ndarray:
        a, b = (self.get(i) for i in op.inputs[:2])
        y = fn(a.astype(F32), b.astype(F32)).astype(F32)
        return _activation(y, schema.elementwise_activation(op))

    def op_ADD(self, op):
        if self.int8(op.inputs[0]):
            (s1, z1), (s2, z2) = self.sz(op.inputs[0]), self.sz(op.inputs[1])
            s_out, _ = self.sz(op.outputs[0])
            a = self.get(op.inputs[0]).astype(np.int64) - z1
            b = self.get(op.inputs[1]).astype(np.int64) - z2
            a, b = np.broadcast_arrays(a, b)
            big = 2.0 * max(float(s1), float(s2))
            v1 = _mbqm(a * 2**20, *_qmult(float(s1) / big))
            v2 = _mbqm(b * 2**20, *_qmult(float(s2) / big))
            y = _mbqm(v1 + v2, *_qmult(big / float(F32(2**20 * F32(s_out)))))
            return self.codes(op.outputs[0], y, schema.elementwise_activation(op))
        return self._binary(op, np.add)

    def op_SUB(self, op):
        return self._binary(op, np.subtract)

    def op_MUL(self, op):
        if self.int8(op.inputs[0]):
            (s1, z1), (s2, z2) = self.sz(op.inputs[0]), self.sz(op.inputs[1])
            s_out, _ = self.sz(op.outputs[0])
            prod = (self.get(op.inputs[0]).astype(np.int64) - z1) * (
                self.get(op.inputs[1]).astype(np.int64) - z2)
            y = _mbqm(prod, *_qmult(float(s1) * float(s2) / float(s_out)))
            return self.codes(op.outputs[0], y, schema.elementwise_activation(op))
        return self._binary(op, np.multiply)

    def op_DIV(self, op):
        return self._binary(op, np.divide)

    def op_SIGN(self, op):
        return np.sign(self.get(op.inputs[0])).astype(F32)

    def op_RELU(self, op):
        return _activation(self.get(op.inputs[0]).astype(F32), "RELU")

    def op_PRELU(self, op: Operator) -> np.ndarray:
        if self.int8(op.inputs[0]):  # activations.cc: the ratios in float, then double
            (s1, z1), (sa, za) = self.sz(op.inputs[0]), self.sz(op.inputs[1])
            s_out, _ = self.sz(op.outputs[0])
            x = self.get(op.inputs[0]).astype(np.int64) - z1
            a = np.broadcast_to(self.get(op.inputs[1]).astype(np.int64) - za, x.shape)
            pos = _mbqm(x, *_qmult(float(F32(s1) / F32(s_out))))
            neg = _mbqm(x * a, *_qmult(float(F32(F32(s1) * F32(sa)) / F32(s_out))))
            return self.codes(op.outputs[0], np.where(x >= 0, pos, neg))
        x = self.get(op.inputs[0]).astype(F32)
        alpha = self.get(op.inputs[1]).astype(F32)
        return np.where(x >= 0, x, x * alpha).astype(F32)

    def op_MEAN(self, op: Operator) -> np.ndarray:
        """TFLite's float MEAN over H, W: a float32 sum in row-major order (h outer, w inner),
        then one division by the count."""
        if self.int8(op.inputs[0]):  # the centred sum, 1/n folded into s_in/s_out's multiplier
            (s1, z1), (s_out, _) = self.sz(op.inputs[0]), self.sz(op.outputs[0])
            x = self.get(op.inputs[0]).astype(np.int64) - z1
            n = x.shape[1] * x.shape[2]
            m0, e0 = _qmult(float(s1) / float(s_out))
            k = max(0, min(int(math.log2(n)), 32, 31 + e0))
            y = _mbqm(x.sum(axis=(1, 2)), m0 * 2**k // n, e0 - k)
            y = self.codes(op.outputs[0], y)
            return y[:, None, None, :] if schema.reducer_keep_dims(op) else y
        x = self.get(op.inputs[0]).astype(F32)
        axes = sorted(int(a) % x.ndim for a in np.asarray(self.get(op.inputs[1])).reshape(-1))
        if x.ndim != 4 or axes != [1, 2]:
            raise ValueError(f"MEAN over axes {axes} of rank {x.ndim}")
        return _mean_hw(x, schema.reducer_keep_dims(op))

    def op_AVERAGE_POOL_2D(self, op: Operator) -> np.ndarray:
        o = schema.pool_options(op)
        x = self.get(op.inputs[0]).astype(F32)
        if self.int8(op.inputs[0]):
            raise ValueError("int8 AVERAGE_POOL_2D is not supported")
        if tuple(o.kernel) == x.shape[1:3] and (o.padding == "VALID" or (
                o.stride[0] >= x.shape[1] and o.stride[1] >= x.shape[2])):
            return _activation(_mean_hw(x, True), o.activation)
        return _activation(_average_pool(x, o.kernel, o.stride, o.padding), o.activation)

    def op_CONCATENATION(self, op: Operator) -> np.ndarray:
        axis, act = schema.concat_options(op)
        if self.int8(op.inputs[0]):  # TFLite's int8 kernel: equal scales, a plain copy
            if len({self.sz(i) for i in (*op.inputs, op.outputs[0])}) != 1:
                raise ValueError("int8 CONCATENATION with different quantisation")
            return np.concatenate([self.get(i) for i in op.inputs], axis=axis)
        parts = [self.get(i).astype(F32) for i in op.inputs]
        return _activation(np.concatenate(parts, axis=axis), act)

    def op_RESHAPE(self, op: Operator) -> np.ndarray:
        x = self.get(op.inputs[0])
        shape = self.m.tensors[op.outputs[0]].shape
        return x.reshape((x.shape[0],) + tuple(shape[1:]))

    def op_SOFTMAX(self, op: Operator) -> np.ndarray:
        x = self.get(op.inputs[0]).astype(F32)
        z = ((x - x.max(axis=-1, keepdims=True)) * F32(schema.softmax_beta(op))).astype(F32)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True, dtype=F32)).astype(F32)

    def op_DEQUANTIZE(self, op: Operator) -> np.ndarray:
        """x86 (NEON_2_SSE): float32(q * s) + float32(-z * s), as LCE's interpreter gives."""
        s, z = self.sz(op.inputs[0])
        q = self.get(op.inputs[0]).astype(F32)
        return ((q * F32(s)).astype(F32) + F32(-z * float(F32(s)))).astype(F32)

    def op_QUANTIZE(self, op: Operator) -> np.ndarray:
        """round(double(x) / double(s)) half away from zero, + z, clamped."""
        s, z = self.sz(op.outputs[0])
        v = self.get(op.inputs[0]).astype(np.float64) / float(F32(s))
        r = np.copysign(np.floor(np.abs(v) + 0.5), v)
        return np.clip(r + z, -128, 127).astype(np.int64)

    # ------------------------------------------------------------------ LCE ops
    def op_LceQuantize(self, op: Operator) -> np.ndarray:
        if self.int8(op.inputs[0]):  # bit 1 iff q < zero point
            return pack(self.get(op.inputs[0]) - self.sz(op.inputs[0])[1])
        return pack(self.get(op.inputs[0]))

    def op_LceDequantize(self, op: Operator) -> np.ndarray:
        channels = self.m.tensors[op.outputs[0]].shape[-1]
        return unpack(self.get(op.inputs[0]), channels)

    def op_LceBconv2d(self, op: Operator) -> np.ndarray:
        a = lce.bconv_attributes(op.custom_options, f"{self.m.file}: ")
        x = self.get(op.inputs[0])
        channels = a.channels_in if a.channels_in is not None else x.shape[-1]
        if x.dtype != np.int32:  # float input: LCE binarises it first
            x = pack(x)
        f_t = self.m.tensors[op.inputs[1]]
        groups = lce.bconv_groups(f_t.data, f_t.type_code, channels, f_t.data.shape[0],
                                  f"{self.m.file}: ")
        values = lce.filter_values(f_t.data, f_t.type_code, channels // groups,
                                   f"{self.m.file}: ")
        f_words = pack(values.astype(F32))
        kernel = values.shape[1:3]
        k = kernel[0] * kernel[1] * (channels // groups)
        pads = tflite_pads(x.shape[1:3], kernel, a.stride, a.dilation, a.padding)
        win = _windows(x, kernel, a.stride, a.dilation, pads, 0)  # 0 words = +1 values
        # group g: its words of the input (a group is a multiple of 32 channels) x its rows
        gw, go = win.shape[-1] // groups, values.shape[0] // groups
        popcount = np.concatenate([np.bitwise_count(
            (win[:, :, :, None, ..., g * gw:(g + 1) * gw] ^ f_words[None, None, None,
                                                                   g * go:(g + 1) * go])
            .view(np.uint32)).sum(axis=(4, 5, 6), dtype=np.int64) for g in range(groups)],
            axis=3)  # [N, OH, OW, O]
        y = k - 2 * popcount
        if a.pad_values == 0 and any(pads):
            # zero padding: LCE removes the +1 the padded taps contributed
            inside = _windows(np.ones(x.shape[:3] + (1,), np.int64), kernel, a.stride,
                              a.dilation, pads, 0)[..., 0]  # [N, OH, OW, kh, kw]
            wsum = values.astype(np.int64).sum(axis=3)  # [O, kh, kw]
            y = y - np.einsum("nyxij,oij->nyxo", 1 - inside, wsum)
        out_t = self.m.tensors[op.outputs[0]]
        if out_t.type_code == 2:
            thr = self.get(op.inputs[4]).astype(np.int64)
            bit = (k - y) // 2 > thr
            return pack(np.where(bit, -1.0, 1.0).astype(F32))
        if a.activation == "RELU":  # LCE clamps the accumulator, before multiplier and bias
            y = np.maximum(y, 0)
        elif a.activation != "NONE":
            raise ValueError(f"fused activation {a.activation}")
        mult = self.get(op.inputs[2]).astype(F32)
        bias = self.get(op.inputs[3]).astype(F32)
        return ((y.astype(F32) * mult).astype(F32) + bias).astype(F32)

    def op_LceBMaxPool2d(self, op: Operator) -> np.ndarray:
        a = lce.pool_attributes(op.custom_options, f"{self.m.file}: ")
        x = self.get(op.inputs[0])
        pads = tflite_pads(x.shape[1:3], a.kernel, a.stride, (1, 1), a.padding)
        win = _windows(x, a.kernel, a.stride, (1, 1), pads, -1)  # all-ones words: AND identity
        return np.bitwise_and.reduce(win.reshape(win.shape[:3] + (-1, win.shape[-1])), axis=3)


def run_reference(path: str | Path, x: np.ndarray) -> np.ndarray:
    """Output of the .tflite model at `path` on batch `x` (NHWC), by the NumPy reading."""
    return Reference(schema.load(path)).run(x)
