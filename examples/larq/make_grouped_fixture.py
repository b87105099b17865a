"""An untrained Larq model with grouped binary convolutions, converted by LCE (issue #11).

Same throw-away virtual environment as make_int8_fixtures.py (TensorFlow is never a
dependency of edge-sdk; CI reads the committed files):

    TF_USE_LEGACY_KERAS=1 /tmp/lcevenv/bin/python examples/larq/make_grouped_fixture.py

LCE writes a grouped binary conv as one LceBconv2d whose bitpacked filter has fewer words per
tap than the input (groups = input words / filter words; each group a multiple of 32
channels). LCE's default x86 kernel refuses them, so the reference outputs come from its
reference kernel (`use_reference_bconv=True`). The network:

    6x6x3 RGB integers -> conv64 (float, binary weights) -> BN
    -> bconv96, 2 groups, +1 padding (bitpacked output: BN and sign folded into thresholds)
    -> bconv96, 3 groups, +1 padding -> BN -> global average -> dense 5 (binary)

BatchNorm statistics are drawn at random (negative scales too) so signs see both values.
Writes `grouped_lce.tflite`, `grouped_lce_x.npy` (32 random integer images -8..8) and
`grouped_lce_ref.npy` (LCE's interpreter) next to this file.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq as lq
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
K = tf.keras.layers
SEED = 5
BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "use_bias": False}


def build(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((6, 6, 3))
    x = lq.layers.QuantConv2D(64, 3, padding="same", kernel_quantizer="ste_sign",
                              kernel_constraint="weight_clip", use_bias=False)(inp)
    x = K.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(96, 3, padding="same", pad_values=1.0, groups=2, **BINARY)(x)
    x = K.BatchNormalization()(x)
    x = lq.layers.QuantConv2D(96, 3, padding="same", pad_values=1.0, groups=3, **BINARY)(x)
    x = K.BatchNormalization()(x)
    x = K.GlobalAveragePooling2D()(x)
    out = lq.layers.QuantDense(5, **BINARY)(x)
    model = tf.keras.Model(inp, out)
    for layer in model.layers:
        if isinstance(layer, K.BatchNormalization):
            c = layer.gamma.shape[0]
            spread = 8.0 if layer is model.layers[2] else 5.0
            layer.set_weights([rng.choice([-1.0, 1.0], c) * rng.uniform(0.5, 1.5, c),
                               rng.normal(0, 0.5, c), rng.normal(0, spread, c),
                               rng.uniform(1.0, 4.0, c) * spread ** 2])
    return model


def main() -> None:
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    fb = lce.convert_keras_model(build(rng))
    x = rng.integers(-8, 9, (32, 6, 6, 3)).astype(np.float32)
    y = np.asarray(lce.testing.Interpreter(fb, num_threads=1, use_reference_bconv=True)
                   .predict(x), np.float32)
    (HERE / "grouped_lce.tflite").write_bytes(fb)
    np.save(HERE / "grouped_lce_x.npy", x)
    np.save(HERE / "grouped_lce_ref.npy", y)
    print("grouped_lce", len(fb), "bytes", y.shape, "classes", np.bincount(y.argmax(1)))


if __name__ == "__main__":
    main()
