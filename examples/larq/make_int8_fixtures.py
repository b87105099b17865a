"""Small random-weight int8 models for tests/test_tflite_int8.py (LCE int8 conversion).

Same throw-away virtual environment as make_resnet_fixture.py (TensorFlow is never a
dependency of edge-sdk; CI reads the committed files):

    python3.11 -m venv /tmp/lcevenv
    /tmp/lcevenv/bin/pip install tensorflow-cpu==2.21.0 larq-compute-engine==0.16.0 \
        ai-edge-litert==2.3.0
    /tmp/lcevenv/bin/pip install --no-deps tf-keras==2.21.0 larq==0.14.0 numpy==1.26.4
    TF_USE_LEGACY_KERAS=1 /tmp/lcevenv/bin/python examples/larq/make_int8_fixtures.py

FakeQuant ranges give the int8 tensors different scales (LCE's converter keeps them), the rest
takes the default int8 range. Each model ends in a global average (int8 MEAN over H, W): the
SDK takes flat outputs only. Writes `int8_<name>.tflite`, `int8_<name>_x.npy` (random int8
codes), `int8_<name>_ref.npy` (LCE's interpreter) and `int8_<name>_tensors.npz` (the
interpreter's value of every operator output, key "t<tensor index>") next to this file.

    ops     CONV_2D + RELU, CONV_2D 1x1, ADD of two tensors with different scales, PRELU,
            MUL and ADD by per-channel constants, MEAN (scale changes)
    pool    MAX_POOL_2D, CONCATENATION (equal scales), MEAN
    fc      MEAN, FULLY_CONNECTED (int8 weights, int32 bias)
    dw      a 6x6x3 (RGB) input, DEPTHWISE_CONV_2D (3x3 SAME, whose negative ties tell
            MultiplyByQuantizedMultiplier's rounding from ruy's; 3x3 stride 2 VALID, depth
            multiplier 2, RELU), CONV_2D 1x1, MEAN
    flat    a 6x6x3 input, CONV_2D 3x3 stride 2 + RELU, MAX_POOL_2D, RESHAPE (flatten, HWC
            order), FULLY_CONNECTED
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent
K = tf.keras.layers
SEED = 11
BIAS = tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=SEED)
N = 32


def fq(x, lo: float, hi: float):
    return K.Lambda(lambda t: tf.quantization.fake_quant_with_min_max_args(t, lo, hi))(x)


def model_ops(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((5, 5, 1))
    x = fq(inp, -4.0, 4.0)
    c = fq(K.Conv2D(8, 3, padding="same", activation="relu", bias_initializer=BIAS)(x), 0.0, 6.0)
    d = fq(K.Conv2D(8, 1, bias_initializer=BIAS)(x), -2.0, 2.0)
    s = fq(K.Add()([c, d]), -7.0, 7.0)
    p = fq(K.PReLU(shared_axes=[1, 2], alpha_initializer=tf.keras.initializers.RandomUniform(
        -0.5, 0.5, seed=SEED))(s), -5.0, 5.0)
    k = tf.constant(rng.uniform(0.2, 1.5, 8).astype(np.float32))
    b = tf.constant(rng.uniform(-1.0, 1.0, 8).astype(np.float32))
    m = fq(K.Lambda(lambda t: t * k)(p), -4.0, 4.0)
    a = fq(K.Lambda(lambda t: t + b)(m), -5.0, 5.0)
    return tf.keras.Model(inp, fq(K.GlobalAveragePooling2D()(a), -2.0, 2.0))


def model_pool(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((5, 5, 1))
    x = fq(inp, -4.0, 4.0)
    c = K.Conv2D(6, 3, padding="same", bias_initializer=BIAS)(x)
    mp = K.MaxPool2D(2, padding="same")(c)
    d = K.Conv2D(6, 2, strides=2, padding="same", bias_initializer=BIAS)(x)
    cat = K.Concatenate()([mp, d])
    return tf.keras.Model(inp, K.GlobalAveragePooling2D()(cat))


def model_fc(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((5, 5, 1))
    x = fq(inp, -4.0, 4.0)
    c = K.Conv2D(8, 3, bias_initializer=BIAS)(x)
    g = fq(K.GlobalAveragePooling2D()(c), -3.0, 3.0)
    return tf.keras.Model(inp, fq(K.Dense(5, bias_initializer=BIAS)(g), -6.0, 6.0))


def model_dw(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((6, 6, 3))
    x = fq(inp, -4.0, 4.0)
    a = fq(K.DepthwiseConv2D(3, padding="same", bias_initializer=BIAS)(x), -6.0, 6.0)
    b = fq(K.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu",
                             bias_initializer=BIAS)(a), 0.0, 5.0)
    c = K.Conv2D(4, 1, bias_initializer=BIAS)(b)
    return tf.keras.Model(inp, fq(K.GlobalAveragePooling2D()(c), -3.0, 3.0))


def model_flat(rng: np.random.Generator) -> tf.keras.Model:
    inp = K.Input((6, 6, 3))
    x = fq(inp, -4.0, 4.0)
    c = fq(K.Conv2D(8, 3, strides=1, activation="relu", bias_initializer=BIAS)(x), 0.0, 6.0)
    p = K.MaxPool2D(2)(c)
    return tf.keras.Model(inp, fq(K.Dense(6, bias_initializer=BIAS)(K.Flatten()(p)), -6.0, 6.0))


def fix_int8_biases(fb: bytes) -> bytes:
    """LCE's converter (0.16, with `experimental_default_int8_range`) gives a float conv's bias
    the default int8 range, which TFLite's CONV_2D refuses (it needs int32 with scale
    s_in * s_w[c], zero point 0): re-quantise each such bias the way TFLite's own quantiser
    does, so the interpreter runs the model."""
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(fb, 0))
    g = m.subgraphs[0]
    for op in g.operators:
        code = m.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) not in (
                s.BuiltinOperator.CONV_2D, s.BuiltinOperator.DEPTHWISE_CONV_2D,
                s.BuiltinOperator.FULLY_CONNECTED):
            continue
        if len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x, w, b = (g.tensors[i] for i in op.inputs[:3])
        if b.type != s.TensorType.INT8:
            continue
        buf = m.buffers[b.buffer]
        codes = np.frombuffer(bytes(bytearray(buf.data)), np.int8).astype(np.float64)
        real = (codes - b.quantization.zeroPoint[0]) * b.quantization.scale[0]
        scale = np.float32(x.quantization.scale[0]) * np.asarray(w.quantization.scale,
                                                                   np.float32)
        q = np.round(real / scale.astype(np.float64)).astype(np.int32)
        buf.data = np.frombuffer(q.astype("<i4").tobytes(), np.uint8)
        b.type = s.TensorType.INT32
        b.quantization.scale = [float(v) for v in scale]
        b.quantization.zeroPoint = [0] * len(scale)
        b.quantization.quantizedDimension = 0
    import flatbuffers

    builder = flatbuffers.Builder(0)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed without the time stamps, so a rerun writes the same bytes."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]))
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def every_output(fb: bytes, x: np.ndarray) -> dict[str, np.ndarray]:
    """LCE's interpreter's value of every operator output (the model re-rooted on each), so
    the tests compare each int8 op element by element, not only what reaches the output."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    m = s.ModelT.InitFromObj(s.Model.GetRootAsModel(fb, 0))
    out = {}
    for op in m.subgraphs[0].operators:
        t = int(op.outputs[0])
        m.subgraphs[0].outputs = [t]
        builder = flatbuffers.Builder(0)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        it = lce.testing.Interpreter(bytes(builder.Output()), num_threads=1)
        out[f"t{t}"] = np.asarray(it.predict(x))
    return out


def main() -> None:
    tf.keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    for name, build in (("ops", model_ops), ("pool", model_pool), ("fc", model_fc),
                        ("dw", model_dw), ("flat", model_flat)):
        model = build(rng)
        fb = lce.convert_keras_model(model, inference_input_type=tf.int8,
                                     inference_output_type=tf.int8,
                                     experimental_default_int8_range=(-8.0, 8.0))
        fb = fix_int8_biases(fb)
        x = rng.integers(-128, 128, (N, *model.input_shape[1:])).astype(np.int8)
        y = np.asarray(lce.testing.Interpreter(fb, num_threads=1).predict(x))
        stem = f"int8_{name}"
        (HERE / f"{stem}.tflite").write_bytes(fb)
        np.save(HERE / f"{stem}_x.npy", x)
        np.save(HERE / f"{stem}_ref.npy", y)
        save_npz(HERE / f"{stem}_tensors.npz", every_output(fb, x))
        print(stem, len(fb), "bytes", y.shape, y.dtype)


if __name__ == "__main__":
    main()
