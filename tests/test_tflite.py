"""TFLite / Larq Compute Engine input.

References, none of them produced by the code under test:
- the committed outputs of LCE's own interpreter (`examples/larq/*_ref.npy`, made by
  `examples/larq/make_fixtures.py` with TensorFlow 2.21 + LCE 0.16 in a throw-away venv);
- the `flatbuffers` package's own FlexBuffers encoder/decoder (for the custom-option reader);
- the NumPy reading of the TFLite/LCE ops (`converters/tflite/reference.py`), itself checked
  against LCE's interpreter on the fixtures, as the oracle for random models written here with
  the `flatbuffers` Builder (a writer independent of the reader under test).
"""

from __future__ import annotations

import math
import shutil

import flatbuffers
import numpy as np
import pytest
from conftest import EXAMPLES, assert_close_to_reference, run_cli
from flatbuffers import flexbuffers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_sdk
from edge_sdk import bitpack
from edge_sdk.converters.tflite import flexbuf, schema
from edge_sdk.converters.tflite.reference import pack, run_reference
from edge_sdk.errors import EdgeError
from edge_sdk.ir.layers import GroupConv2d

LARQ = EXAMPLES / "larq"
FIXTURES = ["cnn_lce", "mlp_lce", "mlp_plain", "random_lce", "grouped_lce"]
# end in a binary dense layer without float ops: exact integers
INT_OUTPUT = {"random_lce", "grouped_lce"}


# ---------------------------------------------------------------------------- fixtures vs LCE
@pytest.fixture(scope="module")
def models():
    return {name: edge_sdk.load(LARQ / f"{name}.tflite") for name in FIXTURES}


@pytest.mark.parametrize("name", FIXTURES)
def test_golden_equals_lce_interpreter(models, name):
    x, ref = np.load(LARQ / f"{name}_x.npy"), np.load(LARQ / f"{name}_ref.npy")
    y = models[name].run(x)
    assert_close_to_reference(y, ref, exact=name in INT_OUTPUT)
    if name not in INT_OUTPUT:  # softmax tails: float32 rounding only, every class the same
        assert np.abs(y - ref).max() < 1e-6
        assert np.array_equal(y.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("name", FIXTURES)
def test_numpy_reference_equals_lce_interpreter(name):
    x, ref = np.load(LARQ / f"{name}_x.npy"), np.load(LARQ / f"{name}_ref.npy")
    assert_close_to_reference(run_reference(LARQ / f"{name}.tflite", x), ref,
                              exact=name in INT_OUTPUT)


def test_fixtures_use_the_lce_ops():
    """The fixtures really exercise what the reader claims (facts dumped with TF's own schema)."""
    ops = {name: [op.name for op in schema.load(LARQ / f"{name}.tflite").operators]
           for name in FIXTURES}
    assert ops["mlp_plain"] == ["FULLY_CONNECTED", "SIGN", "ADD", "SIGN"] * 2 + [
        "FULLY_CONNECTED", "SOFTMAX"]
    assert {"LceQuantize", "LceBconv2d", "MAX_POOL_2D", "MUL", "ADD", "RESHAPE", "LceDequantize",
            "FULLY_CONNECTED", "SOFTMAX", "CONV_2D"} <= set(ops["cnn_lce"])
    assert "LceBMaxPool2d" in ops["random_lce"]
    cnn = schema.load(LARQ / "cnn_lce.tflite")
    first = next(op for op in cnn.operators if op.name == "LceBconv2d")
    assert first.custom_options == {
        "channels_in": 16, "dilation_height_factor": 1, "dilation_width_factor": 1,
        "fused_activation_function": 0, "pad_values": 1, "padding": 0, "stride_height": 1,
        "stride_width": 1}
    # the CNN has a bconv writing bitpacked output (thresholds input, int32 output tensor)
    assert any(op.name == "LceBconv2d" and len(op.inputs) == 5 and op.inputs[4] >= 0
               and cnn.tensors[op.outputs[0]].type_code == 2 for op in cnn.operators)


def test_pad_values_one_is_recorded(models):
    convs = [layer for layer in models["cnn_lce"].ir.layers if layer.kind == "conv2d"]
    assert [c.pad_value for c in convs] == [0, 1, 1, 0]


# ---------------------------------------------------------------------------- bit conventions
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 100), st.integers(0, 2**32 - 1))
def test_lce_packing_is_the_complement_of_ours(k, seed):
    """Same ±1 values: LCE's bits (1 = -1) are the complement of ours (1 = +1) on the real
    bits; both leave the padding bits of the last word 0."""
    v = np.random.default_rng(seed).choice([-1, 1], size=(3, k)).astype(np.int8)
    ours, _ = bitpack.pack_values(v)
    theirs = pack(v.astype(np.float32)).view(np.uint32)
    real = bitpack.pack_bits(np.ones((1, k), np.uint8))
    assert np.array_equal(theirs, ~ours & real)


# ---------------------------------------------------------------------------- FlexBuffers
flex_values = st.one_of(st.integers(-2**40, 2**40), st.booleans(),
                        st.floats(-1e6, 1e6, allow_nan=False), st.text(max_size=12),
                        st.lists(st.integers(-1000, 1000), max_size=6))


@settings(max_examples=80, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1,
                                max_size=10), flex_values, max_size=8))
def test_flexbuffer_reader_matches_the_flatbuffers_package(d):
    assert flexbuf.loads(flexbuffers.Dumps(d)) == flexbuffers.Loads(flexbuffers.Dumps(d))


# ---------------------------------------------------------------------------- a test-side writer
class Writer:
    """Builds small .tflite files with the `flatbuffers` Builder (TFLite schema field ids)."""

    def __init__(self):
        self.tensors: list[dict] = []
        self.ops: list[dict] = []
        self.codes: list[tuple[int, str | None]] = []

    def tensor(self, shape, data=None, type_code=0, name=None, quant=False, signature=None):
        self.tensors.append({"shape": list(shape), "data": data, "type": type_code,
                             "name": name or f"t{len(self.tensors)}", "quant": quant,
                             "sig": signature})
        return len(self.tensors) - 1

    def const(self, array, type_code=None):
        a = np.asarray(array)
        code = type_code if type_code is not None else {np.dtype("float32"): 0,
                                                        np.dtype("int32"): 2}[a.dtype]
        return self.tensor(a.shape, a, code)

    def op(self, code, inputs, outputs, options=None, custom=None):
        key = (code, custom["code"] if custom else None)
        if key not in self.codes:
            self.codes.append(key)
        self.ops.append({"code": self.codes.index(key), "in": inputs, "out": outputs,
                         "options": options, "custom": custom})
        return outputs[0]

    def _ivec(self, b, values):
        return b.CreateNumpyVector(np.asarray(values, np.int32))

    def build(self, inputs, outputs, subgraphs=1) -> bytes:
        b = flatbuffers.Builder(1024)
        buffers, tensor_offs = [], []
        b.StartObject(1)  # buffer 0: the empty sentinel
        buffers.append(b.EndObject())
        for t in self.tensors:
            buf_index = 0
            if t["data"] is not None:
                raw = b.CreateNumpyVector(np.frombuffer(np.ascontiguousarray(t["data"]).tobytes(),
                                                        np.uint8))
                b.StartObject(1)
                b.PrependUOffsetTRelativeSlot(0, raw, 0)
                buffers.append(b.EndObject())
                buf_index = len(buffers) - 1
            name = b.CreateString(t["name"])
            shape = self._ivec(b, t["shape"])
            sig = self._ivec(b, t["sig"]) if t["sig"] is not None else None
            quant = None
            if t["quant"]:
                scale = b.CreateNumpyVector(np.asarray([0.5], np.float32))
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, scale, 0)
                quant = b.EndObject()
            b.StartObject(8)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependInt8Slot(1, t["type"], 0)
            b.PrependUint32Slot(2, buf_index, 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            if quant is not None:
                b.PrependUOffsetTRelativeSlot(4, quant, 0)
            if sig is not None:
                b.PrependUOffsetTRelativeSlot(7, sig, 0)
            tensor_offs.append(b.EndObject())
        op_offs = []
        for o in self.ops:
            ins, outs = self._ivec(b, o["in"]), self._ivec(b, o["out"])
            opts = o["options"](b) if o["options"] else None
            custom = None
            if o["custom"]:
                raw = flexbuffers.Dumps(o["custom"]["attrs"]) if o["custom"]["attrs"] else b""
                custom = b.CreateNumpyVector(np.frombuffer(raw, np.uint8)) if raw else None
            b.StartObject(7)
            b.PrependUint32Slot(0, o["code"], 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if opts is not None:
                b.PrependUint8Slot(3, opts[0], 0)
                b.PrependUOffsetTRelativeSlot(4, opts[1], 0)
            if custom is not None:
                b.PrependUOffsetTRelativeSlot(5, custom, 0)
            op_offs.append(b.EndObject())
        code_offs = []
        for code, custom_name in self.codes:
            cname = b.CreateString(custom_name) if custom_name else None
            b.StartObject(4)
            b.PrependInt8Slot(0, min(code, 127), 0)
            if cname is not None:
                b.PrependUOffsetTRelativeSlot(1, cname, 0)
            b.PrependInt32Slot(2, 1, 1)
            b.PrependInt32Slot(3, code, 0)
            code_offs.append(b.EndObject())

        def vec(offsets):
            b.StartVector(4, len(offsets), 4)
            for off in reversed(offsets):
                b.PrependUOffsetTRelative(off)
            return b.EndVector()

        tv, ov = vec(tensor_offs), vec(op_offs)
        gin, gout = self._ivec(b, inputs), self._ivec(b, outputs)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tv, 0)
        b.PrependUOffsetTRelativeSlot(1, gin, 0)
        b.PrependUOffsetTRelativeSlot(2, gout, 0)
        b.PrependUOffsetTRelativeSlot(3, ov, 0)
        g = b.EndObject()
        gv, cv, bv = vec([g] * subgraphs), vec(code_offs), vec(buffers)
        desc = b.CreateString("edge-sdk test writer")
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, cv, 0)
        b.PrependUOffsetTRelativeSlot(2, gv, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, bv, 0)
        b.Finish(b.EndObject(), file_identifier=b"TFL3")
        return bytes(b.Output())


CONV, FC, MAXPOOL, MUL, ADD, RESHAPE, SOFTMAX, TANH, SIGN, CUSTOM = (3, 9, 17, 18, 0, 22, 25,
                                                                     28, 158, 32)


def conv_opts(padding, stride, dilation, act=0):
    def make(b):
        b.StartObject(7)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride[1], 0)
        b.PrependInt32Slot(2, stride[0], 0)
        b.PrependInt8Slot(3, act, 0)
        b.PrependInt32Slot(4, dilation[1], 1)
        b.PrependInt32Slot(5, dilation[0], 1)
        return 1, b.EndObject()
    return make


def pool_opts(padding, stride, kernel, act=0):
    def make(b):
        b.StartObject(6)
        b.PrependInt8Slot(0, padding, 0)
        b.PrependInt32Slot(1, stride[1], 0)
        b.PrependInt32Slot(2, stride[0], 0)
        b.PrependInt32Slot(3, kernel[1], 0)
        b.PrependInt32Slot(4, kernel[0], 0)
        b.PrependInt8Slot(5, act, 0)
        return 5, b.EndObject()
    return make


def lce(name, attrs=None):
    return {"code": name, "attrs": attrs}


def out_hw(n, k, s, d, padding):
    eff = (k - 1) * d + 1
    return -(-n // s) if padding == 0 else (n - eff) // s + 1


# ---------------------------------------------------------------------------- random models
dyadic = st.sampled_from([0.25, 0.5, 1.0, 2.0])


@st.composite
def lce_models(draw):
    """Input (NHWC, 1 to 4 channels) -> CONV_2D (±a weights, dyadic) -> LceQuantize -> LceBconv2d (any geometry,
    +1 or zero padding, float or bitpacked output) -> [pool] -> flatten -> binary dense.
    Dyadic float parameters keep every float op exact, so golden == reference exactly."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = Writer()
    h, wd, cin = draw(st.integers(3, 7)), draw(st.integers(3, 7)), draw(st.integers(1, 4))
    x = w.tensor([1, h, wd, cin], signature=[-1, h, wd, cin])
    c0 = draw(st.integers(1, 6))
    k0 = draw(st.integers(1, 3))
    filt = rng.choice([-1.0, 1.0], (c0, k0, k0, cin)) * rng.choice([0.5, 1.0, 2.0],
                                                                   (c0, 1, 1, 1))
    bias = rng.integers(-8, 9, c0) / 4 + 0.125
    a0 = w.tensor([1, h, wd, c0])
    w.op(CONV, [x, w.const(filt.astype(np.float32)), w.const(bias.astype(np.float32))], [a0],
         conv_opts(0, (1, 1), (1, 1)))
    q0 = w.tensor([1, h, wd, math.ceil(c0 / 32)], type_code=2)
    w.op(CUSTOM, [a0], [q0], custom=lce("LceQuantize"))
    o1, k1 = draw(st.integers(1, 40)), draw(st.integers(1, 3))
    s1, d1 = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = draw(st.sampled_from([0, 1]))  # SAME, VALID
    oh, ow = out_hw(h, k1, s1, d1, padding), out_hw(wd, k1, s1, d1, padding)
    if min(oh, ow) < 1:
        padding, oh, ow = 0, out_hw(h, k1, s1, d1, 0), out_hw(wd, k1, s1, d1, 0)
    pad_values = draw(st.sampled_from([0, 1]))
    bitpacked = draw(st.booleans()) and (pad_values == 1 or padding == 1)
    values = rng.choice([-1.0, 1.0], (o1, k1, k1, c0)).astype(np.float32)
    filt1 = w.const(pack(values), type_code=2)
    attrs = {"channels_in": c0, "dilation_height_factor": d1, "dilation_width_factor": d1,
             "fused_activation_function": 0, "pad_values": pad_values, "padding": padding,
             "stride_height": s1, "stride_width": s1}
    kk = k1 * k1 * c0
    if bitpacked:
        thr = w.const(rng.integers(-1, kk + 2, o1).astype(np.int32))
        a1 = w.tensor([1, oh, ow, math.ceil(o1 / 32)], type_code=2)
        w.op(CUSTOM, [q0, filt1, -1, -1, thr], [a1], custom=lce("LceBconv2d", attrs))
        if draw(st.booleans()) and min(oh, ow) >= 2:
            ph, pw = out_hw(oh, 2, 1, 1, 0), out_hw(ow, 2, 1, 1, 0)
            a2 = w.tensor([1, ph, pw, math.ceil(o1 / 32)], type_code=2)
            w.op(CUSTOM, [a1], [a2], custom=lce("LceBMaxPool2d", {
                "filter_height": 2, "filter_width": 2, "padding": 0, "stride_height": 1,
                "stride_width": 1}))
            a1, oh, ow = a2, ph, pw
        flat_in, flat_type = a1, 2
    else:
        mult = (rng.choice([-1.0, 1.0], o1) * rng.choice([0.25, 0.5, 1.0], o1)).astype(np.float32)
        b1 = (rng.integers(-8, 9, o1) / 2 + 0.25).astype(np.float32)
        a1 = w.tensor([1, oh, ow, o1])
        w.op(CUSTOM, [q0, filt1, w.const(mult), w.const(b1), -1], [a1],
             custom=lce("LceBconv2d", attrs))
        if draw(st.booleans()) and min(oh, ow) >= 2:
            ph, pw = out_hw(oh, 2, 2, 1, 1), out_hw(ow, 2, 2, 1, 1)
            a2 = w.tensor([1, ph, pw, o1])
            w.op(MAXPOOL, [a1], [a2], pool_opts(1, (2, 2), (2, 2)))
            a1, oh, ow = a2, ph, pw
        flat_in, flat_type = a1, 0
    k = oh * ow * o1
    shape = w.const(np.asarray([1, k], np.int32))
    if flat_type == 2:  # bitpacked: back to ±1 floats before flattening (as LCE writes it)
        deq = w.tensor([1, oh, ow, o1])
        w.op(CUSTOM, [flat_in], [deq], custom=lce("LceDequantize"))
        flat = w.tensor([1, k])
        w.op(RESHAPE, [deq, shape], [flat])
    else:
        flat = w.tensor([1, k])
        w.op(RESHAPE, [flat_in, shape], [flat])
        q = w.tensor([1, math.ceil(k / 32)], type_code=2)
        w.op(CUSTOM, [flat], [q], custom=lce("LceQuantize"))
        flat = w.tensor([1, k])
        w.op(CUSTOM, [q], [flat], custom=lce("LceDequantize"))
    out = w.tensor([1, 7])
    fcw = rng.choice([-1.0, 1.0], (7, k)).astype(np.float32)
    w.op(FC, [flat, w.const(fcw), -1], [out])
    return w.build([x], [out]), (h, wd, cin)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lce_models(), st.integers(0, 2**32 - 1))
def test_random_lce_models_golden_equals_reference(tmp_path_factory, model, seed):
    blob, (h, wd, cin) = model
    path = tmp_path_factory.mktemp("lce") / "m.tflite"
    path.write_bytes(blob)
    x = np.random.default_rng(seed).integers(-16, 17, (6, h, wd, cin)).astype(np.float32)
    y = edge_sdk.load(path).run(x)
    ref = run_reference(path, x)
    assert_close_to_reference(y, ref, exact=True)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 40), st.integers(1, 30), dyadic, st.sampled_from(["sign_add_sign", "lce"]),
       st.integers(0, 2**32 - 1))
def test_random_plain_mlps_golden_equals_reference(tmp_path_factory, k, hidden, a, binarise,
                                                   seed):
    """FC (±a rows, bias) -> MUL/ADD -> sign(sign(x) + 0.1) or LceQuantize/Dequantize -> FC."""
    rng = np.random.default_rng(seed)
    w = Writer()
    x = w.tensor([1, k])
    h0 = w.tensor([1, hidden])
    w0 = (rng.choice([-1.0, 1.0], (hidden, k)) * a).astype(np.float32)
    w.op(FC, [x, w.const(w0), w.const((rng.integers(-6, 7, hidden) / 4).astype(np.float32))],
         [h0])
    h1 = w.tensor([1, hidden])
    w.op(MUL, [h0, w.const(rng.choice([-2.0, 0.5, 1.0], hidden).astype(np.float32))], [h1])
    h2 = w.tensor([1, hidden])
    w.op(ADD, [w.const(np.float32([0.25])), h1], [h2])
    b = w.tensor([1, hidden])
    if binarise == "lce":
        q = w.tensor([1, math.ceil(hidden / 32)], type_code=2)
        w.op(CUSTOM, [h2], [q], custom=lce("LceQuantize"))
        w.op(CUSTOM, [q], [b], custom=lce("LceDequantize"))
    else:
        s1, s2 = w.tensor([1, hidden]), w.tensor([1, hidden])
        w.op(SIGN, [h2], [s1])
        w.op(ADD, [s1, w.const(np.float32(0.1))], [s2])
        w.op(SIGN, [s2], [b])
    out = w.tensor([1, 5])
    w.op(FC, [b, w.const(rng.choice([-1.0, 1.0], (5, hidden)).astype(np.float32)), -1], [out])
    path = tmp_path_factory.mktemp("mlp") / "m.tflite"
    path.write_bytes(w.build([x], [out]))
    xs = rng.integers(-20, 21, (8, k)).astype(np.float32)
    xs[0] = 0  # ties: sign(0) + 0.1 > 0 and LceQuantize(0) both give +1
    assert_close_to_reference(edge_sdk.load(path).run(xs), run_reference(path, xs), exact=True)


# ---------------------------------------------------------------------------- bad input
def _small_model(**kw) -> Writer:
    """Input [1, 4] -> FC(±1) -> output [1, 3]; keywords tweak one part."""
    w = Writer()
    x = w.tensor([1, 4], name=kw.get("input_name", "x"), quant=kw.get("quant", False))
    weights = kw.get("weights", np.ones((3, 4), np.float32))
    out = w.tensor([1, 3], name="logits")
    w.op(kw.get("code", FC), [x, w.const(weights), -1], [out])
    return w, x, out


def _check_fails(path, words):
    with pytest.raises(EdgeError) as info:
        edge_sdk.load(path)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for word in words:
        assert word in msg, msg
    return msg


def test_bad_inputs_one_line_each(tmp_path):
    cases = {}
    w, x, out = _small_model(code=TANH)
    cases["unknown builtin"] = (w.build([x], [out]), ["TANH", "logits"])
    w, x, out = _small_model(quant=True)
    cases["quantized"] = (w.build([x], [out]), ["quantized"])
    w, x, out = _small_model(weights=np.float32([[1, 2, 1, 1]] * 3))
    cases["non-binary"] = (w.build([x], [out]), ["not binary", "logits"])
    w, x, out = _small_model()
    cases["two subgraphs"] = (w.build([x], [out], subgraphs=2), ["2 subgraphs"])
    w, x, out = _small_model()
    w.tensor([1 << 20, 1 << 20], name="huge")
    cases["absurd size"] = (w.build([x], [out]), ["huge", "limits"])
    w, x, out = _small_model()
    w.tensors[2]["shape"] = [30, 4]  # buffer holds 3 x 4 floats
    cases["buffer too short"] = (w.build([x], [out]), ["holds 48 bytes"])
    w, x, out = _small_model(input_name="bad\nname\x00" + "z" * 5000)
    w.ops[0]["in"][1] = 99
    cases["tensor index"] = (w.build([x], [out]), ["refers to tensor 99"])
    w = Writer()
    x, y = w.tensor([1, 4, 4, 1]), w.tensor([1, 4, 4, 2])
    filt = w.const(np.ones((2, 3, 3, 1), np.float32))
    w.op(CONV, [x, filt, -1], [y], conv_opts(0, (1, 1), (1, 1), act=1))
    cases["fused relu"] = (w.build([x], [y]), ["RELU"])
    for name, (blob, words) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.tflite"
        path.write_bytes(blob)
        msg = _check_fails(path, words)
        assert str(path) in msg or name == "absurd size", (name, msg)


def test_unknown_custom_op_names_op_and_tensor(tmp_path):
    blob = (LARQ / "mlp_lce.tflite").read_bytes()
    assert blob.count(b"LceDequantize") == 1
    path = tmp_path / "m.tflite"
    path.write_bytes(blob.replace(b"LceDequantize", b"LceDequantizX"))
    out = schema.load(path).operators[2]
    msg = _check_fails(path, ["unsupported custom operator LceDequantizX", out.name])
    assert "#2" in msg


def test_truncated_and_foreign_files_via_cli(tmp_path):
    blob = (LARQ / "cnn_lce.tflite").read_bytes()
    x = tmp_path / "x.npy"
    np.save(x, np.load(LARQ / "cnn_lce_x.npy")[:2])
    cases = {"truncated.tflite": (blob[: len(blob) // 3], "not a valid tflite flatbuffer"),
             "onnx.tflite": ((EXAMPLES / "mlp_digits.onnx").read_bytes(),
                             "not a valid tflite flatbuffer"),
             "empty.tflite": (b"", "empty file")}
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        proc = run_cli("run", path, "--input", x, "--output", tmp_path / "y.npy")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0].lower(), proc.stderr
        assert not (tmp_path / "y.npy").exists()


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_corrupted_bytes_give_edge_errors_only(seed, flips):
    """Random truncations and byte flips: the reader loads a model or raises EdgeError."""
    rng = np.random.default_rng(seed)
    blob = bytearray((LARQ / "random_lce.tflite").read_bytes())
    for _ in range(flips):
        blob[rng.integers(0, len(blob))] = rng.integers(0, 256)
    blob = bytes(blob[: rng.integers(len(blob) // 2, len(blob) + 1)])
    try:
        m = schema.parse(blob, "fuzz.tflite")
    except EdgeError:
        return
    try:
        from edge_sdk.converters.tflite.frontend import Frontend
        from edge_sdk.passes.pipeline import lower

        lower(Frontend(m).run())
    except EdgeError:
        pass


def test_cli_inspect_run_check(tmp_path):
    x = LARQ / "cnn_lce_x.npy"
    proc = run_cli("inspect", LARQ / "cnn_lce.tflite")
    assert proc.returncode == 0 and "LceBconv2d" in proc.stdout, proc.stderr
    proc = run_cli("run", LARQ / "cnn_lce.tflite", "--input", x, "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stderr
    assert "NumPy TFLite/LCE reference" in proc.stdout
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(LARQ / "cnn_lce_ref.npy"),
                               rtol=1e-5, atol=1e-6)


def test_grouped_bconvs_are_grouped(models):
    """LCE's grouped LceBconv2d (filter words < input words): 2 and 3 groups of 32+ channels."""
    groups = [layer.groups for layer in models["grouped_lce"].ir.layers
              if isinstance(layer, GroupConv2d)]
    assert groups == [2, 3]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
@pytest.mark.parametrize("name", ["cnn_lce", "random_lce", "grouped_lce"])
def test_plus_one_padding_on_fpga(tmp_path, name):
    """Larq's pad_values=1 convs under Icarus: the engine feeds +1 on padded taps; equal to
    the golden model (simulate --check) and to LCE's interpreter's reference outputs."""
    x = np.load(LARQ / f"{name}_x.npy")[:3]
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("convert", LARQ / f"{name}.tflite", "--target", "fpga", "--board", "sim",
                   "-o", tmp_path / "fp")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", tmp_path / "fp", "--input", tmp_path / "x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"),
                               np.load(LARQ / f"{name}_ref.npy")[:3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["cnn_lce", "random_lce", "grouped_lce"])
def test_plus_one_padding_on_cortex_m(tmp_path, name):
    """Larq's pad_values=1 convs under QEMU: equal to the golden model (simulate --check) and
    to LCE's own interpreter outputs."""
    x = LARQ / f"{name}_x.npy"
    proc = run_cli("convert", LARQ / f"{name}.tflite", "--target", "cortex-m", "-o",
                   tmp_path / "cm")
    assert proc.returncode == 0, proc.stderr
    assert "+1 padding" in (tmp_path / "cm" / "model.c").read_text()
    proc = run_cli("simulate", tmp_path / "cm", "--input", x, "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert_close_to_reference(np.load(tmp_path / "y.npy"), np.load(LARQ / f"{name}_ref.npy"),
                              exact=name in INT_OUTPUT)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cortex-m", "fpga"])
def test_lce_mlp_runs_on_the_backends(tmp_path, target):
    x = LARQ / "mlp_lce_x.npy"
    proc = run_cli("convert", LARQ / "mlp_lce.tflite", "--target", target, "-o", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("simulate", tmp_path / "b", "--input", x, "--output", tmp_path / "y.npy",
                   "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert_close_to_reference(np.load(tmp_path / "y.npy"), np.load(LARQ / "mlp_lce_ref.npy"),
                              exact=False)


def test_ir_folder_keeps_padding_and_softmax(models, tmp_path):
    """`convert --target ir` then reading the folder runs the same model (+1 pads, softmax)."""
    x = np.load(LARQ / "cnn_lce_x.npy")
    m = models["cnn_lce"]
    again = edge_sdk.load(m.save_ir(tmp_path / "ir"))
    assert np.array_equal(again.run(x), m.run(x))
    assert [c.pad_value for c in again.ir.layers if c.kind == "conv2d"] == [0, 1, 1, 0]


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lce_models().filter(lambda m: m[1][2] >= 2), st.integers(0, 2**32 - 1))
def test_rgb_input_on_both_targets(tmp_path_factory, model, seed):
    """A multi-channel NHWC input (an RGB image) reaches the convs through an IR Transpose:
    the Cortex-M build copies it to CHW, the FPGA streams it in its own pixel order. Both
    equal the golden model (simulate --check), which equals the NumPy reference (NHWC)."""
    blob, (h, wd, cin) = model
    tmp = tmp_path_factory.mktemp("rgb")
    path = tmp / "rgb.tflite"
    path.write_bytes(blob)
    x = np.random.default_rng(seed).integers(-16, 17, (4, h, wd, cin)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    m = edge_sdk.load(path)
    assert any(layer.kind == "transpose" for layer in m.ir.layers)
    y = m.run(x)
    assert_close_to_reference(y, run_reference(path, x), exact=True)
    for target in ("cortex-m", "fpga"):
        proc = run_cli("convert", path, "--target", target, "-o", tmp / target)
        assert proc.returncode == 0, proc.stderr
        proc = run_cli("simulate", tmp / target, "--input", tmp / "x.npy",
                       "--output", tmp / f"{target}.npy", "--check")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        np.testing.assert_array_equal(np.load(tmp / f"{target}.npy"), y)
