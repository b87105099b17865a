"""Deterministic binary/ternary network builders, one family per exporter quirk worth testing.

Every builder takes `seed` (numpy default_rng) and returns a checked onnx.ModelProto with
float32 input "x" (batch dim "N") and output "y". Feed integer-valued float32 inputs in
INPUT_RANGE (any non-negative integer range works: the optional input Relu is a no-op).
Incidental structure (input Relu/Flatten, Identity, Clip before Sign, how the Where
constants are spelled, Gemm vs MatMul where not a parameter) is drawn from the seed, so
sweeping seeds sweeps the spellings.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from . import blocks as b
from ._graph import DEFAULT_OPSET, GraphBuilder

INPUT_RANGE: tuple[int, int] = (0, 15)
# Mean square of a uniform integer in INPUT_RANGE: scales BN statistics of the first layer.
_INPUT_MS = float(np.mean(np.arange(INPUT_RANGE[0], INPUT_RANGE[1] + 1) ** 2))


def _tie_points(k: int, first: bool) -> list[int]:
    """Accumulator values that occur often: near 0, with the parity a +-1 input forces."""
    if first:
        return [-2, -1, 0, 1, 2]
    return [v for v in range(-2, 3) if (v - k) % 2 == 0 and abs(v) <= k]


def _mlp(
    seed: int,
    sizes: Sequence[int],
    *,
    act: str,
    weights: str,
    bn: bool,
    bias: bool,
    dense: str,
    final_bn: bool,
    opset: int,
    name: str,
    bn_mode: str = "random",
    torch_style: bool = False,
) -> onnx.ModelProto:
    """Shared MLP body; bn_mode is "random", "negative" (all gammas < 0) or "tie"."""
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes={sizes}: need at least input and output width, all >= 1")
    if act != "where_shape":
        b.check_choice("act", act, b.ACT_KINDS)
    b.check_choice("weights", weights, b.WEIGHT_KINDS)
    b.check_choice("dense", dense, b.DENSE_KINDS)
    rng = np.random.default_rng(seed)
    g = GraphBuilder(name, opset)
    h = g.add_input("x", ["N", sizes[0]])
    if not torch_style and rng.random() < 0.5:
        h = g.op("Relu", [h])  # the uint8-like input is non-negative: a no-op
    if not torch_style and rng.random() < 0.25:
        h = g.op("Flatten", [h], axis=1)  # nn.Flatten at the model start: a no-op on [N, K]
    ms_in = _INPUT_MS
    n_layers = len(sizes) - 1
    tie_eps = float(2.0**-10)  # first tie layer: exact in any precision; later: float32 only
    for i in range(n_layers):
        k, n = sizes[i], sizes[i + 1]
        last = i == n_layers - 1
        w, wb = b.draw_weights(rng, weights, (n, k))
        if bias and wb is None:
            wb = rng.normal(0.0, 1.0, n).astype(b.F32)
        h = b.dense(g, rng, h, w, wb, kind=weights, style=dense, hint=f"fc{i}")
        acc_std = np.sqrt(k * ms_in) * b.row_magnitude(w)
        if last:
            if final_bn:
                p = b.random_bn(rng, acc_std, acc_mean=wb, negative_gamma=bn_mode == "negative")
                h = b.batch_norm(g, h, p, hint=f"bn{i}", torch_style=torch_style)
            break
        if bn:
            dedup = False
            if bn_mode == "tie":
                p, _ = b.tie_bn(rng, acc_std, _tie_points(k, i == 0), epsilon=tie_eps)
                tie_eps = 1e-5
            else:
                p = b.random_bn(rng, acc_std, acc_mean=wb, negative_gamma=bn_mode == "negative")
                if torch_style and i == 0:  # a fresh-looking BN: running_var equals weight
                    p.gamma = (np.abs(p.gamma) + b.F32(0.5)).astype(b.F32)
                    p.var, dedup = p.gamma.copy(), True
            h = b.batch_norm(g, h, p, hint=f"bn{i}", torch_style=torch_style, var_is_gamma=dedup)
        if not torch_style:
            h = b.maybe_identity(g, rng, h)
        h = b.activation(g, rng, h, act, channels=n, rank=2, hint=f"act{i}")
        ms_in = 1.0
    g.set_output(h, ["N", sizes[-1]])
    return g.model()


def mlp(
    seed: int,
    sizes: Sequence[int] = (64, 96, 10),
    act: str = "sign",
    weights: str = "pm1",
    bn: bool = True,
    bias: bool = False,
    dense: str = "gemm",
    final_bn: bool = True,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """Multi-bit input -> [dense -> BN -> act]* -> dense -> optional final BN (scores).

    act: "sign" | "where"; weights: "pm1" | "sign" | "rowscale" | "ternary" (rowscale
    always carries a bias); dense: "gemm" (transB=1) | "matmul" (+ Add for a bias).
    """
    return _mlp(
        seed,
        sizes,
        act=act,
        weights=weights,
        bn=bn,
        bias=bias,
        dense=dense,
        final_bn=final_bn,
        opset=opset,
        name="mlp",
    )


def odd_mlp(seed: int) -> onnx.ModelProto:
    """Odd widths (K=67, N=33) so packing into 8/32-bit words leaves ragged tails."""
    return _mlp(
        seed,
        (67, 33, 33, 10),
        act="sign",
        weights="pm1",
        bn=True,
        bias=False,
        dense="gemm",
        final_bn=True,
        opset=DEFAULT_OPSET,
        name="odd_mlp",
    )


def neg_gamma_mlp(seed: int) -> onnx.ModelProto:
    """Every BN gamma negative, so every threshold comparison flips direction.

    Activation alternates with the seed: even seeds use Sign, odd ones Where(>= 0).
    """
    act = "sign" if seed % 2 == 0 else "where"
    return _mlp(
        seed,
        (40, 32, 24, 10),
        act=act,
        weights="pm1",
        bn=True,
        bias=False,
        dense="gemm",
        final_bn=True,
        opset=DEFAULT_OPSET,
        name="neg_gamma_mlp",
        bn_mode="negative",
    )


def tie_mlp(seed: int) -> onnx.ModelProto:
    """Hidden BNs output exactly 0.0 at common integer accumulators, so Sign gives 0.

    About 3/4 of hidden channels tie (both gamma signs). The first hidden BN uses
    eps = 2^-10 with var + eps exactly 1 or 4; the second uses eps = 1e-5 with var picked
    so that var + eps rounds to exactly 1 or 4 in float32 only.
    """
    return _mlp(
        seed,
        (12, 24, 17, 10),
        act="sign",
        weights="pm1",
        bn=True,
        bias=False,
        dense="gemm",
        final_bn=True,
        opset=DEFAULT_OPSET,
        name="tie_mlp",
        bn_mode="tie",
    )


def tie_where_mlp(seed: int) -> onnx.ModelProto:
    """tie_mlp with Where(x >= 0, 1, -1): an exact 0 (or -0.0) becomes +1."""
    return _mlp(
        seed,
        (12, 24, 17, 10),
        act="where",
        weights="pm1",
        bn=True,
        bias=False,
        dense="gemm",
        final_bn=True,
        opset=DEFAULT_OPSET,
        name="tie_where_mlp",
        bn_mode="tie",
    )


def where_cast_mlp(seed: int) -> onnx.ModelProto:
    """What torch.onnx.export(dynamo=False) writes for an STE sign inlined as
    torch.where(x >= 0, ones_like(x), -ones_like(x)) after bias-free Linear + BatchNorm1d:
    MatMul, BN with momentum/training_mode, Constant 0-d zero, Shape -> ConstantOfShape ->
    Neg, and an Identity-deduplicated BN running_var.
    """
    return _mlp(
        seed,
        (48, 64, 32, 10),
        act="where_shape",
        weights="pm1",
        bn=True,
        bias=False,
        dense="matmul",
        final_bn=True,
        opset=DEFAULT_OPSET,
        name="where_cast_mlp",
        torch_style=True,
    )


def external_data_mlp(seed: int, path: str | os.PathLike[str]) -> Path:
    """Save mlp(seed) to `path` with every initializer in `<name>.onnx.data` beside it."""
    path = Path(path)
    model = mlp(seed)
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + ".data",
        size_threshold=0,
    )
    return path


def _pool_pads(rng: np.random.Generator, h: int, w: int) -> list[int]:
    """MaxPool pads: none, symmetric 1 (torch padding=1), or end-only 1 on odd sides."""
    options = [[1, 1, 1, 1]]
    if h >= 2 and w >= 2:
        options.append([0, 0, 0, 0])
    if h % 2 or w % 2:
        options.append([0, 0, h % 2, w % 2])
    return options[int(rng.integers(len(options)))]


def cnn(
    seed: int,
    in_shape: Sequence[int] = (1, 8, 8),
    channels: Sequence[int] = (8, 16),
    act: str = "where",
    pool: bool = True,
    pads: int = 1,
    strides: int = 1,
    weights: str = "pm1",
    n_out: int = 10,
    opset: int = DEFAULT_OPSET,
    nhwc: bool = False,
) -> onnx.ModelProto:
    """[3x3 conv -> BN -> act]* -> optional MaxPool 2x2 -> Flatten/Reshape -> dense -> BN.

    Zero padding of binarized activations feeds real zeros into the next conv. The
    flatten is Flatten, Reshape [-1, K] or Reshape [0, -1], and the dense layer Gemm or
    MatMul, both drawn from the seed. `nhwc`: the input is [N, H, W, C] and a Transpose
    (perm 0, 3, 1, 2) makes it NCHW, as Keras-to-ONNX exporters write image models.
    """
    c, h, w = (int(v) for v in in_shape)
    b.check_choice("act", act, b.ACT_KINDS)
    b.check_choice("weights", weights, b.WEIGHT_KINDS)
    if not channels or min(channels) < 1 or min(c, h, w, n_out) < 1 or strides < 1 or pads < 0:
        raise ValueError("cnn: sizes must be positive, pads >= 0, strides >= 1")
    rng = np.random.default_rng(seed)
    g = GraphBuilder("cnn", opset)
    cur = g.add_input("x", ["N", h, w, c] if nhwc else ["N", c, h, w])
    if rng.random() < 0.5:
        cur = g.op("Relu", [cur])  # no-op on the non-negative input
    if nhwc:
        cur = g.op("Transpose", [cur], perm=[0, 3, 1, 2])
    ms_in = _INPUT_MS
    for i, co in enumerate(int(v) for v in channels):
        wt, wb = b.draw_weights(rng, weights, (co, c, 3, 3))
        cur = b.conv(g, rng, cur, wt, wb, kind=weights, pads=pads, strides=strides, hint=f"conv{i}")
        h, w = b.conv_out(h, 3, pads, pads, strides), b.conv_out(w, 3, pads, pads, strides)
        if h < 1 or w < 1:
            raise ValueError(f"cnn: spatial size vanished after conv{i}")
        acc_std = np.sqrt(c * 9 * ms_in) * b.row_magnitude(wt)
        p = b.random_bn(rng, acc_std, acc_mean=wb)
        cur = b.batch_norm(g, cur, p, hint=f"bn{i}")
        cur = b.maybe_identity(g, rng, cur)
        cur = b.activation(g, rng, cur, act, channels=co, rank=4, hint=f"act{i}")
        c, ms_in = co, 1.0
    if pool:
        pp = _pool_pads(rng, h, w)
        attrs: dict[str, object] = {"kernel_shape": [2, 2], "strides": [2, 2], "pads": pp}
        if rng.random() < 0.5:
            attrs.update(ceil_mode=0, dilations=[1, 1])
        cur = g.op("MaxPool", [cur], **attrs)
        h, w = b.conv_out(h, 2, pp[0], pp[2], 2), b.conv_out(w, 2, pp[1], pp[3], 2)
    k = c * h * w
    style = int(rng.integers(3))
    if style == 0:
        cur = g.op("Flatten", [cur], axis=1)
    else:
        target = [-1, k] if style == 1 else [0, -1]
        cur = g.op("Reshape", [cur, g.initializer("flatten_shape", np.array(target, np.int64))])
    wt, wb = b.draw_weights(rng, weights, (n_out, k))
    cur = b.dense(
        g, rng, cur, wt, wb, kind=weights, style=("gemm", "matmul")[int(rng.integers(2))], hint="fc"
    )
    acc_std = np.sqrt(k) * b.row_magnitude(wt)
    cur = b.batch_norm(g, cur, b.random_bn(rng, acc_std, acc_mean=wb), hint="bn_out")
    g.set_output(cur, ["N", n_out])
    return g.model()


_FIXED = {
    "odd_mlp": odd_mlp,
    "tie_mlp": tie_mlp,
    "tie_where_mlp": tie_where_mlp,
    "neg_gamma_mlp": neg_gamma_mlp,
    "where_cast_mlp": where_cast_mlp,
}
_FAMILIES = ("mlp", "mlp", "mlp", "cnn", "cnn", *_FIXED)


def _input_shape(model: onnx.ModelProto) -> tuple[int, ...]:
    """Declared input dims after the batch dim."""
    return tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:])


def _pick(rng: np.random.Generator, options: Sequence[object]) -> object:
    return options[int(rng.integers(len(options)))]


def random_model(seed: int) -> tuple[onnx.ModelProto, tuple[int, ...], tuple[int, int]]:
    """One model from any family with random sizes (1..80, odd ones included).

    Returns (model, input shape without batch, inclusive integer input range (lo, hi)).
    """
    rng = np.random.default_rng(seed)
    family = str(_pick(rng, _FAMILIES))
    sub_seed = int(rng.integers(2**31))
    hi = int(_pick(rng, (1, 3, 15, 255)))
    if family == "mlp":
        sizes = tuple(int(v) for v in rng.integers(1, 81, size=int(rng.integers(2, 6))))
        model = mlp(
            sub_seed,
            sizes,
            act=str(_pick(rng, b.ACT_KINDS)),
            weights=str(_pick(rng, b.WEIGHT_KINDS)),
            bn=bool(rng.random() < 0.8),
            bias=bool(rng.random() < 0.3),
            dense=str(_pick(rng, b.DENSE_KINDS)),
            final_bn=bool(rng.random() < 0.7),
            opset=int(_pick(rng, (13, 15, 17, 18, 21))),
        )
        return model, (sizes[0],), (0, hi)
    if family == "cnn":
        in_shape = (int(rng.integers(1, 4)), int(rng.integers(1, 13)), int(rng.integers(1, 13)))
        channels = tuple(int(v) for v in rng.integers(1, 17, size=int(rng.integers(1, 4))))
        pads, strides = int(rng.integers(2)), int(rng.integers(1, 3))
        h, w = in_shape[1:]
        for _ in channels:  # pads=0 needs >= 3 pixels per conv; fall back to padding
            h, w = b.conv_out(h, 3, pads, pads, strides), b.conv_out(w, 3, pads, pads, strides)
        if min(h, w) < 1:
            pads = 1
        model = cnn(
            sub_seed,
            in_shape,
            channels,
            act=str(_pick(rng, b.ACT_KINDS)),
            pool=bool(rng.random() < 0.7),
            pads=pads,
            strides=strides,
            weights=str(_pick(rng, b.WEIGHT_KINDS)),
            n_out=int(rng.integers(1, 81)),
            opset=int(_pick(rng, (13, 17, 21))),
        )
        return model, in_shape, (0, hi)
    model = _FIXED[family](sub_seed)
    return model, _input_shape(model), (0, hi)
