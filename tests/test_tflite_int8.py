"""LCE's int8 conversion (issue #11): TFLite's integer kernels bit for bit.

The expected values come from LCE's own interpreter (the committed *_ref.npy, made by
examples/larq/make_resnet_fixture.py / make_int8_fixtures.py in a throw-away venv), from
converters/tflite/reference.py (an independent NumPy reading written from TFLite's C++), and,
for the rounding primitives, from a plain Python big-int transcription of TFLite's C++ here.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge_sdk import golden
from edge_sdk import tflite_int8 as ti
from edge_sdk.cli import main
from edge_sdk.converters.tflite.frontend import import_tflite
from edge_sdk.converters.tflite.reference import run_reference
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.passes.fixed_point import refuse_on_target
from edge_sdk.passes.pipeline import lower

LARQ = Path(__file__).resolve().parent.parent / "examples" / "larq"
RESNET = LARQ / "resnet_int8.tflite"
FIXTURES = sorted(p.stem for p in LARQ.glob("int8_*.tflite"))


def _load(stem: str):
    return (LARQ / f"{stem}.tflite", np.load(LARQ / f"{stem}_x.npy"),
            np.load(LARQ / f"{stem}_ref.npy"))


@pytest.fixture(scope="module")
def resnet():
    path, x, ref = _load("resnet_int8")
    return lower(import_tflite(path)), x, ref


# ---------------------------------------------------------------------------- end to end
def test_resnet_int8_equals_lce_interpreter(resnet):
    graph, x, ref = resnet
    assert ref.dtype == np.int8
    y = golden.run(graph, x)
    np.testing.assert_array_equal(y, ref.astype(np.float32))


def test_resnet_int8_uses_the_int8_layers(resnet):
    graph, _, _ = resnet
    kinds = {type(layer) for layer in graph.layers}
    assert {L.TflRequant, L.TflAdd, L.TflPRelu, L.Quantize} <= kinds


def test_reference_equals_lce_interpreter():
    """reference.py (the `run --check` cross-check) on its own against LCE's interpreter."""
    path, x, ref = _load("resnet_int8")
    np.testing.assert_array_equal(run_reference(path, x), ref.astype(np.int64))


def test_fixed_point_argmax_agrees(resnet):
    graph, x, _ = resnet
    y = golden.run(graph, x)
    yf = golden.run(graph, x, fixed_point=True)
    assert np.mean(y.argmax(1) == yf.argmax(1)) >= 0.99


@pytest.mark.parametrize("stem", FIXTURES)
def test_small_int8_fixtures(stem):
    """Small random-weight int8 models (make_int8_fixtures.py); all-integer, so the
    fixed-point mode gives the same codes."""
    path, x, ref = _load(stem)
    graph = lower(import_tflite(path))
    np.testing.assert_array_equal(golden.run(graph, x), ref.astype(np.float32))
    np.testing.assert_array_equal(golden.run(graph, x, fixed_point=True), ref.astype(np.float32))
    np.testing.assert_array_equal(run_reference(path, x), ref.astype(np.int64))


def check_every_int8_tensor(path, x: np.ndarray, want) -> int:
    """Each int8 operator output of the file at `path` on `x` against LCE's interpreter's value
    of it (`want[f"t{tensor}"]`, NHWC codes); returns how many were compared."""
    from edge_sdk.converters.tflite import schema
    from edge_sdk.converters.tflite.frontend import Frontend

    fe = Frontend(schema.load(path))
    env = golden.run_all(lower(fe.run()), x)
    checked = 0
    for op in fe.m.operators:
        t = op.outputs[0]
        if fe.m.tensors[t].type_code != 9:
            continue
        v = fe.vals[t]
        got = env[v.tensor] + v.qp[1]
        if v.layout in ("chw", "hwc_flat"):  # the IR holds CHW, TFLite HWC
            got = got.reshape(len(x), *v.info.shape).transpose(0, 2, 3, 1)
        ref = want[f"t{t}"]
        np.testing.assert_array_equal(got.reshape(ref.shape), ref.astype(np.int64),
                                      err_msg=f"operator #{op.index} {op.name}")
        checked += 1
    return checked


@pytest.mark.parametrize("stem", FIXTURES)
def test_every_int8_tensor_equals_the_interpreter(stem):
    """Each int8 operator output (not only what reaches the model output: a MEAN can absorb a
    wrong rounding) against the interpreter's value of it (`<stem>_tensors.npz`)."""
    path, x, _ = _load(stem)
    assert check_every_int8_tensor(path, x, np.load(LARQ / f"{stem}_tensors.npz")) >= 3


def test_cli_run_check_and_fixed_point(tmp_path):
    out = tmp_path / "y.npy"
    args = ["run", str(RESNET), "--input", str(LARQ / "resnet_int8_x.npy"), "--output", str(out)]
    assert main([*args, "--check"]) == 0
    np.testing.assert_array_equal(np.load(out), np.load(LARQ / "resnet_int8_ref.npy"))
    assert main([*args, "--fixed-point"]) == 0


def test_refuse_on_target_names_the_layer(resnet):
    """Both backends run the TFLite int8 layers now (tests/test_cortexm_tflite_int8.py,
    tests/test_fpga_tflite_int8.py); a target without them still names the layer."""
    graph, _, _ = resnet
    refuse_on_target(graph, "fpga")
    with pytest.raises(EdgeError, match="tflrequant0.*not supported by the nowhere backend"):
        refuse_on_target(graph, "nowhere")


def test_int8_input_takes_codes_only(resnet):
    graph, x, _ = resnet
    with pytest.raises(EdgeError, match="outside the model's input range"):
        golden.run(graph, np.full_like(x[:1], 200, dtype=np.int64))
    with pytest.raises(EdgeError, match="no input range option"):
        import_tflite(RESNET, input_range=(0, 16))


# ---------------------------------------------------------------------------- primitives
def _py_quantize_multiplier(m: float) -> tuple[int, int]:
    """quantization_util.cc QuantizeMultiplier, transcribed with Python ints."""
    if m == 0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(math.copysign(math.floor(abs(q) * 2**31 + 0.5), q))  # std::round
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def _py_mbqm(x: int, m: int, shift: int, ruy: bool = False) -> int:
    """common.h MultiplyByQuantizedMultiplier (double rounding), Python ints; `ruy`: the
    last shift rounds half up instead of RoundingDivideByPOT's half away from zero."""
    left, right = max(shift, 0), max(-shift, 0)
    a = x * (1 << left)
    if a == m == -(2**31):
        high = 2**31 - 1
    else:
        ab = a * m
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        num = ab + nudge
        high = int(num / 2**31) if abs(num) < 2**52 else (
            num // 2**31 if num >= 0 else -((-num) // 2**31))  # C++ truncation
    if ruy:
        return math.floor(Fraction(high, 1 << right) + Fraction(1, 2))
    mask = (1 << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False))
def test_quantize_multiplier_matches_cpp(m):
    if m >= 2.0**30:
        with pytest.raises(ValueError):
            ti.quantize_multiplier(m)
        return
    assert ti.quantize_multiplier(m) == _py_quantize_multiplier(m)


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(-31, 0))
def test_mbqm_matches_cpp(x, m, shift):
    assert int(ti.mbqm(np.array([x]), np.array([m]), np.array([shift]))[0]) == \
        _py_mbqm(x, m, shift)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(2**20), 2**20), st.integers(2**30, 2**31 - 1), st.integers(1, 10))
def test_mbqm_left_shift_matches_cpp(x, m, shift):
    assert int(ti.mbqm(np.array([x]), np.array([m]), np.array([shift]))[0]) == \
        _py_mbqm(x, m, shift)


@settings(max_examples=300, deadline=None)
@example(2.5, 1.0, 0)  # halves round away from zero
@example(-2.5, 1.0, 0)
@example(-0.5, 1.0, 3)
@given(st.floats(-1024.0, 1024.0, allow_nan=False, width=32),
       st.floats(0.0625, 1.0, allow_nan=False, width=32), st.integers(-128, 127))
def test_quantize_tflite_matches_cpp(x, scale, zp):
    """QUANTIZE: std::round(double(x) / double(scale)) + zp, clamped (Python's exact
    Fraction arithmetic for the half-away rounding)."""
    q = Fraction(float(np.float64(np.float32(x)) / np.float64(np.float32(scale))))
    r = math.floor(abs(q) + Fraction(1, 2)) * (1 if q >= 0 else -1)
    want = min(max(r + zp, -128), 127) - zp
    got = golden.quantize_tflite(np.array([x], np.float32), float(np.float32(scale)), zp,
                                 -128, 127)
    assert int(got[0]) == want


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(-31, 0))
def test_mbqm_ruy_matches(x, m, shift):
    assert int(ti.mbqm_ruy(np.array([x]), np.array([m]), np.array([shift]))[0]) == \
        _py_mbqm(x, m, shift, ruy=True)


def test_ruy_rounding_differs_on_negative_ties():
    """A tie measured in the int8_fc fixture: -28.5 is -28 through ruy, -29 through MBQM."""
    m, e = 1 << 30, -5  # x * 2**-6
    x = np.array([-28 * 64 - 32])
    assert int(ti.mbqm_ruy(x, np.array([m]), np.array([e]))[0]) == -28
    assert int(ti.mbqm(x, np.array([m]), np.array([e]))[0]) == -29


def test_srdhm_saturates():
    assert int(ti.srdhm(np.array([-(2**31)]), np.array([-(2**31)]))[0]) == 2**31 - 1


def test_mbqm_overflow_is_an_error():
    with pytest.raises(EdgeError, match="overflows"):
        ti.mbqm(np.array([2**30]), np.array([2**30]), np.array([2]))


def test_mean_multiplier_rounds_coarsely():
    """int8 MEAN folds 1/n into the multiplier without renormalising it (measured against LCE's
    interpreter by the int8_ops fixture): 374 * 2.5 / 25 = 37.4 comes out as 38."""
    m0, e0 = _py_quantize_multiplier(2.5)
    m, e = ti.mean_multiplier(2.5, 25)
    assert (m, e) == ((m0 << 4) // 25, e0 - 4)
    assert int(ti.mbqm(np.array([374]), np.array([m]), np.array([e]))[0]) == 38 == \
        _py_mbqm(374, m, e)
    assert ti.mean_multiplier(1.0, 16) == ti.quantize_multiplier(1 / 16)


# ---------------------------------------------------------------------------- refusals, IR
def _frontend():
    from edge_sdk.converters.tflite import schema
    from edge_sdk.converters.tflite.frontend import Frontend

    return Frontend(schema.load(RESNET))


def _op(fe, name: str):
    return next(op for op in fe.m.operators if op.name == name)


def test_concat_of_different_scales_is_refused():
    from edge_sdk.converters.tflite.quant import QParams

    fe = _frontend()
    t = _op(fe, "CONCATENATION").inputs[0]
    q = fe.qparams[t]
    fe.qparams[t] = QParams(q.scale * 2, q.zero_point, q.dim)
    with pytest.raises(EdgeError, match=r"operator #\d+ .*different scales or zero points"):
        fe.run()


def test_per_channel_activation_is_refused():
    from edge_sdk.converters.tflite.quant import QParams

    fe = _frontend()
    t = _op(fe, "PRELU").outputs[0]
    q = fe.qparams[t]
    fe.qparams[t] = QParams(np.array([q.scale[0], 2 * q.scale[0]], np.float32),
                            np.array([0, 0]), 3)
    with pytest.raises(EdgeError, match="per-channel quantisation"):
        fe.run()


def test_other_operators_on_int8_are_refused():
    fe = _frontend()
    _op(fe, "MAX_POOL_2D").name = "AVERAGE_POOL_2D"
    with pytest.raises(EdgeError, match="AVERAGE_POOL_2D on int8 tensors is not supported"):
        fe.run()


def test_ir_round_trip(resnet, tmp_path):
    from edge_sdk.ir import serialize

    graph, x, _ = resnet
    serialize.save(graph, tmp_path / "ir")
    np.testing.assert_array_equal(golden.run(serialize.load(tmp_path / "ir"), x),
                                  golden.run(graph, x))


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_corrupted_int8_file_fails_cleanly(tmp_path_factory, seed, flips):
    """Random byte changes in an int8 file: imported and run, or one EdgeError; never another
    exception (sizes, indices, scales and zero points in the file are not trusted)."""
    blob = bytearray(RESNET.with_name("int8_fc.tflite").read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(0, len(blob), flips):
        blob[int(pos)] = int(rng.integers(0, 256))
    path = tmp_path_factory.mktemp("fuzz") / "m.tflite"
    path.write_bytes(bytes(blob))
    x = np.load(LARQ / "int8_fc_x.npy")[:2]
    try:
        graph = lower(import_tflite(path))
        golden.run(graph, x)
    except EdgeError as exc:
        assert "\n" not in str(exc)
