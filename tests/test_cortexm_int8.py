"""Cortex-M backend, 8-bit first and last layers (issue #11): the generated C equals the
golden model's fixed-point mode (`run --fixed-point`) bit for bit.

Models are those of test_int8_layers.py: Brevitas QONNX networks (8-bit first conv with a
fused BN+sign threshold, Quantize of a global average, 8-bit last dense; per-channel and
non-narrow weights reaching -128; an 8-bit last layer reading ±1 data) and float ONNX models
quantised with a calibration set. The C is compiled for the host (many random inputs, the
extremes included) and for the Cortex-M4 under QEMU. The kernels are also checked alone
against plain integer arithmetic, at the int8 and int32 extremes.
"""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest
from host_check import (
    assert_device_tensors_bit_exact,
    assert_host_bit_exact,
    assert_qemu_bit_exact,
)

from edge_sdk import fixedpoint as fx
from edge_sdk.converters.cortexm import build
from edge_sdk.converters.cortexm.geometry import Window
from edge_sdk.converters.cortexm.host import compile_shared
from edge_sdk.converters.cortexm.kernels_int8 import int8_conv, int8_dense, int8_words, quantize
from edge_sdk.converters.cortexm.tir_to_c import to_c
from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph

pytest.importorskip("torch", reason="the [train] extra (torch) is not installed")
pytest.importorskip("brevitas", reason="the [train] extra (brevitas) is not installed")
pytest.importorskip("qonnx", reason="the [qonnx] extra is not installed")

import test_int8_layers as t8

HOST_INPUTS = 200
QEMU_INPUTS = 12
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
NAMES = [*t8.BREVITAS, *t8.FLOAT]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Each model once: Brevitas exports loaded, float exports calibrated (64 inputs)."""
    folder = tmp_path_factory.mktemp("cortexm_int8")
    out = {}
    for name in t8.BREVITAS:
        out[name] = t8.load_brevitas(t8.export_brevitas(name, folder))
    for name, (_, shape) in t8.FLOAT.items():
        out[name] = t8.calibrated(t8.export_float(name, folder), t8.inputs(shape, 64, seed=7))
    return out


def _shape(name: str):
    return t8.BREVITAS.get(name) or t8.FLOAT[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_host_bit_exact_with_fixed_point_golden(models, tmp_path, name):
    m = models[name]
    cm = assert_host_bit_exact(m.ir, t8.model_inputs(name, HOST_INPUTS, seed=3),
                               tmp_path / "host")
    assert cm.files == build(m.ir).files  # deterministic


def test_plan_uses_the_int8_kernels(models):
    from edge_sdk.converters.cortexm.plan import make_plan

    kinds = [s.spec.kind for s in make_plan(models["conv_gap"].ir).steps]
    assert kinds[0] == "conv_int8_thr"  # BN + sign fused into the 8-bit conv
    assert "quantize" in kinds and "dense_int8" in kinds
    kinds = [s.spec.kind for s in make_plan(models["mlp_signs"].ir).steps]
    assert kinds[0] == "dense_int8_thr" and "unpack" in kinds and kinds[-1] == "dense_int8"


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", ["conv_gap_inq", "float_conv_gap"])
def test_qemu_bit_exact_with_fixed_point_golden(models, tmp_path, name):
    assert_qemu_bit_exact(models[name], t8.model_inputs(name, QEMU_INPUTS, seed=5),
                          tmp_path / "out")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 4))
@pytest.mark.parametrize("name", NAMES)
def test_host_other_seeds(tmp_path, name, seed):
    if name in t8.BREVITAS:
        m = t8.load_brevitas(t8.export_brevitas(name, tmp_path, seed))
    else:
        m = t8.calibrated(t8.export_float(name, tmp_path, seed),
                          t8.inputs(_shape(name), 64, seed=seed))
    assert_host_bit_exact(m.ir, t8.model_inputs(name, 2000, seed=seed), tmp_path / "host")


def test_accumulator_beyond_int32_limit_refused():
    """int16 inputs (±32767) times 300 weights of 127: the bound exceeds the kernels' int32."""
    inp = L.Input("input", [], "input", shape=(300,), lo=-32767, hi=32767)
    dense = L.Dense("d", ["input"], "d", weights=L.Int8Weights(np.full((2, 300), 127, np.int8)))
    scores = L.Scores("s", ["d"], "s")
    with pytest.raises(EdgeError, match=r"layer 1 \(dense\): values up to \d+ need more than "
                                        r"31 bits"):
        build(Graph("big", [inp, dense, scores], ["input"], ["s"]))


# ---------------------------------------------------------------------------- kernels alone
def _lib(kernels, tmp_path) -> ctypes.CDLL:
    src = "#include <stdint.h>\n" + "\n".join(to_c(k) for k in kernels)
    return compile_shared({"k.c": src}, tmp_path)


def _p(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


@pytest.mark.parametrize("k", [1, 4, 7, 33])
def test_int8_dense_kernel_equals_integer_product(tmp_path, k):
    rng = np.random.default_rng(k)
    rows = 5
    w = rng.integers(-128, 128, (rows, k)).astype(np.int8)
    w[0, :] = -128
    w[1, :] = 127
    x = rng.integers(-32767, 32768, (k,)).astype(np.int16)
    x[0] = -32767
    lib = _lib([int8_dense("d", rows, k, "int16")], tmp_path)
    words = int8_words(w)
    y = np.zeros(rows, np.int32)
    lib.d(_p(x), _p(words), _p(y))
    np.testing.assert_array_equal(y, w.astype(np.int64) @ x.astype(np.int64))


def test_int8_conv_kernel_equals_integer_conv(tmp_path):
    rng = np.random.default_rng(0)
    g = Window(c=3, h=5, w=6, o=4, kh=3, kw=2, sh=2, sw=1, pt=1, pl=1, dh=1, dw=2, oh=3, ow=5)
    w = rng.integers(-128, 128, (g.o, g.c * g.kh * g.kw)).astype(np.int8)
    x = rng.integers(-128, 128, (g.c, g.h, g.w)).astype(np.int8)
    lib = _lib([int8_conv("c", g, "int8")], tmp_path)
    y = np.zeros((g.o, g.oh, g.ow), np.int32)
    lib.c(_p(x), _p(int8_words(w)), _p(y))
    want = np.zeros_like(y, dtype=np.int64)
    wk = w.reshape(g.o, g.c, g.kh, g.kw).astype(np.int64)
    for oh in range(g.oh):
        for ow in range(g.ow):
            for r in range(g.kh):
                for s in range(g.kw):
                    ih, iw = oh * g.sh - g.pt + r * g.dh, ow * g.sw - g.pl + s * g.dw
                    if 0 <= ih < g.h and 0 <= iw < g.w:
                        want[:, oh, ow] += wk[:, :, r, s] @ x[:, ih, iw].astype(np.int64)
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("scale, frac, zp, lo, hi", [
    (0.0078125, 16, 0, -128, 127),  # a power of two: M = 2**29, exact
    (0.0123, 16, 0, -127, 127),
    (0.37, 3, 5, 0, 255),
    (3.1e-5, 16, -3, -128, 127),
    (250.0, -6, 0, -127, 127),  # a coarse input (negative frac), S far beyond 32
])
def test_quantize_kernel_equals_the_rule(tmp_path, scale, frac, zp, lo, hi):
    """Ties of the half-up rounding on negative values, saturation at both ends, int32
    extremes: the C equals fixedpoint.quantize."""
    mult, shift = fx.quantize_params(scale, frac)
    rng = np.random.default_rng(shift)
    x = rng.integers(-(2**31) + 1, 2**31, 400).astype(np.int64)
    step = _code_step(mult, shift)
    ties = (np.arange(-40, 40) * 2 + 1) * step // 2  # around (k + 1/2) code boundaries
    x = np.concatenate([x, [-(2**31) + 1, 2**31 - 1, 0, -1, 1], ties]).astype(np.int64)
    x = np.clip(x, -(2**31) + 1, 2**31 - 1).astype(np.int32)
    lib = _lib([quantize("q", len(x), "int32", mult, shift, zp, lo, hi)], tmp_path)
    y = np.zeros(len(x), np.int32)
    lib.q(_p(x), _p(y))
    np.testing.assert_array_equal(y, fx.quantize(x, mult, shift, zp, lo, hi))
    assert (y == lo - zp).any() and (y == hi - zp).any()


def _code_step(mult: int, shift: int) -> int:
    """About how many input units one output code spans: 2**S / M (>= 1)."""
    return max(1, (1 << shift) // max(mult, 1))


@pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("name", ["conv_gap", "mlp_signs"])
def test_every_tensor_on_the_device_equals_fixed_point_golden(models, tmp_path, name):
    """The debug firmware (every buffer kept, thresholds unfused) under unicorn: the 8-bit
    accumulators, the Quantize codes and every other tensor equal golden.run_all."""
    ir = models[name].ir
    dumped = assert_device_tensors_bit_exact(ir, t8.model_inputs(name, 8, seed=11),
                                             tmp_path / "debug")
    int8 = [layer.output for layer in ir.layers if isinstance(layer, (L.Dense, L.Conv2d))
            and L.is_int8(layer.weights)]
    assert set(int8) <= dumped
