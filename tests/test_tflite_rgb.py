"""A QuickNet-style Larq network at CIFAR size (32x32x3 RGB input, issue #11), converted by LCE.

Fixtures (examples/larq/make_rgb_fixtures.py, random seeded weights): a float stem conv on the
RGB pixels (NHWC input entering a conv: the IR's NHWC -> NCHW `Transpose`), fast residual
blocks with +1-padded binary convs, a maxpool/concat transition, a GAP head and a float
dense10; each network as LCE's float file (`*_lce`, real-weight stem and head: calibrated to
8 bits) and as LCE's int8 file (`*_int8`). Two forms:

- `quicknet_rgb`: QuickNet's own block order y = BN(ReLU(bconv(sign x))) + x, which LCE fuses
  into one LceBconv2d (fused RELU on the accumulator, then the BN as its multiplier and bias:
  an IR `PRelu` of slope 0 on the integer accumulator, then the `Affine`);
- `quicknet_rgb_bnrelu`: y = ReLU(BN(bconv(sign x))) + x, where LCE writes a separate RELU.

References, none produced by the code under test: LCE's interpreter (`*_ref.npy`, and every
operator output of the int8 files in `*_tensors.npz`), converters/tflite/reference.py (the
NumPy reading `run --check` uses) for more inputs, and the golden model's fixed-point mode for
the generated C (QEMU) and Verilog (Icarus), bit for bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

import edge_sdk
from edge_sdk.converters.tflite import schema
from edge_sdk.converters.tflite.reference import run_reference

LARQ = Path(__file__).resolve().parent.parent / "examples" / "larq"
FORMS = ["quicknet_rgb", "quicknet_rgb_bnrelu"]
FLOAT = [f"{f}_lce" for f in FORMS]
INT8 = [f"{f}_int8" for f in FORMS]
INPUT_RANGE = (0, 255)  # the float files take RGB pixels (integers in float32)
QEMU_INPUTS = 3
HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc / qemu-system-arm missing")
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")
FPGA_FOLDING = {"pe": 8, "simd": 16}  # 21k cycles per inference instead of 2M at pe = simd = 1

_models: dict[str, edge_sdk.Model] = {}


def _x(stem: str) -> np.ndarray:
    return np.load(LARQ / ("quicknet_rgb_int8_x.npy" if stem.endswith("_int8")
                           else "quicknet_rgb_x.npy"))


def _ref(stem: str) -> np.ndarray:
    return np.load(LARQ / f"{stem}_ref.npy")


def _model(stem: str) -> edge_sdk.Model:
    """The loaded file (cached per module)."""
    if stem not in _models:
        kw = {}
        if stem.endswith("_lce"):
            kw = {"input_range": INPUT_RANGE,
                  "calibration": np.load(LARQ / "quicknet_rgb_cal.npy")}
        _models[stem] = edge_sdk.load(LARQ / f"{stem}.tflite", **kw)
    return _models[stem]


def close_to_lce(y: np.ndarray, ref: np.ndarray) -> None:
    """float32 rounding of a deep real-valued chain: each logit within 1e-5 of its row's
    largest |logit| (logits near 0 come from cancelling terms of that size; the error measured
    here is about 2e-6 of it), and the same argmax where the top two are not that close."""
    assert y.shape == ref.shape and y.dtype == ref.dtype
    scale = np.abs(ref).max(axis=1, keepdims=True)
    assert np.all(np.abs(y - ref) <= 1e-5 * scale), np.abs(y - ref).max()
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2e-5 * scale[:, 0]
    assert np.array_equal(y.argmax(1)[clear], ref.argmax(1)[clear])


def pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Images as make_rgb_fixtures.pixels draws them (colour, 8x8 blocks, noise; 0..255)."""
    colour = rng.uniform(0, 255, (n, 1, 1, 3))
    blocks = rng.uniform(0, 255, (n, 8, 8, 3)).repeat(4, 1).repeat(4, 2)
    x = 0.5 * colour + 0.5 * blocks + rng.normal(0, 16, (n, 32, 32, 3))
    return np.clip(np.round(x), 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------- the files
def test_fixture_files():
    """Inputs as documented, and the int8 files free of the ops edge-sdk has no int8 kernel
    for (DEPTHWISE_CONV_2D, AVERAGE_POOL_2D)."""
    x, x8 = _x("quicknet_rgb_lce"), _x("quicknet_rgb_int8")
    assert x.shape == (16, 32, 32, 3) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255 and np.array_equal(x, np.round(x))
    assert x8.dtype == np.int8 and np.array_equal(x8.astype(np.float32), x - 128)
    for stem in FLOAT + INT8:
        model = schema.load(LARQ / f"{stem}.tflite")
        ops = [op.name for op in model.operators]
        assert list(model.tensors[model.inputs[0]].shape) == [1, 32, 32, 3]
        assert ops[0] == "CONV_2D" and ops[-1] == "FULLY_CONNECTED"
        assert {"LceBconv2d", "ADD", "MAX_POOL_2D", "CONCATENATION", "MEAN"} <= set(ops)
        assert not {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"} & set(ops)
        assert ("RELU" in ops) == ("bnrelu" in stem)


@pytest.mark.parametrize("stem", FLOAT + INT8)
def test_ir_starts_with_the_nhwc_transpose(stem):
    kinds = [layer.kind for layer in _model(stem).ir.layers]
    assert kinds[:2] == ["input", "transpose"], kinds[:4]


# ---------------------------------------------------------------------------- golden model
@pytest.mark.parametrize("stem", FLOAT)
def test_float_golden_equals_lce(stem):
    """`run` (float product with the float stem/head weights) == LCE's interpreter to float32
    rounding, and the NumPy reference too (it backs `--check` on any input)."""
    x, ref = _x(stem), _ref(stem)
    close_to_lce(_model(stem).run(x), ref)
    close_to_lce(run_reference(LARQ / f"{stem}.tflite", x).astype(np.float32), ref)


@pytest.mark.parametrize("stem", FLOAT)
def test_float_fixed_point_argmax(stem):
    """`run --fixed-point` (8-bit stem and head, fixed-point BN/adds) against the float
    reference on 256 images. A random binary network amplifies the 8-bit stem's rare sign
    flips block by block (0.2 % of the stem's signs, 3 % by the last block) and the 8-bit
    head alone moves 3.5 % of the argmaxes: 90 % (Bi-Real order) and 85 % (QuickNet order)
    agree on these random weights; the bar only catches a collapse."""
    x = np.concatenate([_x(stem), pixels(np.random.default_rng(5), 240)])
    want = run_reference(LARQ / f"{stem}.tflite", x).argmax(1)
    agree = np.mean(_model(stem).run(x, fixed_point=True).argmax(1) == want)
    assert agree >= 0.8, agree


@pytest.mark.parametrize("stem", INT8)
def test_int8_golden_equals_lce(stem):
    """TFLite integer arithmetic: `run`, `run --fixed-point` and the NumPy reference all equal
    LCE's int8 outputs bit for bit."""
    x, ref = _x(stem), _ref(stem)
    assert ref.dtype == np.int8
    m = _model(stem)
    np.testing.assert_array_equal(m.run(x), ref.astype(np.float32))
    np.testing.assert_array_equal(m.run(x, fixed_point=True), ref.astype(np.float32))
    np.testing.assert_array_equal(run_reference(LARQ / f"{stem}.tflite", x),
                                  ref.astype(np.int64))


@pytest.mark.parametrize("stem", INT8)
def test_int8_every_tensor_equals_lce(stem):
    """Each int8 operator output against LCE's value of it (`*_tensors.npz`, first inputs)."""
    from test_tflite_int8 import check_every_int8_tensor

    want = np.load(LARQ / f"{stem}_tensors.npz")
    x = _x(stem)[:len(want[want.files[0]])]
    assert check_every_int8_tensor(LARQ / f"{stem}.tflite", x, want) >= 10


@pytest.mark.parametrize("stem", FLOAT + INT8)
def test_cli_run_check(stem, tmp_path):
    """As a user: `run --check` (golden vs the NumPy reference) passes and writes LCE's
    outputs (exactly for int8, to float32 rounding for the float files)."""
    _model(stem)
    xs = LARQ / ("quicknet_rgb_int8_x.npy" if stem.endswith("_int8") else "quicknet_rgb_x.npy")
    args = ["run", LARQ / f"{stem}.tflite", "--input", xs, "--output", tmp_path / "y.npy",
            "--check"]
    if stem.endswith("_lce"):
        args += ["--calibrate", LARQ / "quicknet_rgb_cal.npy", "--input-range", "0,255"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    y = np.load(tmp_path / "y.npy")
    if stem.endswith("_int8"):
        np.testing.assert_array_equal(y, _ref(stem).astype(np.float32))
    else:
        close_to_lce(y, _ref(stem))


# ---------------------------------------------------------------------------- targets
@needs_arm
@pytest.mark.parametrize("stem", FLOAT + INT8)
def test_qemu_bit_exact(stem, tmp_path):
    """Cortex-M4 under QEMU == `run --fixed-point` (and == LCE for the int8 files)."""
    m, x = _model(stem), _x(stem)[:QEMU_INPUTS]
    sim = m.convert("cortex-m", tmp_path / "cm").simulate(x)
    want = m.run(x, fixed_point=True)
    np.testing.assert_array_equal(sim.output, want)
    if stem.endswith("_int8"):
        np.testing.assert_array_equal(sim.output, _ref(stem)[:QEMU_INPUTS].astype(np.float32))


def _fpga(stem: str, n: int, folder: Path) -> None:
    m, x = _model(stem), _x(stem)[:n]
    sim = m.convert("fpga", folder, board="sim", **FPGA_FOLDING).simulate(x)
    np.testing.assert_array_equal(sim.output, m.run(x, fixed_point=True))
    if stem.endswith("_int8"):
        np.testing.assert_array_equal(sim.output, _ref(stem)[:n].astype(np.float32))


@needs_icarus
@pytest.mark.parametrize("stem", FLOAT)
def test_fpga_bit_exact(stem, tmp_path):
    """Generated Verilog under cocotb + Icarus == `run --fixed-point` on one image (~20 s)."""
    _fpga(stem, 1, tmp_path / "fpga")


@needs_icarus
@pytest.mark.slow
@pytest.mark.parametrize("stem", FLOAT + INT8)
def test_fpga_bit_exact_more(stem, tmp_path):
    _fpga(stem, 2, tmp_path / "fpga")
