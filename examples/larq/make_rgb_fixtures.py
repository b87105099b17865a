"""A QuickNet-style Larq network at CIFAR size (32x32x3 RGB, issue #11), converted by LCE.

Same throw-away virtual environment as make_resnet_fixture.py (TensorFlow is never a
dependency of edge-sdk; CI reads the committed .tflite files and reference outputs):

    python3.11 -m venv /tmp/lcevenv
    /tmp/lcevenv/bin/pip install tensorflow-cpu==2.21.0 larq-compute-engine==0.16.0 \
        ai-edge-litert==2.3.0
    /tmp/lcevenv/bin/pip install --no-deps tf-keras==2.21.0 larq==0.14.0 numpy==1.26.4
    TF_USE_LEGACY_KERAS=1 /tmp/lcevenv/bin/python examples/larq/make_rgb_fixtures.py

The network follows Larq Zoo's QuickNet (stem, sections of fast residual blocks, GAP head)
with the widths scaled down to 16-32 and the transition of examples/quicknet/quicknet.py
(maxpool shortcut + concat: Larq Zoo's blur-pool transition is a float depthwise conv on
real-valued data, which edge-sdk refuses). Weights are random (seeded), nothing is trained;
each BatchNorm's statistics are set from the measured mean and spread of its input on a
separate batch of images (jittered as quicknet.py does, gammas of both signs), so every sign
sees both signs and every ReLU passes about half its inputs, as in a trained network; the
dense head is scaled and centred on the same batch so the argmax varies between images.

    input  [1, 32, 32, 3] RGB pixels (integers 0..255 held in float32)
    stem   x0 = BN(conv16 3x3 stride 2 (real float weights))            16x16x16
    sec 1  2 x  x = B(x) + x                                           16x16x16
    sec 2  s = BN(maxpool 2x2 (x)); x = concat[s, B_s2(x) + s]          8x8x32
           1 x  x = B(x) + x                                            8x8x32
    head   mean over H, W of ReLU(x) -> dense10 (real float weights, bias) -> logits

with B(x) = BN(ReLU(bconv 3x3 (sign x))) (QuickNet's order; files `quicknet_rgb_*`) or
B(x) = ReLU(BN(bconv 3x3 (sign x))) (Bi-Real order; files `quicknet_rgb_bnrelu_*`, own
random weights). Binary convs are larq QuantConv2D with ste_sign input and kernel
quantizers, SAME padding and `pad_values=1` (QuickNet's), no bias. LCE fuses QuickNet's
ReLU-then-BN into the LceBconv2d (fused RELU on the accumulator, the BN as its
post-activation multiplier and bias); the Bi-Real order gives a separate RELU operator.

Per form, `<form>_lce.tflite`: LCE's default conversion (float stem CONV_2D with the BN
folded in, LceQuantize + LceBconv2d with float output, RELU, MUL/ADD, ADD, MAX_POOL_2D,
CONCATENATION, MEAN, FULLY_CONNECTED); the stem and the head have real weights, so edge-sdk
needs a calibration set (`--calibrate quicknet_rgb_cal.npy`). `<form>_lce_ref.npy`: LCE's
interpreter (`larq_compute_engine.testing.Interpreter`) on `quicknet_rgb_x.npy` (16 images
[16, 32, 32, 3] float32); `quicknet_rgb_cal.npy` holds 32 more (another seed).

`<form>_int8.tflite`: the same network and weights through LCE's int8 conversion
(`inference_input_type=tf.int8`, `inference_output_type=tf.int8`,
`experimental_default_int8_range=(-8, 8)`), with a FakeQuant (0, 255) on the input so the int8
input code is pixel - 128 (scale 1) and a FakeQuant (-4, 4) on the logits; the int8 conv and
dense biases re-quantised to int32 as make_int8_fixtures.fix_int8_biases explains. No
DEPTHWISE_CONV_2D / AVERAGE_POOL_2D (edge-sdk has no int8 kernels for them).
`quicknet_rgb_int8_x.npy`: the same 16 images as int8 codes (pixel - 128);
`<form>_int8_ref.npy` LCE's int8 outputs on them, `<form>_int8_tensors.npz` LCE's value of
every operator output on the first 4 (key "t<tensor index>").

`--out DIR` writes the files elsewhere (for experiments).
Every file is deterministic (seeded weights, op determinism, time-stamp-free npz).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq as lq
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf
from make_int8_fixtures import every_output, fix_int8_biases, save_npz
from make_resnet_fixture import op_names

HERE = Path(__file__).resolve().parent
K = tf.keras.layers
SEED = 21
WIDTHS = (16, 32)
BLOCKS = (2, 2)  # per section, the transition counted as section 2's first block
CLASSES = 10
N_X, N_CAL, N_STATS, N_TENSORS = 16, 32, 256, 4
BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "use_bias": False, "pad_values": 1.0}


def fq(x, lo: float, hi: float):
    return K.Lambda(lambda t: tf.quantization.fake_quant_with_min_max_args(t, lo, hi))(x)


def relu_bn(y, bn_then_relu: bool):
    if bn_then_relu:
        return K.ReLU()(K.BatchNormalization()(y))
    return K.BatchNormalization()(K.ReLU()(y))


def build(int8: bool, bn_then_relu: bool = False) -> tf.keras.Model:
    """The network of the module docstring; `int8` adds the FakeQuant ranges of the int8
    variant (no weights: both variants share `get_weights()`). `bn_then_relu` swaps each
    block's ReLU and BN (Bi-Real order, ReLU(BN(bconv))): LCE then writes a separate RELU
    operator instead of fusing it into the LceBconv2d (see `--bn-then-relu`)."""
    inp = K.Input((32, 32, 3))
    x = fq(inp, 0.0, 255.0) if int8 else inp
    x = K.Conv2D(WIDTHS[0], 3, strides=2, padding="same", use_bias=False)(x)
    x = K.BatchNormalization()(x)
    c = WIDTHS[0]
    for section, (n, width) in enumerate(zip(BLOCKS, WIDTHS)):
        for i in range(n):
            if section > 0 and i == 0:  # transition: half the size, twice the width
                s = K.BatchNormalization()(K.MaxPool2D(2)(x))
                y = lq.layers.QuantConv2D(c, 3, strides=2, padding="same", **BINARY)(x)
                y = relu_bn(y, bn_then_relu)
                x = K.Concatenate()([s, K.Add()([y, s])])
                c = width
            else:
                y = lq.layers.QuantConv2D(c, 3, padding="same", **BINARY)(x)
                y = relu_bn(y, bn_then_relu)
                x = K.Add()([y, x])
    g = K.GlobalAveragePooling2D()(K.ReLU()(x))
    out = K.Dense(CLASSES)(g)
    return tf.keras.Model(inp, fq(out, -4.0, 4.0) if int8 else out)


def set_batchnorm(model: tf.keras.Model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Each BN in graph order: statistics from its input on `x` (mean jittered by 0.2 std,
    std scaled by 0.75..1.25), gamma ±(1 + 0.25 N(0, 1)) with a random sign, beta
    0.25 N(0, 1), as quicknet.py (which keeps gamma positive)."""
    for layer in model.layers:
        if not isinstance(layer, K.BatchNormalization):
            continue
        v = tf.keras.Model(model.input, layer.input).predict(x, verbose=0)
        v = v.reshape(-1, v.shape[-1]).astype(np.float64)
        mean, std = v.mean(0), v.std(0) + 1e-3
        c = mean.size
        gamma = rng.choice([-1.0, 1.0], c) * (1.0 + 0.25 * rng.standard_normal(c))
        beta = 0.25 * rng.standard_normal(c)
        mu = mean + 0.2 * std * rng.standard_normal(c)
        var = (std * (0.75 + 0.5 * rng.random(c))) ** 2 - layer.epsilon
        layer.set_weights([np.float32(a) for a in (gamma, beta, mu, np.maximum(var, 1e-4))])


def set_head(model: tf.keras.Model, x: np.ndarray, rng: np.random.Generator) -> None:
    """Random dense10 weights scaled so each logit has std 1.5 over `x` and a bias that
    centres it: the argmax varies from image to image (a random head on the mean of ReLU
    outputs would otherwise pick the same class for every input)."""
    dense = next(layer for layer in model.layers if isinstance(layer, K.Dense))
    g = tf.keras.Model(model.input, dense.input).predict(x, verbose=0).astype(np.float64)
    w = rng.standard_normal((g.shape[1], CLASSES))
    z = (g - g.mean(0)) @ w
    w *= 1.5 / (z.std(0) + 1e-9)
    dense.set_weights([np.float32(w), np.float32(-g.mean(0) @ w)])


def pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Images with some content (a colour per image, 8x8 blocks, pixel noise), integers
    0..255: uniform noise would give every image the same global average."""
    colour = rng.uniform(0, 255, (n, 1, 1, 3))
    blocks = rng.uniform(0, 255, (n, 8, 8, 3)).repeat(4, 1).repeat(4, 2)
    x = 0.5 * colour + 0.5 * blocks + rng.normal(0, 16, (n, 32, 32, 3))
    return np.clip(np.round(x), 0, 255).astype(np.float32)


def lce_outputs(fb: bytes, x: np.ndarray) -> np.ndarray:
    return np.asarray(lce.testing.Interpreter(fb, num_threads=1).predict(x))


def write(out: Path, stem: str, fb: bytes, arrays: dict[str, np.ndarray]) -> None:
    (out / f"{stem}.tflite").write_bytes(fb)
    for suffix, a in arrays.items():
        np.save(out / f"{stem}_{suffix}.npy", a)
    print(f"{stem}: {len(fb)} bytes; ops {op_names(fb)}")


def convert_pair(out: Path, prefix: str, bn_then_relu: bool, x: np.ndarray,
                 stats: np.ndarray, seed: int) -> None:
    """One form of the network: the float file and its int8 twin (same weights)."""
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build(int8=False, bn_then_relu=bn_then_relu)
    set_batchnorm(model, stats, rng)
    set_head(model, stats, rng)
    fb = lce.convert_keras_model(model)
    y = lce_outputs(fb, x).astype(np.float32)
    keras_y = model.predict(x, verbose=0)
    print(f"{prefix}: max |keras - lce| = {float(np.abs(keras_y - y).max()):.3g}, argmax counts",
          np.bincount(y.argmax(1), minlength=CLASSES))
    write(out, f"{prefix}_lce", fb, {"ref": y})

    model8 = build(int8=True, bn_then_relu=bn_then_relu)
    model8.set_weights(model.get_weights())
    fb8 = lce.convert_keras_model(model8, inference_input_type=tf.int8,
                                  inference_output_type=tf.int8,
                                  experimental_default_int8_range=(-8.0, 8.0))
    fb8 = fix_int8_biases(fb8)
    x8 = (x - 128).astype(np.int8)
    y8 = lce_outputs(fb8, x8)
    print(f"{prefix} int8: output codes {int(y8.min())}..{int(y8.max())}, argmax agreement with "
          f"the float file {float(np.mean(y8.argmax(1) == y.argmax(1)))}")
    write(out, f"{prefix}_int8", fb8, {"ref": y8})
    save_npz(out / f"{prefix}_int8_tensors.npz", every_output(fb8, x8[:N_TENSORS]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the files")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    tf.config.experimental.enable_op_determinism()
    x = pixels(np.random.default_rng(SEED + 1), N_X)
    np.save(out / "quicknet_rgb_x.npy", x)
    np.save(out / "quicknet_rgb_cal.npy", pixels(np.random.default_rng(SEED + 2), N_CAL))
    np.save(out / "quicknet_rgb_int8_x.npy", (x - 128).astype(np.int8))
    stats = pixels(np.random.default_rng(SEED + 3), N_STATS)
    convert_pair(out, "quicknet_rgb", False, x, stats, SEED)
    convert_pair(out, "quicknet_rgb_bnrelu", True, x, stats, SEED + 10)


if __name__ == "__main__":
    main()
