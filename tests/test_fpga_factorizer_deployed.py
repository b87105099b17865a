"""The FPGA build of factorizer models: network engine -> block softmax -> decoder in one top.

Expected values come from the host's golden path (FactorizerModel.run_outputs with
fixed_point=True: golden integer scores -> BlockSoftmax.apply -> fixed.decode, or the quantised
float query -> fixed.decode), never from the hardware. The block softmax alone runs in Amaranth's
simulator on random scores including the range's ends; whole builds run as Verilog under
cocotb + Icarus.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo.factorizer import factorizer_only

import edge_sdk
import edge_sdk.factorizer as fz
from edge_sdk import golden
from edge_sdk.converters.fpga import factorizer_deployed as fd
from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import block_softmax
from edge_sdk.factorizer_model import scores
from edge_sdk.hw.block_softmax import BlockSoftmaxStage
from edge_sdk.hw.simtools import run_streams

ATTRIBUTES = "examples/attributes/attributes_factorizer.onnx"
TEST_X = "examples/attributes/test_x.npy"


# ------------------------------------------------------------------ block softmax alone
def _score_beats(z: np.ndarray, lanes: int, beats: int) -> list[int]:
    """Scores [N, n] as the network's output beats: `lanes` 32-bit lanes, padding lanes 0."""
    out = []
    for row in z:
        pad = np.zeros(beats * lanes, dtype=np.int64)
        pad[:len(row)] = row
        for k in range(beats):
            out.append(sum((int(v) & 0xFFFFFFFF) << (32 * j)
                           for j, v in enumerate(pad[k * lanes:(k + 1) * lanes])))
    return out


def _stage_outputs(sm, z: np.ndarray, lanes: int, throttle: int) -> np.ndarray:
    dut = BlockSoftmaxStage(sm, lanes)
    beats = _score_beats(z, lanes, dut.beats)
    out, _, _ = run_streams(dut, dut.i, dut.o, beats, z.size, max_cycles=200_000,
                            ready=lambda c: c % throttle != 1 if throttle > 1 else True,
                            valid=lambda c: c % 3 != 2 if throttle > 2 else True)
    return np.array(out, dtype=np.int64).reshape(z.shape)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 3), L=st.sampled_from([1, 3, 8]), zmax=st.integers(1, 5000),
       scale=st.floats(1e-4, 50.0), bias=st.floats(-20, 20), lanes=st.integers(1, 3),
       throttle=st.integers(1, 3), seed=st.integers(0, 1000))
def test_block_softmax_stage_equals_block_softmax(B, L, zmax, scale, bias, lanes, throttle,
                                                   seed):
    rng = np.random.default_rng(seed)
    a = scale * rng.uniform(-1, 1, B * L)
    b = bias * rng.uniform(-1, 1, B * L)
    z_lo = -int(rng.integers(0, zmax + 1))
    sm = block_softmax.from_affine(a, b, B, L, z_lo, zmax)
    z = rng.integers(z_lo, zmax + 1, size=(4, B * L))
    z[0], z[1] = z_lo, zmax  # the range's ends: widest products and logits
    z[2, ::2] = z_lo
    z[2, 1::2] = zmax
    assert np.array_equal(_stage_outputs(sm, z, lanes, throttle), sm.apply(z))


def test_block_softmax_stage_on_the_example_scores():
    """The example's real affine (shift 16, 666-entry table) on its real scores' range ends."""
    _ir, head = edge_sdk.load(ATTRIBUTES).deployed()
    sm = head.tail
    rng = np.random.default_rng(1)
    z = rng.integers(sm.z_lo, sm.z_hi + 1, size=(3, sm.B * sm.L))
    z[0, :7], z[0, 7:20] = sm.z_lo, sm.z_hi
    z[1] = rng.integers(-40, 41, size=sm.B * sm.L)  # many entries near the block maximum
    assert np.array_equal(_stage_outputs(sm, z, 1, 2), sm.apply(z))
    assert (sm.apply(z) == 0).any() and (sm.apply(z) == 1 << 14).any()  # both table ends hit


# ------------------------------------------------------------------ whole builds
def _check(model, folder, ir, head, x, inputs) -> dict:
    idx, its, facts = fd.simulate(folder, {}, ir, head, inputs)
    want = model.run_outputs(x, fixed_point=True)
    got = head.outputs_of(idx, its)
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.int64
        assert np.array_equal(got[name], want[name]), name
    assert facts["samples"] == len(x)
    return facts


def test_attributes_network_and_head_equal_the_fixed_point_run(tmp_path):
    model = edge_sdk.load(ATTRIBUTES)
    ir, head = model.deployed()
    with pytest.raises(EdgeError, match="does not fit"):  # 297 kbit of weights, UP5K: 120
        fd.convert(ir, head, {}, tmp_path)
    # three scores per beat from the last dense layer (128 = 42 * 3 + 2: a padded last beat)
    rep = fd.convert(ir, head, {"board": "sim", "pe": {"dense0": 3}}, tmp_path)
    assert json.loads((tmp_path / fd.MANIFEST).read_text())["network"]["score_lanes"] == 3
    assert (rep["F"], rep["M"], rep["B"], rep["L"], rep["method"]) == (*head.shape, "default")
    json.dumps(rep)  # JSON-able
    x = np.load(TEST_X)[:4]
    facts = _check(model, tmp_path, ir, head, x, golden.quantise_input(ir.layers[0], x))
    net = rep["network"]["schedule"]["cycles_per_inference"]
    # the head adds its softmax and decode after the network's last score, never less
    assert facts["cycles_per_inference"] > net
    assert rep["cycles_per_inference"] > net
    # the query FIFO lets the head keep pace: back to back, the network's interval
    assert facts["initiation_interval"] == rep["network"]["schedule"]["initiation_interval"]


@pytest.mark.slow
def test_attributes_whole_test_split(tmp_path):
    model = edge_sdk.load(ATTRIBUTES)
    ir, head = model.deployed()
    fd.convert(ir, head, {"board": "sim"}, tmp_path)
    x = np.load(TEST_X)
    _check(model, tmp_path, ir, head, x, golden.quantise_input(ir.layers[0], x))


@pytest.mark.slow
def test_attributes_network_before_the_published_decoder(tmp_path):
    """The same network and block softmax in front of the published (iterative) decoder."""
    ir, head = edge_sdk.load(ATTRIBUTES).deployed()
    head = dataclasses.replace(head, decoder="published", options={"max_iters": 6})
    fd.convert(ir, head, {"board": "sim"}, tmp_path)
    x = np.load(TEST_X)[:3]
    idx, its, _ = fd.simulate(tmp_path, {}, ir, head, golden.quantise_input(ir.layers[0], x))
    want_idx, want_its = head.decode(head.queries(scores(ir, x)))
    assert np.array_equal(idx, want_idx) and np.array_equal(its, want_its)


F, M, B, L = 3, 8, 4, 16


@pytest.mark.parametrize("decoder", ["published", "default"])
def test_decoder_only_model_equals_the_fixed_point_run(tmp_path, decoder):
    cb = fz.random_sbc(F, M, B, L, seed=5)
    model = edge_sdk.load(factorizer_only(tmp_path / "m.onnx", cb, decoder=decoder))
    ir, head = model.deployed()
    assert ir is None and head.method == decoder
    out = tmp_path / "build"
    out.mkdir()
    rep = fd.convert(ir, head, {}, out)
    assert rep["method"] == decoder and "network" not in rep
    x, _ = fz.make_queries(cb, 4, "moved0.1", seed=2)
    facts = _check(model, out, ir, head, x, head.queries(x))
    assert facts["cycles_per_inference"] > 0
    # converted again, the design is byte-identical (the files, without a second simulation)
    text, info = fd._design(ir, head, {})
    assert (out / fd.VERILOG).read_text() == text
    assert json.loads((out / fd.MANIFEST).read_text()) == info


def test_two_converts_of_the_network_give_identical_verilog():
    """The Verilog text itself (no simulation): network + softmax + decoder elaborated twice."""
    ir, head = edge_sdk.load(ATTRIBUTES).deployed()
    a, info_a = fd._design(ir, head, {})
    b, info_b = fd._design(ir, head, {})
    assert a == b and info_a == info_b
    assert "edge_factorizer" in a and "softmax" in a


def test_lane_counts_come_from_the_options_and_unknown_ones_are_refused(tmp_path):
    cb = fz.random_sbc(F, M, B, L, seed=5)
    _ir, head = edge_sdk.load(factorizer_only(tmp_path / "m.onnx", cb, decoder="published")
                              ).deployed()
    assert (fd.spec_of(head).lanes, fd.spec_of(head).corr_lanes) == (1, 1)
    spec = fd.spec_of(head, {"factorizer_lanes": {"lanes": 2, "corr_lanes": 4}})
    assert (spec.lanes, spec.corr_lanes) == (2, 4)
    with pytest.raises(EdgeError, match="factorizer_lanes"):
        fd.spec_of(head, {"factorizer_lanes": {"pe": 2}})
    with pytest.raises(EdgeError, match="factorizer_lanes"):
        fd.spec_of(head, {"factorizer_lanes": {"lanes": 0}})
