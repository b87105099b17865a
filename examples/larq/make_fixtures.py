"""Train and convert the Larq / Larq Compute Engine fixtures in this folder.

Runs ONLY in a throw-away virtual environment (TensorFlow is never a dependency of edge-sdk;
CI reads the committed .tflite files and reference outputs):

    python3.11 -m venv /tmp/lcevenv
    /tmp/lcevenv/bin/pip install tensorflow-cpu==2.21.0 larq-compute-engine==0.16.0 \
        ai-edge-litert==2.3.0 scikit-learn tqdm terminaltables
    /tmp/lcevenv/bin/pip install --no-deps tf-keras==2.21.0 larq==0.14.0 numpy==1.26.4
    TF_USE_LEGACY_KERAS=1 /tmp/lcevenv/bin/python examples/larq/make_fixtures.py

(larq 0.14 imports Keras 2 through tf-keras; `--no-deps` keeps pip from replacing
TensorFlow, and TF_USE_LEGACY_KERAS=1 makes `tf.keras` that Keras 2. LCE 0.16's interpreter
was built against NumPy 1: under NumPy 2 it reads every input as 0 bytes, hence numpy 1.26.4.)

It writes, next to this file:
- `cnn_lce.tflite`: binary CNN trained on the digits (LCE ops: LceQuantize, LceBconv2d with
  +1 padding, float output and bitpacked output, LceBMaxPool2d, LceDequantize).
- `mlp_lce.tflite`: binary MLP trained on the digits (binary dense layers stay FULLY_CONNECTED
  on ±1 floats between LceQuantize/LceDequantize).
- `mlp_plain.tflite`: the same MLP through the stock TFLite converter (no LCE ops: SIGN, ADD,
  FULLY_CONNECTED with ±a float weights).
- `random_lce.tflite`: an untrained CNN with random batch-norm statistics (negative scales
  included), dilation, stride 2, VALID / SAME / +1 padding, channel counts that are not
  multiples of 32; it ends in a binary dense layer, so its output is exact integers.
- `*_x.npy` the sample inputs and `*_ref.npy` the outputs of LCE's own interpreter
  (`larq_compute_engine.testing.Interpreter`; ai-edge-litert's for `mlp_plain`) on them.
- `accuracy.json`: test accuracies of the Keras models and of the converted files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq as lq
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from digits_data import SAMPLE_SIZE, load_split

SEED = 0
EPOCHS = 40
BATCH = 64

BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
              "kernel_constraint": "weight_clip", "use_bias": False}
FIRST = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip", "use_bias": False}
K = tf.keras.layers


def bn():
    return K.BatchNormalization(momentum=0.9, scale=False)


def build_cnn() -> tf.keras.Model:
    """8x8x1 integers -> conv16 (float, binary weights) -> bconv32 (+1 padding) -> pool -> BN
    -> bconv64 (+1 padding, bitpacked output) -> bconv64 (zero padding) -> BN -> pool -> dense10."""
    return tf.keras.Sequential([
        K.Input((8, 8, 1)),
        lq.layers.QuantConv2D(16, 3, padding="same", **FIRST), bn(),
        lq.layers.QuantConv2D(32, 3, padding="same", pad_values=1.0, **BINARY),
        K.MaxPool2D(2), bn(),
        lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, **BINARY), bn(),
        lq.layers.QuantConv2D(64, 3, padding="same", **BINARY), bn(),
        K.MaxPool2D(2),
        K.Flatten(),
        lq.layers.QuantDense(10, **BINARY), bn(),
        K.Activation("softmax"),
    ])


def build_mlp() -> tf.keras.Model:
    """64 integers -> dense128 (binary weights) -> dense64 (binary) -> dense10 (binary)."""
    return tf.keras.Sequential([
        K.Input((64,)),
        lq.layers.QuantDense(128, **FIRST), bn(),
        lq.layers.QuantDense(64, **BINARY), bn(),
        lq.layers.QuantDense(10, **BINARY), bn(),
        K.Activation("softmax"),
    ])


def build_random() -> tf.keras.Model:
    """Untrained: every LCE code path the trained models do not reach, exact integer output."""
    m = tf.keras.Sequential([
        K.Input((8, 8, 1)),
        lq.layers.QuantConv2D(8, 3, padding="same", kernel_quantizer="ste_sign"),
        K.BatchNormalization(),
        lq.layers.QuantConv2D(40, 3, padding="same", pad_values=1.0, dilation_rate=2, **BINARY),
        K.BatchNormalization(),
        lq.layers.QuantConv2D(36, 3, strides=2, padding="valid", **BINARY),
        K.BatchNormalization(),
        K.MaxPool2D(2, strides=1, padding="same"),
        lq.layers.QuantConv2D(24, 2, padding="same", **BINARY),
        K.MaxPool2D(3),
        K.BatchNormalization(),
        K.Flatten(),
        lq.layers.QuantDense(10, **BINARY),
    ])
    rng = np.random.default_rng(SEED)
    for layer in m.layers:
        if isinstance(layer, K.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            c = gamma.shape[0]
            gamma = rng.choice([-1.0, 1.0], c) * rng.uniform(0.3, 2.0, c)
            beta = rng.normal(0.0, 1.0, c)
            mean = rng.normal(0.0, 4.0, c)
            var = rng.uniform(0.5, 20.0, c)
            layer.set_weights([np.float32(v) for v in (gamma, beta, mean, var)])
    return m


def train(model: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    steps = EPOCHS * int(np.ceil(len(x) / BATCH))
    lr = tf.keras.optimizers.schedules.CosineDecay(1e-2, steps)
    model.compile(tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=True)


def lce_outputs(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    return np.asarray(lce.testing.Interpreter(flatbuffer, num_threads=1).predict(x), np.float32)


def litert_outputs(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=flatbuffer, num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for sample in x:
        it.set_tensor(inp["index"], sample[None].astype(np.float32))
        it.invoke()
        rows.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(rows).astype(np.float32)


def write(name: str, flatbuffer: bytes, x: np.ndarray, y: np.ndarray) -> None:
    (HERE / f"{name}.tflite").write_bytes(flatbuffer)
    np.save(HERE / f"{name}_x.npy", x)
    np.save(HERE / f"{name}_ref.npy", y)
    print(f"{name}: {len(flatbuffer)} bytes, output {y.shape}")


def main() -> None:
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    split = load_split()
    x_img = split.x_train.reshape(-1, 8, 8, 1)
    t_img = split.x_test.reshape(-1, 8, 8, 1)
    acc: dict[str, dict] = {}

    def accuracy(pred: np.ndarray) -> float:
        return float(np.mean(np.argmax(pred, axis=1) == split.y_test))

    cnn = build_cnn()
    train(cnn, x_img, split.y_train)
    cnn_fb = lce.convert_keras_model(cnn)
    acc["cnn_lce"] = {"keras": accuracy(cnn.predict(t_img, verbose=0)),
                      "tflite": accuracy(lce_outputs(cnn_fb, t_img))}
    write("cnn_lce", cnn_fb, t_img[:SAMPLE_SIZE], lce_outputs(cnn_fb, t_img[:SAMPLE_SIZE]))

    mlp = build_mlp()
    train(mlp, split.x_train, split.y_train)
    mlp_fb = lce.convert_keras_model(mlp)
    acc["mlp_lce"] = {"keras": accuracy(mlp.predict(split.x_test, verbose=0)),
                      "tflite": accuracy(lce_outputs(mlp_fb, split.x_test))}
    sample = split.x_test[:SAMPLE_SIZE]
    write("mlp_lce", mlp_fb, sample, lce_outputs(mlp_fb, sample))

    plain_fb = tf.lite.TFLiteConverter.from_keras_model(mlp).convert()
    acc["mlp_plain"] = {"keras": acc["mlp_lce"]["keras"],
                        "tflite": accuracy(litert_outputs(plain_fb, split.x_test))}
    write("mlp_plain", plain_fb, sample, litert_outputs(plain_fb, sample))

    rnd = build_random()
    rnd_fb = lce.convert_keras_model(rnd)
    rx = np.random.default_rng(SEED + 1).integers(0, 17, (SAMPLE_SIZE, 8, 8, 1)).astype(np.float32)
    write("random_lce", rnd_fb, rx, lce_outputs(rnd_fb, rx))

    (HERE / "accuracy.json").write_text(json.dumps(acc, indent=1, sort_keys=True) + "\n")
    print(json.dumps(acc, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
