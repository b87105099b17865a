"""Cortex-M backend, TFLite int8 layers (LCE int8 conversion, issue #11): the generated C equals
sdk/tflite_int8.run (through the golden model, `run --fixed-point`) bit for bit.

Models: the four LCE int8 fixtures of examples/larq (resnet_int8 and the small int8_ops,
int8_pool, int8_fc), whose outputs are also LCE's own interpreter's (`*_ref.npy`, an
independent reference), and small hand-built graphs that reach what the fixtures do not
(left shifts, scalar parameters, an int8 input read directly, negative multipliers). The
MBQM kernel alone is checked against the golden primitives and a Python big-int transcription
of TFLite's C++ (test_tflite_int8._py_mbqm) at the int32 extremes, the saturating
SRDHM case and rounding ties. The C is compiled for the host (all fixture inputs) and for the
Cortex-M4 under QEMU (a few inputs; all of them under -m slow, through the CLI).
"""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from host_check import assert_host_bit_exact, assert_qemu_bit_exact, host_bit_exact
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_tflite_int8 import _py_mbqm

import edge_sdk
from edge_sdk import targets
from edge_sdk import tflite_int8 as ti
from edge_sdk.converters.cortexm import build
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.kernels_tflite import mbqm_probe
from edge_sdk.converters.cortexm.plan import make_plan
from edge_sdk.converters.cortexm.tir_to_c import to_c
from edge_sdk.converters.tflite.frontend import import_tflite
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph
from edge_sdk.passes.fixed_point import tflite_int8_targets
from edge_sdk.passes.pipeline import lower

LARQ = Path(__file__).resolve().parent.parent / "examples" / "larq"
FIXTURES = ["resnet_int8", "int8_ops", "int8_pool", "int8_fc", "int8_dw", "int8_flat"]
QEMU_INPUTS = 3
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@pytest.fixture(scope="module")
def graphs():
    return {stem: lower(import_tflite(LARQ / f"{stem}.tflite")) for stem in FIXTURES}


def _x(stem: str) -> np.ndarray:
    return np.load(LARQ / f"{stem}_x.npy")


# ---------------------------------------------------------------------------- fixtures
@pytest.mark.parametrize("stem", FIXTURES)
def test_host_bit_exact_on_every_fixture_input(graphs, tmp_path, stem):
    ir, x = graphs[stem], _x(stem)
    _, y = host_bit_exact(ir, x, tmp_path / "host")
    # and LCE's interpreter (int8 codes): the C's centred output plus the output zero point
    out = targets.output_of_scores(ir, y, len(x))
    np.testing.assert_array_equal(out, np.load(LARQ / f"{stem}_ref.npy").astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("stem", FIXTURES)
def test_host_random_codes(graphs, tmp_path, stem):
    """Any int8 input codes (the extremes -128 and 127 included), against the golden model."""
    ir = graphs[stem]
    shape = _x(stem).shape[1:]
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(2000, *shape))
    x[0], x[1] = -128, 127
    assert_host_bit_exact(ir, x.astype(_x(stem).dtype), tmp_path / "host")


def test_plan_uses_the_tflite_kernels(graphs):
    kinds = {s.spec.kind for s in make_plan(graphs["resnet_int8"]).steps}
    assert {"tfl_requant", "tfl_add", "tfl_add_const", "tfl_prelu", "conv_int8",
            "quantize", "concat"} <= kinds
    kinds = {s.spec.kind for s in make_plan(graphs["int8_fc"]).steps}
    assert {"tfl_requant", "dense_int8"} <= kinds
    kinds = {s.spec.kind for s in make_plan(graphs["int8_dw"]).steps}
    assert {"transpose", "tfl_requant"} <= kinds and any("group" in k for k in kinds)


def test_generated_c_is_deterministic(graphs):
    ir = graphs["resnet_int8"]
    assert build(ir).files == build(lower(import_tflite(LARQ / "resnet_int8.tflite"))).files


def test_cortex_m_runs_the_tflite_int8_layers():
    assert "cortex-m" in tflite_int8_targets()


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("stem", FIXTURES)
def test_qemu_bit_exact(tmp_path, stem):
    assert_qemu_bit_exact(edge_sdk.load(LARQ / f"{stem}.tflite"), _x(stem)[:QEMU_INPUTS],
                          tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("stem", FIXTURES)
def test_cli_simulate_check_all_inputs(tmp_path, stem):
    """As a user: convert, simulate --check (QEMU, every input) == run --fixed-point, and a
    second conversion writes byte-identical C."""
    model, xs = LARQ / f"{stem}.tflite", LARQ / f"{stem}_x.npy"
    for out in ("a", "b"):
        r = run_cli("convert", model, "--target", "cortex-m", "-o", tmp_path / out)
        assert r.returncode == 0, r.stderr
    for name in ("model.c", "model.h", "edge_kernels.c", "edge_kernels.h"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    r = run_cli("simulate", tmp_path / "a", "--input", xs, "--output", tmp_path / "y.npy",
                "--check")
    assert r.returncode == 0, r.stderr
    assert f"on all {len(np.load(xs))} samples (bit-exact)" in r.stdout
    r = run_cli("run", model, "--input", xs, "--output", tmp_path / "f.npy", "--fixed-point")
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(tmp_path / "f.npy"))


# ---------------------------------------------------------------------------- hand-built
def _small_graph(shift_r, mult_r, prelu_shift1, const) -> Graph:
    """int8 input [3, 2, 2] -> TflRequant (per-channel factor/bias, left and right shifts,
    ruy) -> TflPRelu -> TflAdd of both -> TflAdd of a constant (scalar parameters) -> Scores."""
    c = 3
    inp = L.Input("input", [], "input", shape=(c, 2, 2), lo=-128, hi=127)
    req = L.TflRequant("rq", ["input"], "rq", factor=np.array([1, -3, 7]),
                       bias=np.array([5, -1000, 77]), mult=np.asarray(mult_r),
                       shift=np.asarray(shift_r), zero_point=-5, lo=-120, hi=127,
                       rounding="ruy")
    pre = L.TflPRelu("pr", ["rq"], "pr", alpha=np.array([-100, 3, 127]),
                     mult1=np.array(1503238528), shift1=np.array(prelu_shift1),
                     mult2=np.array([1388124672, 1 << 30, INT32_MAX]),
                     shift2=np.array([-7, -1, -9]), zero_point=3, lo=-128, hi=100)
    add = L.TflAdd("ad", ["pr", "rq"], "ad", mult1=np.array([1 << 30, 1431655822, INT32_MAX]),
                   shift1=np.array([0, -1, -2]), mult2=np.array(1 << 30), shift2=np.array(0),
                   mult_out=np.array(1840700291), shift_out=np.array(-20), zero_point=1,
                   lo=-128, hi=127)
    addc = L.TflAdd("ac", ["ad"], "ac", mult1=np.array(1 << 30), shift1=np.array(0),
                    const=np.asarray(const), mult_out=np.array(1717986959),
                    shift_out=np.array([-19, -18, -20]), zero_point=0, lo=-100, hi=90)
    scores = L.Scores("s", ["ac"], "s")
    return Graph("small", [inp, req, pre, add, addc, scores], ["input"], ["s"])


def _extreme_inputs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, 3, 2, 2))
    x[0], x[1], x[2] = -128, 127, 0
    return x.astype(np.float32)


@pytest.mark.parametrize("case", [
    ([2, -5, 0], [1 << 30, 1363231798, INT32_MAX], 1, [-12108573, 14976393, 0]),
    ([3, -31, -4], [1 << 30, 1 << 30, 1089591680], 0, [-(2**20), 2**20, 1]),
    ([10, -30, 0], [INT32_MAX, INT32_MAX, 1], 0, [0, 2**26, -(2**26)]),  # clamps, zeros
    (-9, 2114617600, 3, -5628256),  # scalar parameters, broadcast per channel
    ([1, 0, -1], [-(1 << 30), INT32_MIN, -1], 2, [0, 0, 0]),  # negative multipliers
])
def test_host_small_graph_equals_golden(tmp_path, case):
    _, y = host_bit_exact(_small_graph(*case), _extreme_inputs(300, seed=1), tmp_path / "host")
    if case[0] != [10, -30, 0]:
        assert len(np.unique(y)) > 3  # not a clamped constant


def test_overflowing_intermediate_is_refused():
    """x * factor + bias can leave int32 for x in the input range: refused in one line,
    naming the layer (TFLite would wrap; the golden model raises on such inputs)."""
    ir = _small_graph([0, 0, 0], [1 << 30] * 3, 0, [0, 0, 0])
    ir.layers[1].bias = np.array([INT32_MAX - 100, 0, 0])
    with pytest.raises(EdgeError, match=r"layer 1 \(tflrequant 'rq'\): for inputs in "
                                        r"\[-128, 127\] .*overflows") as exc:
        build(ir)
    assert "\n" not in str(exc.value)


def test_left_shift_beyond_int32_is_refused():
    ir = _small_graph([24, 0, 0], [1 << 30] * 3, 0, [0, 0, 0])
    with pytest.raises(EdgeError, match=r"layer 1 \(tflrequant 'rq'\).*overflows"):
        build(ir)


def test_shift_outside_tflite_range_is_refused():
    ir = _small_graph([0, 0, -32], [1 << 30] * 3, 0, [0, 0, 0])
    with pytest.raises(EdgeError, match=r"layer 1 \(tflrequant 'rq'\): a shift outside "
                                        r"\[-31, 30\]"):
        build(ir)


# ---------------------------------------------------------------------------- MBQM alone
PROBE = 1


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The generated MBQM (both roundings) compiled for the host, one value per call."""
    plain, ruy = mbqm_probe("edge_mbqm", PROBE, False), mbqm_probe("edge_mbqm_ruy", PROBE, True)
    src = "#include <stdint.h>\n" + to_c(plain) + "\n" + to_c(ruy)
    lib = compile_shared({"mbqm.c": src}, tmp_path_factory.mktemp("mbqm"))
    fns = {}
    for name, ruy_ in (("edge_mbqm", False), ("edge_mbqm_ruy", True)):
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p] * 3
        fns[ruy_] = fn

    def call(x: int, m: int, e: int, ruy_: bool) -> int:
        xs = np.array([x], np.int32)
        t = np.array([m, e], np.int32)
        y = np.zeros(1, np.int32)
        fns[ruy_](xs.ctypes.data, t.ctypes.data, y.ctypes.data)
        return int(y[0])

    return call


@st.composite
def mbqm_args(draw):
    """(x, M, e) with e in [-31, 30] and x * 2**max(e, 0) in int32 (TFLite's domain)."""
    e = draw(st.integers(-31, 30))
    left = max(e, 0)
    x = draw(st.one_of(st.integers(INT32_MIN >> left, INT32_MAX >> left),
                       st.sampled_from([INT32_MIN >> left, INT32_MAX >> left, 0, -1, 1])))
    m = draw(st.one_of(st.integers(INT32_MIN, INT32_MAX),
                       st.sampled_from([INT32_MIN, INT32_MAX, 1 << 30, 0, -1])))
    return x, m, e


@st.composite
def mbqm_ties(draw):
    """M = 2**30 halves exactly (SRDHM(2h, 2**30) = h), so x = 2 (j 2**n +- 2**(n-1)) puts
    the last shift (n = -e) right on a tie, of either sign."""
    n = draw(st.integers(1, 29))
    j = draw(st.integers(-(2**(29 - n)), 2**(29 - n) - 1))
    h = j * (1 << n) + draw(st.sampled_from([1, -1])) * (1 << (n - 1))
    return 2 * h, 1 << 30, -n


def _check_probe(probe, x: int, m: int, e: int) -> None:
    for ruy in (False, True):
        fn = ti.mbqm_ruy if ruy else ti.mbqm
        gold = int(fn(np.array([x]), np.array([m]), np.array([e]))[0])
        assert gold == _py_mbqm(x, m, e, ruy=ruy)
        assert probe(x, m, e, ruy) == gold, (x, m, e, ruy)


@settings(max_examples=400, deadline=None)
@example((INT32_MIN, INT32_MIN, 0))  # SRDHM saturates to INT32_MAX
@example((INT32_MIN, INT32_MIN, -31))
@example((-2, INT32_MIN, 30))  # the saturating case reached through the left shift
@example((INT32_MAX, INT32_MAX, 0))
@example((INT32_MIN, INT32_MAX, -31))
@example((INT32_MAX, INT32_MIN, -1))
@example((1, 1, 30))
@example((-(28 * 64 + 32), 1 << 30, -5))  # -28.5: -28 through ruy, -29 through MBQM
@example((28 * 64 + 32, 1 << 30, -5))
@given(mbqm_args())
def test_mbqm_kernel_equals_golden(probe, args):
    _check_probe(probe, *args)


@settings(max_examples=200, deadline=None)
@given(mbqm_ties())
def test_mbqm_kernel_ties(probe, args):
    x, m, e = args
    h = int(ti.srdhm(np.array([x]), np.array([m]))[0])
    assert h % (1 << -e) == 1 << (-e - 1)  # really a tie
    _check_probe(probe, x, m, e)
