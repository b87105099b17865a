"""Train and convert the Bi-Real / QuickNet-style Larq fixture (issue #11's constructs).

Same throw-away virtual environment as make_fixtures.py (TensorFlow is never a dependency of
edge-sdk; CI reads the committed .tflite files and reference outputs):

    python3.11 -m venv /tmp/lcevenv
    /tmp/lcevenv/bin/pip install tensorflow-cpu==2.21.0 larq-compute-engine==0.16.0 \
        ai-edge-litert==2.3.0 scikit-learn tqdm terminaltables
    /tmp/lcevenv/bin/pip install --no-deps tf-keras==2.21.0 larq==0.14.0 numpy==1.26.4
    TF_USE_LEGACY_KERAS=1 /tmp/lcevenv/bin/python examples/larq/make_resnet_fixture.py

The network (8x8x1 digits, trained for a few seconds) has real-valued tensors on every
shortcut, as Bi-Real Net and QuickNet do:

    stem   conv16 (binary weights on the integer pixels; BN folded in) -> x0
    block  x1 = PReLU(BN(bconv16(sign x0)) + x0)                 ADD of two tensors, PRELU
    down   s = BN(maxpool(x1)); y = BN(bconv16_s2(sign x1)) + s  MAX_POOL_2D on floats, MUL/ADD
           x2 = concat[s, y]                                    CONCATENATION (32 channels)
    dw     x3 = ReLU(BN(depthwise3x3(sign x2)) + x2)             binary depthwise conv, RELU
    head   BN(mean over H, W) -> dense10 (binary, sign of it) -> BN   MEAN, MUL/ADD on a vector
           (the BN keeps the sign of a mean of ReLU outputs from being always +1)

`resnet_random_lce.tflite`: an untrained QuickNet block, BN(ReLU(bconv(sign x))) + x, with
random BatchNorm statistics, mean and a binary dense layer (exact integer outputs; LCE writes
the ReLU as a RELU operator), on random integer inputs 0..16.

It writes, next to this file, `resnet_lce.tflite`, `resnet_lce_x.npy` (the first 64 test
digits) and `resnet_lce_ref.npy` (LCE's interpreter on them; logits, no softmax), and
`resnet_int8.tflite` etc. when LCE's converter produces an 8-bit variant
(`experimental_default_int8_range`, int8 input/output): what it produced is printed and
recorded in `resnet_accuracy.json`.
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
EPOCHS = 30
BATCH = 64

BINARY = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
          "kernel_constraint": "weight_clip", "use_bias": False}
K = tf.keras.layers


def build() -> tf.keras.Model:
    """The network of the module docstring (functional: shortcuts are not a chain)."""
    inp = K.Input((8, 8, 1))
    x0 = lq.layers.QuantConv2D(16, 3, padding="same", kernel_quantizer="ste_sign",
                               kernel_constraint="weight_clip", use_bias=False)(inp)
    x0 = K.BatchNormalization(momentum=0.9)(x0)

    y = lq.layers.QuantConv2D(16, 3, padding="same", **BINARY)(x0)
    y = K.BatchNormalization(momentum=0.9)(y)
    x1 = K.PReLU(shared_axes=[1, 2])(K.Add()([y, x0]))

    s = K.BatchNormalization(momentum=0.9)(K.MaxPool2D(2)(x1))
    y = lq.layers.QuantConv2D(16, 3, strides=2, padding="same", **BINARY)(x1)
    y = K.BatchNormalization(momentum=0.9)(y)
    x2 = K.Concatenate()([s, K.Add()([y, s])])

    y = lq.layers.QuantDepthwiseConv2D(3, padding="same", input_quantizer="ste_sign",
                                       depthwise_quantizer="ste_sign",
                                       depthwise_constraint="weight_clip", use_bias=False)(x2)
    y = K.BatchNormalization(momentum=0.9)(y)
    x3 = K.ReLU()(K.Add()([y, x2]))

    g = K.BatchNormalization(momentum=0.9)(K.GlobalAveragePooling2D()(x3))
    out = lq.layers.QuantDense(10, **BINARY)(g)
    out = K.BatchNormalization(momentum=0.9)(out)
    return tf.keras.Model(inp, out)


def build_random() -> tf.keras.Model:
    """Untrained QuickNet block, y = BN(ReLU(bconv(sign x))) + x, with random BatchNorm
    statistics (negative scales too), then mean -> binary dense: exact integer outputs. LCE
    keeps this ReLU as a RELU operator between the bconv and the BN's MUL/ADD."""
    inp = K.Input((8, 8, 1))
    x0 = lq.layers.QuantConv2D(16, 3, padding="same", kernel_quantizer="ste_sign",
                               kernel_constraint="weight_clip", use_bias=False)(inp)
    x0 = K.BatchNormalization()(x0)
    y = lq.layers.QuantConv2D(16, 3, padding="same", **BINARY)(x0)
    y = K.BatchNormalization()(K.ReLU()(y))
    g = K.GlobalAveragePooling2D()(K.Add()([y, x0]))
    model = tf.keras.Model(inp, lq.layers.QuantDense(10, **BINARY)(g))
    rng = np.random.default_rng(SEED + 2)
    for layer in model.layers:
        if isinstance(layer, K.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            gamma = rng.choice([-1.0, 1.0], c) * rng.uniform(0.3, 2.0, c)
            stats = (gamma, rng.normal(0.0, 1.0, c), rng.normal(0.0, 4.0, c),
                     rng.uniform(0.5, 20.0, c))
            layer.set_weights([np.float32(v) for v in stats])
    return model


def train(model: tf.keras.Model, x: np.ndarray, y: np.ndarray) -> None:
    steps = EPOCHS * int(np.ceil(len(x) / BATCH))
    lr = tf.keras.optimizers.schedules.CosineDecay(1e-2, steps)
    model.compile(tf.keras.optimizers.Adam(lr),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, shuffle=True)


def lce_outputs(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    return np.asarray(lce.testing.Interpreter(flatbuffer, num_threads=1).predict(x))


def op_names(flatbuffer: bytes) -> list[str]:
    """Operators of a converted file, in order (for the record of what LCE produced)."""
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(flatbuffer, 0))
    names = []
    for op in m.subgraphs[0].operators:
        code = m.operatorCodes[op.opcodeIndex]
        b = max(code.builtinCode, code.deprecatedBuiltinCode)
        names.append(code.customCode.decode() if code.customCode else
                     next(k for k, v in vars(s.BuiltinOperator).items() if v == b))
    return names


def write(name: str, flatbuffer: bytes, x: np.ndarray, y: np.ndarray) -> None:
    (HERE / f"{name}.tflite").write_bytes(flatbuffer)
    np.save(HERE / f"{name}_x.npy", x)
    np.save(HERE / f"{name}_ref.npy", y)
    print(f"{name}: {len(flatbuffer)} bytes, output {y.shape} {y.dtype}")


def main() -> None:
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    split = load_split()
    x_img = split.x_train.reshape(-1, 8, 8, 1)
    t_img = split.x_test.reshape(-1, 8, 8, 1)
    record: dict[str, dict] = {}

    def accuracy(pred: np.ndarray) -> float:
        return float(np.mean(np.argmax(pred, axis=1) == split.y_test))

    model = build()
    train(model, x_img, split.y_train)
    fb = lce.convert_keras_model(model)
    record["resnet_lce"] = {"keras": accuracy(model.predict(t_img, verbose=0)),
                            "tflite": accuracy(lce_outputs(fb, t_img)), "ops": op_names(fb)}
    sample = t_img[:SAMPLE_SIZE]
    write("resnet_lce", fb, sample, lce_outputs(fb, sample).astype(np.float32))

    # 8-bit variant: LCE's converter quantises every real-valued tensor to int8 with the
    # default range (no representative dataset); input and output int8.
    try:
        fb8 = lce.convert_keras_model(model, inference_input_type=tf.int8,
                                      inference_output_type=tf.int8,
                                      experimental_default_int8_range=(-8.0, 8.0))
        q = sample.astype(np.int8)  # the int8 input scale is printed below
        record["resnet_int8"] = {"ops": op_names(fb8)}
        try:
            y8 = lce_outputs(fb8, q)
            write("resnet_int8", fb8, q, y8)
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            record["resnet_int8"]["interpreter_error"] = repr(exc)
            (HERE / "resnet_int8.tflite").write_bytes(fb8)
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        record["resnet_int8"] = {"convert_error": repr(exc)}

    rnd = build_random()
    rnd_fb = lce.convert_keras_model(rnd)
    rx = np.random.default_rng(SEED + 3).integers(0, 17, (SAMPLE_SIZE, 8, 8, 1)).astype(np.float32)
    record["resnet_random_lce"] = {"ops": op_names(rnd_fb)}
    write("resnet_random_lce", rnd_fb, rx, lce_outputs(rnd_fb, rx).astype(np.float32))

    (HERE / "resnet_accuracy.json").write_text(json.dumps(record, indent=1, sort_keys=True)
                                               + "\n")
    print(json.dumps(record, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
