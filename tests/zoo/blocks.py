"""Layer-level pieces a binary-net exporter emits: binary/ternary weights, dense, conv, BN, sign.

Numerics are chosen so that onnxruntime's float32 results are reproducible bit for bit:
weight magnitudes are multiples of 1/128 below 2, so with integer inputs every partial
sum of a dot product is exact in float32 whatever order onnxruntime's kernels use; only
bias adds and BatchNormalization round, and those are single elementwise operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import numpy_helper

from ._graph import GraphBuilder

WEIGHT_KINDS: tuple[str, ...] = ("pm1", "sign", "rowscale", "ternary")
ACT_KINDS: tuple[str, ...] = ("sign", "where")
DENSE_KINDS: tuple[str, ...] = ("gemm", "matmul")

F32 = np.float32
MAG_DENOMINATOR = 128  # weight magnitudes are m / 128 with 8 <= m < 256


def check_choice(what: str, value: str, allowed: tuple[str, ...]) -> None:
    """Fail early on a typo instead of silently building some other model."""
    if value not in allowed:
        raise ValueError(f"{what}={value!r}; expected one of {allowed}")


def dyadic_magnitudes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Positive magnitudes in [1/16, 2) with at most 8 significant bits (exact sums)."""
    return (rng.integers(8, 256, size=n) / MAG_DENOMINATOR).astype(F32)


def draw_weights(
    rng: np.random.Generator, kind: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Effective weights (output channel first) and the bias the kind brings with it.

    rowscale is what torch writes after folding a BatchNorm into a binary Gemm: one
    magnitude per output row and a float bias. ternary uses one magnitude per tensor and
    keeps the sign of the zeroed weight, so about half the zeros are -0.0.
    """
    check_choice("weights", kind, WEIGHT_KINDS)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=F32), size=shape)
    bcast = (-1,) + (1,) * (len(shape) - 1)
    if kind in ("pm1", "sign"):
        return signs, None
    if kind == "rowscale":
        mags = dyadic_magnitudes(rng, shape[0]).reshape(bcast)
        bias = rng.normal(0.0, 1.0, size=shape[0]).astype(F32)
        return (signs * mags).astype(F32), bias
    mag = dyadic_magnitudes(rng, 1)[0]
    zero = rng.random(size=shape) < 1.0 / 3.0
    flat = zero.reshape(-1)
    if flat.size >= 2 and not flat.any():
        flat[rng.integers(flat.size)] = True
    w = np.where(zero, signs * F32(0.0), signs * mag).astype(F32)
    flat_w = w.reshape(-1)
    zero_idx = np.flatnonzero(flat)
    if zero_idx.size and not np.signbit(flat_w[zero_idx]).any():
        flat_w[zero_idx[0]] = F32(-0.0)  # guarantee at least one -0.0
    return w, None


def row_magnitude(w: np.ndarray) -> np.ndarray:
    """Per-output RMS weight, used only to give BN statistics a realistic scale."""
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    return np.sqrt(np.mean(flat * flat, axis=1)) + 1e-3


def emit_weight(
    g: GraphBuilder, rng: np.random.Generator, kind: str, w: np.ndarray, hint: str
) -> str:
    """Store weights; kind "sign" stores random nonzero floats and binarizes them with Sign."""
    if kind != "sign":
        return g.initializer(hint, w)
    mags = rng.uniform(0.01, 1.0, size=w.shape).astype(F32)
    raw = g.initializer(hint + "_float", (w * mags).astype(F32))
    return g.op("Sign", [raw], hint=hint + "_sign")


def dense(
    g: GraphBuilder,
    rng: np.random.Generator,
    x: str,
    w: np.ndarray,
    bias: np.ndarray | None,
    *,
    kind: str,
    style: str,
    hint: str,
) -> str:
    """Gemm(transB=1) with optional bias input, or MatMul on W^T plus an optional Add."""
    check_choice("dense", style, DENSE_KINDS)
    if style == "gemm":
        wname = emit_weight(g, rng, kind, w, hint + ".weight")
        inputs = [x, wname]
        if bias is not None:
            inputs.append(g.initializer(hint + ".bias", bias))
        attrs: dict[str, object] = {"transB": 1}
        if rng.random() < 0.5:  # torch spells out the defaults
            attrs.update(alpha=1.0, beta=1.0)
        return g.op("Gemm", inputs, hint=hint + "_Gemm", **attrs)
    wname = emit_weight(g, rng, kind, np.ascontiguousarray(w.T), hint + ".weight")
    out = g.op("MatMul", [x, wname], hint=hint + "_MatMul")
    if bias is not None:
        out = g.op("Add", [out, g.initializer(hint + ".bias", bias)], hint=hint + "_Add")
    return out


def conv(
    g: GraphBuilder,
    rng: np.random.Generator,
    x: str,
    w: np.ndarray,
    bias: np.ndarray | None,
    *,
    kind: str,
    pads: int,
    strides: int,
    hint: str,
) -> str:
    """Square-kernel Conv with symmetric zero padding, attributes spelled as torch does."""
    wname = emit_weight(g, rng, kind, w, hint + ".weight")
    inputs = [x, wname]
    if bias is not None:
        inputs.append(g.initializer(hint + ".bias", bias))
    kh, kw = w.shape[2], w.shape[3]
    return g.op(
        "Conv",
        inputs,
        hint=hint + "_Conv",
        kernel_shape=[kh, kw],
        pads=[pads] * 4,
        strides=[strides] * 2,
        dilations=[1, 1],
        group=1,
    )


def conv_out(size: int, kernel: int, pads_begin: int, pads_end: int, stride: int) -> int:
    """Spatial output size of Conv/MaxPool without ceil_mode."""
    return (size + pads_begin + pads_end - kernel) // stride + 1


@dataclass
class BNParams:
    """Inference-mode BatchNormalization parameters (all float32 per channel)."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    epsilon: float


def _gamma_signs(rng: np.random.Generator, c: int, negative: bool) -> np.ndarray:
    """All -1 for negative, else mixed with at least one of each sign when c >= 2."""
    if negative:
        return -np.ones(c, dtype=F32)
    s = np.where(rng.random(c) < 0.3, -1.0, 1.0).astype(F32)
    if c >= 2:
        i, j = rng.choice(c, size=2, replace=False)
        s[i], s[j] = -1.0, 1.0
    return s


def random_bn(
    rng: np.random.Generator,
    acc_std: np.ndarray,
    *,
    acc_mean: np.ndarray | None = None,
    negative_gamma: bool = False,
) -> BNParams:
    """Arbitrary float32 statistics on the scale of the preceding accumulator."""
    c = acc_std.shape[0]
    center = np.zeros(c) if acc_mean is None else acc_mean.astype(np.float64)
    gamma = _gamma_signs(rng, c, negative_gamma) * rng.uniform(0.25, 2.0, c)
    return BNParams(
        gamma=gamma.astype(F32),
        beta=rng.normal(0.0, 0.5, c).astype(F32),
        mean=(center + rng.normal(0.0, 0.5, c) * acc_std).astype(F32),
        var=(acc_std**2 * rng.uniform(0.5, 1.5, c)).astype(F32),
        epsilon=1e-5 if rng.random() < 2 / 3 else 1e-3,
    )


def var_for_exact_sum(target: float, epsilon: float) -> np.float32:
    """A float32 var with fl32(var + fl32(epsilon)) == target exactly.

    Only exact in float32: a float64 golden model computing var + eps gets a value a
    hair off target, which is the trap these tie models are for.
    """
    eps32 = F32(epsilon)
    v = F32(target - float(eps32))
    for _ in range(64):
        s = F32(v + eps32)
        if s == F32(target):
            return v
        v = np.nextafter(v, F32(np.inf) if s < target else F32(-np.inf), dtype=F32)
    raise AssertionError(f"no float32 var for target {target}, eps {epsilon}")


def tie_bn(
    rng: np.random.Generator,
    acc_std: np.ndarray,
    tie_points: list[int],
    *,
    epsilon: float,
    tie_fraction: float = 0.75,
    negative_gamma: bool = False,
) -> tuple[BNParams, np.ndarray]:
    """BN whose float32 output is exactly 0 at an integer accumulator t for most channels.

    Tie channels use sqrt(var + eps) in {1, 2} exactly (in float32), gamma in small
    halves, an integer mean and beta = gamma * (mean - t) / sqrt(var + eps); every product
    onnxruntime forms is then exact and the output at acc == t is exactly zero.
    Returns the params and the per-channel tie point (NaN for non-tie channels).
    """
    c = acc_std.shape[0]
    p = random_bn(rng, acc_std, negative_gamma=negative_gamma)
    p.epsilon = epsilon
    ties = np.full(c, np.nan)
    is_tie = rng.random(c) < tie_fraction
    is_tie[rng.integers(c)] = True
    signs = _gamma_signs(rng, c, negative_gamma)
    for ch in np.flatnonzero(is_tie):
        scale = float(rng.choice([1.0, 2.0]))
        gamma = float(signs[ch] * rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]))
        t = int(rng.choice(tie_points))
        mean = t + int(rng.integers(-3, 4))
        p.gamma[ch] = gamma
        p.mean[ch] = mean
        p.beta[ch] = gamma * (mean - t) / scale
        p.var[ch] = var_for_exact_sum(scale * scale, epsilon)
        ties[ch] = t
    return p, ties


def batch_norm(
    g: GraphBuilder,
    x: str,
    p: BNParams,
    *,
    hint: str,
    torch_style: bool = False,
    var_is_gamma: bool = False,
) -> str:
    """Inference BatchNormalization.

    torch_style adds the momentum/training_mode attributes torch writes; var_is_gamma
    mimics torch's dedup of equal initializers (running_var = Identity(weight)).
    """
    gamma = g.initializer(hint + ".weight", p.gamma)
    if var_is_gamma:
        if not np.array_equal(p.var, p.gamma):
            raise ValueError("var_is_gamma needs p.var == p.gamma")
        var = g.op("Identity", [gamma], output=g.fresh(hint + ".running_var"))
    else:
        var = g.initializer(hint + ".running_var", p.var)
    beta = g.initializer(hint + ".bias", p.beta)
    mean = g.initializer(hint + ".running_mean", p.mean)
    attrs: dict[str, object] = {"epsilon": p.epsilon}
    if torch_style:
        attrs["momentum"] = 0.9
        if g.opset >= 14:
            attrs["training_mode"] = 0
    return g.op(
        "BatchNormalization",
        [x, gamma, beta, mean, var],
        hint=hint + "_BatchNormalization",
        **attrs,
    )


def _scalar(g: GraphBuilder, hint: str, value: float, *, node: bool) -> str:
    """A 0-d float literal, as an initializer or (torch style) a Constant node."""
    arr = np.array(value, dtype=F32)
    return g.constant(hint, arr) if node else g.initializer(hint, arr)


def _pm_constants(
    g: GraphBuilder, rng: np.random.Generator, c: int, rank: int, hint: str
) -> tuple[str, str]:
    """The +1/-1 operands of Where as scalars or as tensors broadcasting against [N, C, ...]."""
    style = int(rng.integers(4))
    if style <= 1:  # 0-d initializers, or Constant nodes as torch writes them
        node = style == 1
        one = _scalar(g, hint + "_one", 1.0, node=node)
        return one, _scalar(g, hint + "_neg_one", -1.0, node=node)
    if style == 2:
        shape: tuple[int, ...] = (1,)
    elif rank == 2:
        shape = (1, c)
    else:
        shape = (c, 1, 1) if rng.random() < 0.5 else (1, c, 1, 1)
    one = g.initializer(hint + "_one", np.ones(shape, dtype=F32))
    neg = g.initializer(hint + "_neg_one", -np.ones(shape, dtype=F32))
    return one, neg


def activation(
    g: GraphBuilder,
    rng: np.random.Generator,
    x: str,
    act: str,
    *,
    channels: int,
    rank: int,
    hint: str,
) -> str:
    """Binarize: Sign (maybe after a no-op Clip(-1, 1)), Where(x >= 0, 1, -1) with literal
    constants, or "where_shape": the 1/-1 built from ConstantOfShape(Shape(x)) and Neg."""
    if act == "sign":
        if rng.random() < 0.5:  # Clip(-1, 1) first, as a hardtanh-STE export leaves it
            node = rng.random() < 0.5
            lo = _scalar(g, hint + "_clip_min", -1.0, node=node)
            hi = _scalar(g, hint + "_clip_max", 1.0, node=node)
            x = g.op("Clip", [x, lo, hi], hint=hint + "_Clip")
        return g.op("Sign", [x], hint=hint + "_Sign")
    if act == "where":
        zero = _scalar(g, hint + "_zero", 0.0, node=rng.random() < 0.5)
        cond = g.op("GreaterOrEqual", [x, zero], hint=hint + "_GreaterOrEqual")
        one, neg = _pm_constants(g, rng, channels, rank, hint)
        return g.op("Where", [cond, one, neg], hint=hint + "_Where")
    if act == "where_shape":
        zero = _scalar(g, hint + "_zero", 0.0, node=True)
        cond = g.op("GreaterOrEqual", [x, zero], hint=hint + "_GreaterOrEqual")
        shape = g.op("Shape", [x], hint=hint + "_Shape")
        ones = g.op(
            "ConstantOfShape",
            [shape],
            hint=hint + "_ConstantOfShape",
            value=numpy_helper.from_array(np.ones(1, dtype=F32)),
        )
        neg = g.op("Neg", [ones], hint=hint + "_Neg")
        return g.op("Where", [cond, ones, neg], hint=hint + "_Where")
    raise ValueError(f"act={act!r}; expected one of {ACT_KINDS}")


def maybe_identity(g: GraphBuilder, rng: np.random.Generator, x: str, p: float = 0.25) -> str:
    """Sometimes pass through an Identity, as exporters leave behind."""
    return g.op("Identity", [x]) if rng.random() < p else x
