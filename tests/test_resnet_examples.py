"""The trained Bi-Real and ReActNet digits examples (examples/resnets/, issue #11 item 4)
through the CLI, on the committed files.

References are independent of the code under test: onnxruntime on the .onnx files for `run`
(exact, or float32 rounding where a calibrated float layer's product is summed in another
order) and for the accuracy of `run --fixed-point`; the golden model's `run --fixed-point`
output for the Cortex-M firmware (QEMU, whole test split) and the FPGA Verilog (Icarus, a few
images; more under -m slow). The Bi-Real model's float first conv and last dense layer are
quantised to 8 bits with the committed calibration set (`--calibrate`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_close_to_reference, run_cli

ort = pytest.importorskip("onnxruntime")

DIR = Path(__file__).resolve().parents[1] / "examples" / "resnets"
RANGE = ["--input-range", "0,16"]
#: model -> (extra CLI arguments, `run` bit-identical to onnxruntime?)
MODELS = {
    # calibrated float layers: golden computes their float32 product in its own order
    "bireal_digits": (["--calibrate", str(DIR / "calib_x.npy")], False),
    # binary stem/head, BN/PReLU/shifts as separate nodes: every float op as onnxruntime does
    "reactnet_digits": ([], True),
}
FPGA_FAST, FPGA_SLOW = 2, 16
HAVE_QEMU = shutil.which("arm-none-eabi-gcc") is not None and shutil.which(
    "qemu-system-arm") is not None
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _cli(*args) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def data():
    return np.load(DIR / "test_x.npy"), np.load(DIR / "test_y.npy")


@pytest.fixture(scope="module")
def golden(data, tmp_path_factory):
    """model -> (`run` output, `run --fixed-point` output) on the whole test split, by the CLI."""
    folder = tmp_path_factory.mktemp("resnet_golden")
    out = {}
    for name, (extra, _) in MODELS.items():
        ys = []
        for mode in ([], ["--fixed-point"]):
            y = folder / f"{name}{len(mode)}.npy"
            _cli("run", DIR / f"{name}.onnx", *RANGE, *extra, "--input", DIR / "test_x.npy",
                 "--output", y, *mode)
            ys.append(np.load(y))
        out[name] = tuple(ys)
    return out


def test_committed_data_is_the_digits_split(data):
    """test_x/test_y are the fixed test split, calib_x the first TRAIN images (not test)."""
    pytest.importorskip("sklearn")
    import sys

    sys.path.insert(0, str(DIR.parent))
    from digits_data import load_split

    split = load_split()
    x, y = data
    assert np.array_equal(x, split.x_test.reshape(-1, 1, 8, 8)) and x.dtype == np.float32
    assert np.array_equal(y, split.y_test)
    cal = np.load(DIR / "calib_x.npy")
    assert np.array_equal(cal, split.x_train[:len(cal)].reshape(-1, 1, 8, 8))


@pytest.mark.parametrize("name", list(MODELS))
def test_run_equals_onnxruntime(name, data, golden):
    x, y = data
    ref = _onnxruntime(DIR / f"{name}.onnx", x)
    run = golden[name][0]
    assert_close_to_reference(run, ref, exact=MODELS[name][1])
    assert (ref.argmax(1) == y).mean() > 0.95  # a trained model, not noise


@pytest.mark.parametrize("name", list(MODELS))
def test_fixed_point_agrees_with_run(name, data, golden):
    """What the targets compute picks the same class as `run` (and as onnxruntime) on >= 99 %
    of the test images (issue #11)."""
    x, y = data
    run, fixed = golden[name]
    ref = _onnxruntime(DIR / f"{name}.onnx", x)
    assert fixed.shape == run.shape and fixed.dtype == np.float32
    assert (fixed.argmax(1) == run.argmax(1)).mean() >= 0.99
    assert (fixed.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert (fixed.argmax(1) == y).mean() >= (ref.argmax(1) == y).mean() - 0.01


@pytest.mark.skipif(not HAVE_QEMU, reason="arm-none-eabi-gcc / qemu-system-arm missing")
@pytest.mark.parametrize("name", list(MODELS))
def test_cortexm_bit_exact_on_the_test_split(name, data, golden, tmp_path):
    out = tmp_path / "cm"
    _cli("convert", DIR / f"{name}.onnx", *RANGE, *MODELS[name][0], "--target", "cortex-m",
         "-o", out)
    y = tmp_path / "y.npy"
    _cli("simulate", out, "--input", DIR / "test_x.npy", "--output", y, "--check")
    got, want = np.load(y), golden[name][1]
    bad = np.argwhere(got != want)
    assert got.shape == want.shape and bad.size == 0, f"{len(bad)} differences, first {bad[0]}"


def _fpga(name: str, n: int, data, golden, tmp_path) -> None:
    out = tmp_path / "fpga"
    _cli("convert", DIR / f"{name}.onnx", *RANGE, *MODELS[name][0], "--target", "fpga",
         "--board", "sim", "-o", out)  # too large for an iCE40 (see examples/README.md)
    x = tmp_path / "x.npy"
    np.save(x, data[0][:n])
    y = tmp_path / "y.npy"
    _cli("simulate", out, "--input", x, "--output", y, "--check")
    assert np.array_equal(np.load(y), golden[name][1][:n])


@needs_icarus
@pytest.mark.parametrize("name", list(MODELS))
def test_fpga_bit_exact_on_a_few_images(name, data, golden, tmp_path):
    _fpga(name, FPGA_FAST, data, golden, tmp_path)


@pytest.mark.slow
@needs_icarus
@pytest.mark.parametrize("name", list(MODELS))
def test_fpga_bit_exact_on_more_images(name, data, golden, tmp_path):
    _fpga(name, FPGA_SLOW, data, golden, tmp_path)


@pytest.mark.slow
@needs_icarus
def test_fpga_concat_of_one_tensor_twice(data, tmp_path):
    """Bi-Real's parameter-free downsampling shortcut cat(maxpool(x), maxpool(x)) (random
    weights; BN statistics from the test images) equals the golden fixed-point output. It
    used to stall: the concat reads port 0's two beats of a pixel while the fork offers the
    same beats to port 1, so port 1 needs a FIFO of a pixel (converters/fpga/dag.py)."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from edge_sdk.train import BinaryActivation, BinaryConv2d, BinaryLinear, export_onnx

    class CatTwice(nn.Module):
        def __init__(self, c: int = 16) -> None:  # 16: two pool beats a pixel (8: one)
            super().__init__()
            self.stem, self.bn0 = BinaryConv2d(1, c, 3, padding=1), nn.BatchNorm2d(c)
            self.sign = BinaryActivation()
            self.conv = BinaryConv2d(c, 2 * c, 3, stride=2, padding=1)
            self.bn1, self.pool = nn.BatchNorm2d(2 * c), nn.MaxPool2d(2)
            self.fc, self.bnf = BinaryLinear(2 * c, 10), nn.BatchNorm1d(10)

        def forward(self, x):
            x = self.bn0(self.stem(x))
            p = self.pool(x)
            x = torch.cat([p, p], 1) + self.bn1(self.conv(self.sign(x)))
            return self.bnf(self.fc(self.sign(x.mean((2, 3)))))

    torch.manual_seed(0)
    model = CatTwice().train()
    x = data[0]
    with torch.no_grad():
        model(torch.from_numpy(x[:200]))
    path = tmp_path / "cat_twice.onnx"
    export_onnx(model, torch.from_numpy(x[:2]), path)
    xs, want, out = tmp_path / "x.npy", tmp_path / "want.npy", tmp_path / "fpga"
    np.save(xs, x[:4])
    _cli("run", path, *RANGE, "--input", xs, "--output", want, "--fixed-point")
    _cli("convert", path, *RANGE, "--target", "fpga", "-o", out)
    proc = run_cli("simulate", out, "--input", xs, "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr[-300:]
    assert np.array_equal(np.load(tmp_path / "y.npy"), np.load(want))
