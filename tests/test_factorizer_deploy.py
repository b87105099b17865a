"""The target semantics of factorizer models: integer block softmax, lowering, the record."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from test_factorizer_onnx import model as softmax_model

import edge_sdk
import edge_sdk.factorizer as fz
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import block_softmax
from edge_sdk.factorizer.deploy import DeployedHead

ATTRIBUTES = "examples/attributes/attributes_factorizer.onnx"


def _reference(sm, z) -> list[list[int]]:
    """Plain-Python integers: floor division, the table recomputed from its formula."""
    out = []
    for row in np.asarray(z).tolist():
        t = [(int(sm.mul[e]) * v + int(sm.add[e])) // (1 << sm.shift) for e, v in enumerate(row)]
        q = []
        for b in range(sm.B):
            blk = t[b * sm.L:(b + 1) * sm.L]
            top = max(blk)
            for v in blk:
                e = math.floor(math.exp(-(top - v) / (1 << sm.frac)) * (1 << 14) + 0.5)
                q.append(e)
        out.append(q)
    return out


@settings(max_examples=40, deadline=None)
@given(B=st.integers(1, 4), L=st.sampled_from([1, 2, 5, 16]), zmax=st.integers(1, 5000),
       scale=st.floats(1e-4, 50.0), bias=st.floats(-20, 20), seed=st.integers(0, 1000))
def test_block_softmax_equals_plain_integer_reading(B, L, zmax, scale, bias, seed):
    rng = np.random.default_rng(seed)
    a = scale * rng.uniform(-1, 1, B * L)
    b = bias * rng.uniform(-1, 1, B * L)
    sm = block_softmax.from_affine(a, b, B, L, -zmax, zmax)
    z = rng.integers(-zmax, zmax + 1, size=(5, B * L))
    z[0] = zmax
    z[1] = -zmax
    # no int32 overflow anywhere in the range, as the C and HDL multiply in 32 bits
    assert np.all(np.abs(sm.mul) * zmax + np.abs(sm.add) < 2**31)
    assert sm.apply(z).tolist() == _reference(sm, z)
    # logits are the float affine to within one step of 2^-frac (plus the scale's rounding)
    t = sm.logits(z) / (1 << sm.frac)
    err = np.abs(t - (a * z + b))
    assert np.all(err <= 1.0 / (1 << sm.frac) + np.abs(z) * 2.0 ** -(sm.frac + sm.shift) + 1e-9)


def test_block_softmax_is_close_to_the_float_softmax():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.001, 0.02, 64), rng.normal(0, 1, 64)
    sm = block_softmax.from_affine(a, b, 4, 16, -2048, 2048)
    z = rng.integers(-2048, 2049, size=(50, 64))
    q = sm.apply(z).reshape(50, 4, 16).astype(np.float64)
    p = q / q.sum(-1, keepdims=True)
    s = np.exp((a * z + b).reshape(50, 4, 16))
    s /= s.sum(-1, keepdims=True)
    assert np.max(np.abs(p - s)) < 0.01


def test_scores_out_of_range_and_logits_too_large_are_refused():
    sm = block_softmax.from_affine(np.ones(4), np.zeros(4), 1, 4, -10, 10)
    with pytest.raises(EdgeError, match="outside"):
        sm.apply(np.full((1, 4), 11))
    with pytest.raises(EdgeError, match="32-bit"):
        block_softmax.from_affine(np.full(4, 1e12), np.zeros(4), 1, 4, -10, 10)


def test_deployed_head_round_trips_through_json():
    m = edge_sdk.load(ATTRIBUTES)
    _ir, dep = m.deployed()
    back = DeployedHead.from_json(dep.to_json())
    assert back.to_json() == dep.to_json()
    assert np.array_equal(back.indices, dep.indices) and back.tail.shift == dep.tail.shift


def test_fixed_point_run_of_the_example_agrees_with_float_on_the_test_split():
    m = edge_sdk.load(ATTRIBUTES)
    x = np.load("examples/attributes/test_x.npy")
    key = m.head.outputs[0]
    fl = m.run_outputs(x)[key]
    fx = m.run_outputs(x, fixed_point=True)[key]
    assert (fl == fx).all(axis=1).mean() >= 0.99


def test_a_float_softmax_model_runs_but_does_not_convert(tmp_path):
    cb = fz.random_sbc(3, 9, 4, 16, seed=7)
    path = softmax_model(str(tmp_path / "m.onnx"), cb.as_dense().reshape(3, 9, -1))
    m = edge_sdk.load(path)
    x = np.random.default_rng(0).normal(size=(4, 64)).astype(np.float32)
    assert m.run_outputs(x, fixed_point=True)["idx"].shape == (4, 3)
    with pytest.raises(EdgeError, match="reads the model input"):
        m.deployed()


def _relu_tail_model(path: str) -> str:
    """A binary dense layer whose scores reach the factorizer through Relu: not convertible."""
    rng = np.random.default_rng(1)
    w = np.sign(rng.normal(size=(64, 32))).astype(np.float32)
    cb = fz.random_sbc(2, 4, 4, 16, seed=2).as_dense().reshape(2, 4, -1).astype(np.float32)
    nodes = [h.make_node("Sign", ["x"], ["s"], name="sign"),
             h.make_node("MatMul", ["s", "w"], ["z"], name="dense"),
             h.make_node("Relu", ["z"], ["q"], name="relu"),
             h.make_node("BlockCodeFactorizer", ["q", "cb"], ["idx"], domain="edge_sdk",
                         name="head", blocks=4, block_len=16)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["N", 32])],
                     [h.make_tensor_value_info("idx", T.INT64, ["N", 2])],
                     [nh.from_array(w.T.copy(), "w"), nh.from_array(cb, "cb")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("edge_sdk", 1)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_a_tail_that_is_not_a_block_softmax_is_refused_by_name(tmp_path):
    m = edge_sdk.load(_relu_tail_model(str(tmp_path / "relu.onnx")))
    with pytest.raises(EdgeError, match="Relu node 'relu'"):
        m.deployed()
    assert "not convertible" in m.inspect().text
