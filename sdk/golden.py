"""The golden model: NumPy, integer-exact, vectorised over the batch.

It runs the target-form IR (after `passes.pipeline.lower`) the way the backends must: binary and
ternary layers as XNOR-popcount over the packed bit layout, multi-bit first layers as exact
integer dot products, thresholds as integer compares. Only `Scores` leaves the integers, with
the source's float ops in float32 in the order the source (onnxruntime) applies them.
Every backend is compared with this module, and this module with onnxruntime.

Real-valued layers (residual adds, affine results, PReLU, averages: `layers.REAL_VALUED`) run in
one of two modes. Faithful (default, `edge-sdk run`): float32, as the source's executor
evaluates them, so the binary parts stay exact and the output equals onnxruntime's. Fixed point
(`fixed_point=True`, `run --fixed-point`): the integer rules of sdk/fixedpoint.py with the
parameters the lowering recorded in the IR, i.e. what the targets compute. Graphs without
real-valued layers give the same result in both modes.

8-bit layers (`Int8Weights`) are exact integer products in both modes. `Quantize` rounds as the
source's quantiser does (faithful) or by sdk/fixedpoint.py's integer rule (fixed point). A float
layer quantised by a calibration set (`Int8Weights.float_values`) computes the source's float32
product in faithful mode and the 8-bit one in fixed-point mode.

TFLite int8 layers (`layers.TFLITE_INT8`, LCE's int8 conversion) are TFLite's own integer
kernels (sdk/tflite_int8.py), the same in both modes.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import bitpack, tflite_int8
from . import fixedpoint as fx
from .errors import EdgeError
from .ir import layers as L
from .ir.graph import Graph
from .thresholds import apply_threshold

_EXACT_F64 = 1 << 53


def run(graph: Graph, x: np.ndarray, fixed_point: bool = False) -> np.ndarray:
    """The model's (single) output for a batch `x` ([N, *input shape])."""
    return run_all(graph, x, fixed_point)[graph.outputs[0]]


def run_all(graph: Graph, x: np.ndarray, fixed_point: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of the graph for a batch: used by tests and the layer-by-layer diff.

    Real-valued tensors are float32 (faithful mode) or the int64-held int32 fixed-point
    integers (`fixed_point`); see the module docstring."""
    if not graph.lowered:
        raise EdgeError("the golden model runs lowered IR; call passes.pipeline.lower first")
    infos = graph.infos()
    env: dict[str, np.ndarray] = {}
    for layer in graph.layers:
        args = [env[name] for name in layer.inputs]
        if isinstance(layer, L.TFLITE_INT8):  # integer in both modes (sdk/tflite_int8.py)
            env[layer.output] = tflite_int8.run(layer, args)
        elif isinstance(layer, L.Quantize):
            env[layer.output] = run_quantize(layer, args[0], infos[layer.inputs[0]],
                                             fixed_point)
        elif isinstance(layer, L.REAL_VALUED) or (
                isinstance(layer, L.Scores) and infos[layer.inputs[0]].kind == "fixed"):
            ins = [infos[name] for name in layer.inputs]
            run_real = _run_fixed if fixed_point else _run_float
            env[layer.output] = run_real(layer, args, ins, infos[layer.output])
        else:
            env[layer.output] = _run_layer(layer, args, x, infos, fixed_point)
    return env


def run_quantize(layer: L.Quantize, a: np.ndarray, info, fixed_point: bool) -> np.ndarray:
    """Quantize (see layers.Quantize): q - zero_point as int64, or (faithful mode, inserted by
    calibration) the float input unchanged."""
    zp, lo, hi = int(layer.zero_point), int(layer.lo), int(layer.hi)
    if fixed_point:
        if layer.mult is None:
            raise EdgeError(f"layer '{layer.name}': Quantize not lowered to fixed point "
                            "(passes.fixed_point)")
        return fx.quantize(a, layer.mult, layer.shift, zp, lo, hi)
    if not layer.in_source:
        return np.asarray(a).astype(np.float32) if np.issubdtype(
            np.asarray(a).dtype, np.floating) else a
    if layer.rounding == "tflite":
        return quantize_tflite(np.asarray(a).astype(np.float32), layer.scale, zp, lo, hi)
    return quantize_float(np.asarray(a).astype(np.float32), layer.scale, zp, lo, hi)


def quantize_tflite(x: np.ndarray, scale: float, zp: int, lo: int, hi: int) -> np.ndarray:
    """TFLite's QUANTIZE float -> int8 (AffineQuantize): round half away from zero of the
    double quotient x / scale, plus the zero point, clamped; returns q - z as int64. (Clamped
    in double before the integer cast, where TFLite's cast of a huge value is undefined.)"""
    v = x.astype(np.float64) / np.float64(np.float32(scale))
    if not np.all(np.isfinite(v)):
        raise EdgeError("QUANTIZE of NaN or infinity")
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    r = np.clip(r, -(1 << 40), 1 << 40).astype(np.int64) + zp
    return np.clip(r, lo, hi) - zp


def quantize_float(x: np.ndarray, scale: float, zp: int, lo: int, hi: int) -> np.ndarray:
    """QONNX Quant's integer step, in float32 as its executor computes it: x / s + z, clamped
    to [lo, hi], rounded half to even; returns q - z as int64."""
    q = (x / np.float32(scale)).astype(np.float32)
    q = (q + np.float32(zp)).astype(np.float32)
    q = np.where(q > hi, np.float32(hi), q)
    q = np.where(q < lo, np.float32(lo), q)
    return np.round(q).astype(np.int64) - zp


def _run_layer(layer: L.Layer, args: list[np.ndarray], x: np.ndarray, infos,
               fixed_point: bool = False) -> np.ndarray:
    if isinstance(layer, L.Input):
        return quantise_input(layer, x)
    (a,) = args
    if (not fixed_point and isinstance(layer, (L.Dense, L.Conv2d))
            and getattr(layer.weights, "float_values", None) is not None):
        return float_linear(layer, a)
    if isinstance(layer, L.GroupConv2d):
        return group_conv2d(a, layer, infos[layer.inputs[0]].kind)
    if isinstance(layer, L.Dense):
        return integer_dot(a.reshape(a.shape[0], -1), layer.weights, infos[layer.inputs[0]].kind)
    if isinstance(layer, L.Conv2d):
        return conv2d(a, layer, infos[layer.inputs[0]].kind)
    if isinstance(layer, L.Threshold):
        if np.issubdtype(a.dtype, np.floating):  # a calibrated float layer, faithful mode
            if not layer.mode:
                raise EdgeError(f"layer '{layer.name}': thresholds float data but keeps no "
                                "source ops")
            return binarize(float_ops(a, layer.ops), layer.mode)
        return apply_threshold(a, layer.tau, layer.flip, layer.zero, axis=1)
    if isinstance(layer, L.MaxPool):
        return maxpool(a, layer)
    if isinstance(layer, L.Flatten):
        return a.reshape(a.shape[0], -1)
    if isinstance(layer, L.Reshape):
        return a.reshape((a.shape[0],) + tuple(layer.shape))
    if isinstance(layer, L.Transpose):
        return np.ascontiguousarray(a.transpose(0, *(p + 1 for p in layer.perm)))
    if isinstance(layer, L.Scores):
        return float_ops(a, layer.ops)
    raise EdgeError(f"layer '{layer.name}': the golden model cannot run {type(layer).__name__}")


def quantise_input(layer: L.Input, x: np.ndarray) -> np.ndarray:
    """Check and convert a user batch to the input's integers (never rounds silently)."""
    x = np.asarray(x)
    shape = tuple(layer.shape)
    if x.dtype == bool or not (np.issubdtype(x.dtype, np.number)):
        raise EdgeError(f"input: dtype {x.dtype} is not numeric")
    if np.iscomplexobj(x):
        raise EdgeError(f"input: complex dtype {x.dtype} is not supported")
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise EdgeError(
            f"input: shape {list(x.shape)} does not match the model's input [N, "
            f"{', '.join(map(str, shape))}] (N = batch)"
        )
    if layer.rounding:
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise EdgeError("input: holds NaN or infinity")
        if layer.rounding != "half_even":
            raise EdgeError(f"input: unknown rounding {layer.rounding!r}")
        return quantize_float(x.astype(np.float32), layer.scale, 0, layer.lo, layer.hi)
    if np.issubdtype(x.dtype, np.integer):
        q = x.astype(np.int64)
        if layer.scale != 1.0 or layer.zero_point != 0:
            q = x.astype(np.float64) / layer.scale + layer.zero_point
    else:
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise EdgeError("input: holds NaN or infinity")
        q = xf / layer.scale + layer.zero_point
    if q.dtype != np.int64:
        frac = q != np.round(q)
        if frac.any():
            idx = tuple(int(i) for i in np.argwhere(frac)[0])
            raise EdgeError(
                f"input: value {x[idx]!r} at index {list(idx)} is not an integer; the model takes "
                f"integers in [{layer.lo}, {layer.hi}] (scale {layer.scale:g}, zero point "
                f"{layer.zero_point}); quantise real-valued inputs first"
            )
        q = np.round(q).astype(np.int64)
    bad = (q < layer.lo) | (q > layer.hi)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise EdgeError(f"input: value {x[idx]!r} at index {list(idx)} is outside the model's "
                        f"input range [{layer.lo}, {layer.hi}]")
    return q


def float_linear(layer: L.Dense | L.Conv2d, a: np.ndarray) -> np.ndarray:
    """Faithful mode of a float layer quantised by calibration: the source's float32 product
    with its float weights, divided by the accumulator unit (per output channel) so that the
    ops that follow (which start by multiplying by the unit) apply unchanged."""
    w = layer.weights
    wf = np.asarray(w.float_values, dtype=np.float32)
    unit = np.asarray(w.unit, dtype=np.float32)
    a = np.asarray(a).astype(np.float32)
    if isinstance(layer, L.Conv2d):  # a GroupConv2d: each group its own channels and rows
        n, g = a.shape[0], getattr(layer, "groups", 1)
        cin, rows = layer.in_channels // g, wf.shape[0] // g
        parts = []
        for i in range(g):
            win = _windows(a[:, i * cin:(i + 1) * cin], layer.kernel, layer.strides,
                           layer.pads, layer.dilations, 0.0)
            _, c, oh, ow, kh, kw = win.shape
            cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
            parts.append((cols @ wf[i * rows:(i + 1) * rows].T).astype(np.float32))
        y = np.concatenate(parts, axis=1) / unit
        return y.astype(np.float32).reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
    y = (a.reshape(a.shape[0], -1) @ wf.T).astype(np.float32) / unit
    return y.astype(np.float32)


def integer_dot(a: np.ndarray, weights: L.Weights, kind: str) -> np.ndarray:
    """a [N, K] (integers or ±1/0) times weights [O, K]^T -> int64 [N, O]."""
    if L.is_int8(weights):
        kind = "int"  # 8-bit weights: an exact integer product whatever the data
    packed = weights.pack()
    if kind in ("bipolar", "ternary"):
        sign, mask = bitpack.pack_values(a)
        return bitpack.popcount_dot(sign, mask, packed.sign, packed.mask, packed.k)
    # Multi-bit integers: every partial sum is an integer below 2**53, so float64 is exact.
    w = weights.unpack().astype(np.float64)
    bound = int(np.abs(a).max(initial=0)) * int(np.abs(w).sum(axis=1).max(initial=0))
    if bound >= _EXACT_F64:
        raise EdgeError("accumulator range exceeds 2**53; layer too large for exact evaluation")
    return (a.astype(np.float64) @ w.T).astype(np.int64)


def _windows(a: np.ndarray, kernel, strides, pads, dilations, fill) -> np.ndarray:
    """[N, C, H, W] -> [N, C, OH, OW, kh, kw] with padding value `fill`."""
    t, lft, b, r = pads
    if any(pads):
        a = np.pad(a, ((0, 0), (0, 0), (t, b), (lft, r)), constant_values=fill)
    kh, kw = kernel
    dh, dw = dilations
    win = sliding_window_view(a, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return win[:, :, :: strides[0], :: strides[1], ::dh, ::dw]


def conv2d(a: np.ndarray, layer: L.Conv2d, kind: str) -> np.ndarray:
    n = a.shape[0]
    win = _windows(a, layer.kernel, layer.strides, layer.pads, layer.dilations, layer.pad_value)
    _, c, oh, ow, kh, kw = win.shape
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
    out = integer_dot(cols, layer.weights, kind)
    return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)


def group_conv2d(a: np.ndarray, layer: L.GroupConv2d, kind: str) -> np.ndarray:
    """Each group of output rows is an ordinary conv of its own slice of input channels."""
    g = layer.groups
    cin, rows = layer.in_channels // g, layer.weights.rows // g
    w = layer.weights.unpack()
    outs = []
    for i in range(g):
        part = L.Conv2d(layer.name, layer.inputs, layer.output,
                        weights=(L.Int8Weights if L.is_int8(layer.weights) else L.IntWeights)(
                            w[i * rows:(i + 1) * rows]), in_channels=cin,
                        kernel=layer.kernel, strides=layer.strides, pads=layer.pads,
                        dilations=layer.dilations, pad_value=layer.pad_value)
        outs.append(conv2d(a[:, i * cin:(i + 1) * cin], part, kind))
    return np.concatenate(outs, axis=1)


def maxpool(a: np.ndarray, layer: L.MaxPool) -> np.ndarray:
    info = np.finfo(a.dtype) if np.issubdtype(a.dtype, np.floating) else np.iinfo(a.dtype)
    hi = _windows(a, layer.kernel, layer.strides, layer.pads, (1, 1), info.min).max(axis=(4, 5))
    if layer.select_min is None:
        return hi
    lo = _windows(a, layer.kernel, layer.strides, layer.pads, (1, 1), info.max).min(axis=(4, 5))
    sel = np.asarray(layer.select_min, dtype=bool).reshape(1, -1, 1, 1)
    return np.where(sel, lo, hi)


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def float_ops(acc: np.ndarray, ops: list[L.FloatOp]) -> np.ndarray:
    """Apply the source's float ops in float32, in the source's order.

    BatchNormalization is evaluated as onnxruntime's CPU kernel does:
    s = gamma / sqrt(var + eps) (as 1/sqrt then times gamma), b = beta - mean * s, y = x*s + b.
    """
    y = acc.astype(np.float32)
    nd = y.ndim
    for op in ops:
        if isinstance(op, L.Mul):
            y = y * _per_channel(op.values, nd)
        elif isinstance(op, L.Add):
            y = y + _per_channel(op.values, nd)
        elif isinstance(op, L.Div):
            y = y / _per_channel(op.values, nd)
        elif isinstance(op, L.BatchNorm):
            var = np.asarray(op.var, np.float32)
            inv_std = np.float32(1) / np.sqrt(var + np.float32(op.eps))
            scale = inv_std * np.asarray(op.gamma, np.float32)
            bias = np.asarray(op.beta, np.float32) - np.asarray(op.mean, np.float32) * scale
            y = y * _per_channel(scale, nd) + _per_channel(bias, nd)
        elif isinstance(op, L.Softmax):
            z = (y - y.max(axis=1, keepdims=True)) * np.float32(op.beta)
            e = np.exp(z.astype(np.float32))
            y = e / e.sum(axis=1, keepdims=True, dtype=np.float32)
        y = y.astype(np.float32)
    return y


def binarize(y: np.ndarray, mode: str) -> np.ndarray:
    """Sign (+1, 0, -1), or +1/-1 by y >= 0 ("ge0") or y > 0 ("gt0"), as int64."""
    if mode == "sign":
        return np.sign(y).astype(np.int64)
    pos = y >= 0 if mode == "ge0" else y > 0
    return np.where(pos, 1, -1).astype(np.int64)


def _run_float(layer: L.Layer, args: list[np.ndarray], ins, out) -> np.ndarray:
    """Faithful mode: float32, one IEEE operation per source op (as onnxruntime computes)."""
    f32 = [np.asarray(a).astype(np.float32) for a in args]
    a = f32[0]
    if isinstance(layer, L.Requant):
        return float_ops(a, layer.ops)
    if isinstance(layer, L.Scores):
        return float_ops(a, layer.ops)
    if isinstance(layer, L.AddTensors):
        return (f32[0] + f32[1]).astype(np.float32)
    if isinstance(layer, L.Concat):
        if out.kind in ("int", "bipolar", "ternary"):
            return np.concatenate(args, axis=1)
        return np.concatenate(f32, axis=1)
    if isinstance(layer, L.PRelu):
        slope = _per_channel(layer.slope, a.ndim)
        return np.where(a < 0, a * slope, a).astype(np.float32)
    if isinstance(layer, L.GlobalAvgPool):
        n, c = a.shape[2] * a.shape[3], a.shape[1]
        rows = a.reshape(-1, n)
        if layer.float_kernel == "ReduceMean":
            total = _eigen_sum4(rows)
        else:
            total = _lanes_sum4(rows, np.zeros(len(rows), dtype=np.int64))
        y = (total / np.float32(n)).astype(np.float32).reshape(-1, c)
        return y[:, :, None, None] if layer.keepdims else y
    if isinstance(layer, L.AvgPool):
        return avg_pool_float(a, layer)
    if isinstance(layer, L.FixedThreshold):
        return binarize(float_ops(a, layer.ops), layer.mode)
    raise EdgeError(f"layer '{layer.name}': the golden model cannot run {type(layer).__name__}")


def _run_fixed(layer: L.Layer, args: list[np.ndarray], ins, out) -> np.ndarray:
    """Fixed-point mode: the integer rules of sdk/fixedpoint.py (what the targets compute)."""
    a = args[0]
    if isinstance(layer, L.Scores):
        real = a.astype(np.float64) * 2.0 ** -ins[0].frac
        return float_ops(real.astype(np.float32), layer.ops)
    if isinstance(layer, L.FixedThreshold):
        return apply_threshold(a, layer.tau, layer.flip, layer.zero, axis=1)
    if out.kind != "fixed":  # Concat of ±1 or integer tensors
        return np.concatenate(args, axis=1)
    if isinstance(layer, L.Requant):
        y = fx.affine(a, layer.mult, layer.add, layer.shift)
    elif isinstance(layer, L.AddTensors):
        y = sum(fx.align(v.astype(np.int64), _frac(i), out.frac) for v, i in zip(args, ins))
    elif isinstance(layer, L.Concat):
        y = np.concatenate([fx.align(v.astype(np.int64), _frac(i), out.frac)
                            for v, i in zip(args, ins)], axis=1)
    elif isinstance(layer, L.PRelu):
        y = fx.prelu(a, layer.slope_q)
    elif isinstance(layer, L.GlobalAvgPool):
        y = fx.gap(a)
        if layer.keepdims:
            y = y[:, :, None, None]
    elif isinstance(layer, L.AvgPool):
        y = fx.avg_pool(a, layer.kernel, layer.strides, layer.pads, layer.count_include_pad,
                        fx.GAP_SHIFT - (out.frac - _frac(ins[0])))
    else:
        raise EdgeError(f"layer '{layer.name}': the golden model cannot run "
                        f"{type(layer).__name__}")
    return fx.check_int32(np.asarray(y, dtype=np.int64), f"layer '{layer.name}'")


def avg_pool_float(a: np.ndarray, layer: L.AvgPool) -> np.ndarray:
    """Windowed average in float32 in the source executor's order (layers.AvgPool): padded
    taps are 0.0, and adding an exact zero to a float32 sum changes nothing (up to the sign of
    a zero), so summing over the zero-padded window equals skipping the padded taps."""
    t, lft, b, r = layer.pads
    a = np.pad(a.astype(np.float32), ((0, 0), (0, 0), (t, b), (lft, r)))
    (kh, kw), (sh, sw) = layer.kernel, layer.strides
    counts = fx.avg_pool_counts((a.shape[2] - t - b, a.shape[3] - lft - r), layer.kernel,
                                layer.strides, layer.pads, layer.count_include_pad)
    oh, ow = counts.shape
    rows = slice(None, sh * (oh - 1) + 1, sh)
    total = np.zeros(a.shape[:2] + (oh, ow), dtype=np.float32)
    if layer.float_kernel == "mlas":  # column sums over the rows, then across
        for j in range(kw):
            col = np.zeros_like(total)
            for i in range(kh):
                col = (col + a[:, :, i::][:, :, rows, j::][..., :sw * (ow - 1) + 1:sw]
                       ).astype(np.float32)
            total = (total + col).astype(np.float32)
    else:  # "rows": the taps row by row
        for i in range(kh):
            for j in range(kw):
                total = (total + a[:, :, i::][:, :, rows, j::][..., :sw * (ow - 1) + 1:sw]
                         ).astype(np.float32)
    return (total / counts.astype(np.float32)).astype(np.float32)


def _frac(info) -> int:
    return info.frac if info.kind == "fixed" else 0


def _tree4(acc: np.ndarray) -> np.ndarray:
    """Horizontal sum of 4-lane float32 packets: (l0 + l2) + (l1 + l3)."""
    half = (acc[:, :2] + acc[:, 2:]).astype(np.float32)
    return (half[:, 0] + half[:, 1]).astype(np.float32)


def _lanes_sum4(rows: np.ndarray, start: np.ndarray, two: bool = False) -> np.ndarray:
    """Row sums in float32 as 4-lane SIMD code adds them: from `start` (per row), packets of
    4 into one accumulator (`two`: two accumulators over pairs of packets, then one more
    packet, as Eigen's unrolled reduction), a tree over the lanes, then the skipped head and
    the tail one by one."""
    out = np.empty(len(rows), dtype=np.float32)
    n = rows.shape[1]
    for st in np.unique(start):
        sel = start == st
        v = rows[sel].astype(np.float32)
        st = int(min(st, n))
        packets = (n - st) // 4
        a1 = st + 4 * packets
        if packets == 0:
            s = v[:, 0]
            for i in range(1, n):
                s = (s + v[:, i]).astype(np.float32)
            out[sel] = s
            continue
        p0 = v[:, st:st + 4]
        if two and packets > 1:
            a2 = st + 8 * (packets // 2)
            p1 = v[:, st + 4:st + 8]
            for i in range(st + 8, a2, 8):
                p0 = (p0 + v[:, i:i + 4]).astype(np.float32)
                p1 = (p1 + v[:, i + 4:i + 8]).astype(np.float32)
            p0 = (p0 + p1).astype(np.float32)
            if a1 > a2:
                p0 = (p0 + v[:, a2:a2 + 4]).astype(np.float32)
        else:
            for i in range(st + 4, a1, 4):
                p0 = (p0 + v[:, i:i + 4]).astype(np.float32)
        s = _tree4(p0)
        for i in (*range(st), *range(a1, n)):
            s = (s + v[:, i]).astype(np.float32)
        out[sel] = s
    return out


def _eigen_sum4(rows: np.ndarray) -> np.ndarray:
    """onnxruntime's ReduceMean sum (Eigen, SSE packets): each row of the contiguous [N*C, n]
    buffer starts its packets at the first 16-byte-aligned element."""
    n = rows.shape[1]
    start = (-(np.arange(len(rows), dtype=np.int64) * n)) % 4
    return _lanes_sum4(rows, start, two=True)
