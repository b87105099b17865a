"""Cortex-M end to end: convert -> arm-none-eabi-gcc -> QEMU (M4 and M3) == golden, exactly.

The golden model is checked against onnxruntime in test_golden_vs_onnxruntime.py; here the
firmware's outputs (after the same float post-ops) must equal the golden model bit for bit.
"""

import filecmp
import shutil

import numpy as np
import onnx
import pytest
import zoo
from conftest import EXAMPLES, run_cli

import edge_sdk
from edge_sdk import golden, targets

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="arm-none-eabi-gcc / qemu-system-arm not installed (scripts/setup.sh installs them)",
)
BOARDS = ("qemu-mps2-an386", "qemu-mps2-an385")


def convert(path, out, **options):
    return targets.convert(edge_sdk.load(path), "cortex-m", out, options)


def inputs(ir, n, seed):
    layer = ir.layers[0]
    rng = np.random.default_rng(seed)
    lo, hi = max(layer.lo, -20), min(layer.hi, 20)
    return rng.integers(lo, hi + 1, size=(n, *layer.shape)).astype(np.float32)


def check_on_boards(path, tmp_path, n=64, seed=0, boards=BOARDS):
    out = convert(path, tmp_path / "out")
    _, ir = targets.open_build(out)
    x = inputs(ir, n, seed)
    want = golden.run(ir, x)
    for board in boards:
        y, extra = targets.simulate(out, x, board=board)
        assert targets.first_mismatch(y, want) is None, (board, targets.first_mismatch(y, want))
        assert "instructions_per_inference" in extra
    return out


def save(model, tmp_path, name="m.onnx"):
    p = tmp_path / name
    onnx.save(model, p)
    return p


@pytest.mark.parametrize("name,x", [("mlp_digits", "digits_mlp_x.npy"),
                                    ("cnn_digits", "digits_cnn_x.npy")])
def test_examples_on_m4_and_m3(tmp_path, name, x):
    out = convert(EXAMPLES / f"{name}.onnx", tmp_path / "out")
    xs = np.load(EXAMPLES / x)
    want = edge_sdk.load(EXAMPLES / f"{name}.onnx").run(xs)
    for board in BOARDS:
        y, _ = targets.simulate(out, xs, board=board)
        assert np.array_equal(y, want), board


@pytest.mark.parametrize("make", [
    lambda: zoo.mlp(0, act="sign", weights="pm1"),
    lambda: zoo.mlp(1, act="where", weights="ternary", dense="matmul"),
    lambda: zoo.mlp(2, act="sign", weights="rowscale"),
    lambda: zoo.odd_mlp(0),
    lambda: zoo.tie_mlp(0),
    lambda: zoo.neg_gamma_mlp(1),
    lambda: zoo.where_cast_mlp(0),
    lambda: zoo.cnn(0, weights="sign", act="sign"),
    lambda: zoo.cnn(1, in_shape=(2, 11, 9), channels=(5, 7), strides=2, pads=1,
                    weights="ternary"),
], ids=["mlp-sign", "mlp-ternary", "mlp-rowscale", "odd", "ties", "neg-gamma", "where-cast",
        "cnn", "cnn-strided-ternary"])
def test_zoo_models(tmp_path, make):
    check_on_boards(save(make(), tmp_path), tmp_path)


def test_transposed_dense_under_qemu(tmp_path):
    """A 500 -> 100 binary layer (ragged words, a tail row block, fused threshold) takes the
    transposed kernel; random inputs make it visit either half (the rarer activation value)."""
    path = save(zoo.mlp(3, sizes=(64, 500, 100, 10)), tmp_path)
    out = check_on_boards(path, tmp_path, n=24)
    assert "dense_xnor_t_thr" in (out / "edge_kernels.c").read_text()


def test_external_data_model(tmp_path):
    check_on_boards(zoo.external_data_mlp(0, tmp_path / "ext.onnx"), tmp_path, boards=BOARDS[:1])


def test_cli_convert_report_simulate(tmp_path):
    out = tmp_path / "cm"
    model = EXAMPLES / "mlp_digits.onnx"
    assert run_cli("convert", model, "--target", "cortex-m", "-o", out).returncode == 0
    for name in ("model.c", "model.h", "Makefile", "report.json", "edge-sdk.json"):
        assert (out / name).exists(), name
    rep = run_cli("report", out)
    assert rep.returncode == 0 and "instructions" in rep.stdout and "flash" in rep.stdout
    proc = run_cli("simulate", out, "--input", EXAMPLES / "digits_mlp_x.npy", "--output",
                   tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(tmp_path / "y.npy"),
                          edge_sdk.load(model).run(np.load(EXAMPLES / "digits_mlp_x.npy")))


def test_generated_files_are_byte_identical(tmp_path):
    a = convert(EXAMPLES / "cnn_digits.onnx", tmp_path / "a")
    b = convert(EXAMPLES / "cnn_digits.onnx", tmp_path / "b")
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, mismatch


def test_model_too_big_for_the_board_is_refused(tmp_path):
    # a 256x256 input (int16) and 256x256 maps of packed bits need > 128 KiB of RAM
    path = save(zoo.cnn(0, in_shape=(1, 256, 256), channels=(32, 32), pool=True), tmp_path)
    out = tmp_path / "o"
    proc = run_cli("convert", path, "--target", "cortex-m", "--board", "nucleo-f446re", "-o", out)
    assert proc.returncode == 2 and "RAM" in proc.stderr and "nucleo" in proc.stderr, proc.stderr
    assert not out.exists()


def test_flash_without_a_probe_says_so(tmp_path):
    out = convert(EXAMPLES / "mlp_digits.onnx", tmp_path / "o", board="nucleo-f446re")
    proc = run_cli("flash", out)
    assert proc.returncode == 2 and "probe" in proc.stderr, proc.stderr
    proc = run_cli("flash", out, "--board", "qemu-mps2-an386")
    assert proc.returncode == 2 and "simulate" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_models_many_inputs(tmp_path, seed):
    model, _, _ = zoo.random_model(seed)
    check_on_boards(save(model, tmp_path), tmp_path, n=64, seed=seed)
