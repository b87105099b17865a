"""Cortex-M over the serial port: `convert --io uart` firmware under QEMU with `-serial pty`,
driven by `edge-sdk infer` (and by raw frames), outputs equal to the golden model bit for bit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import numpy as np
import onnx
import pytest
import serial
import zoo
from conftest import EXAMPLES, run_cli

import edge_sdk
from edge_sdk import golden, targets
from edge_sdk import protocol as P
from edge_sdk.converters.cortexm import toolchain, uart_io
from edge_sdk.converters.cortexm.qemu_uart import serve
from edge_sdk.infer import infer

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
    reason="arm-none-eabi-gcc / qemu-system-arm not installed (scripts/setup.sh installs them)",
)
AN386 = "qemu-mps2-an386"


def convert(path, out, **options):
    return targets.convert(edge_sdk.load(path), "cortex-m", out, {"io": "uart", **options})


def random_inputs(ir, n, seed):
    layer = ir.layers[0]
    rng = np.random.default_rng(seed)
    lo, hi = max(layer.lo, -20), min(layer.hi, 20)
    return rng.integers(lo, hi + 1, size=(n, *layer.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp_build(tmp_path_factory):
    return convert(EXAMPLES / "mlp_digits.onnx", tmp_path_factory.mktemp("uart") / "mlp")


@pytest.mark.parametrize("name,xs", [("mlp_digits", "digits_mlp_x.npy"),
                                     ("cnn_digits", "digits_cnn_x.npy")])
def test_examples_through_the_qemu_serial_port(tmp_path, mlp_build, name, xs):
    if name == "mlp_digits":
        out = mlp_build
    else:
        out = convert(EXAMPLES / f"{name}.onnx", tmp_path / name)
    with serve(uart_io.elf_path(out, AN386), AN386) as pty:
        proc = run_cli("infer", out, "--port", pty, "--input", EXAMPLES / xs, "--output",
                       tmp_path / "y.npy", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "bit-exact" in proc.stdout and "64" in proc.stdout
    x = np.load(EXAMPLES / xs)
    assert np.array_equal(np.load(tmp_path / "y.npy"), edge_sdk.load(EXAMPLES / f"{name}.onnx")
                          .run(x))


@pytest.mark.parametrize("make,board", [
    (lambda: zoo.mlp(1, act="where", weights="ternary", dense="matmul"), AN386),
    (lambda: zoo.tie_mlp(0), "qemu-mps2-an385"),
    (lambda: zoo.cnn(1, in_shape=(2, 11, 9), channels=(5, 7), strides=2, pads=1,
                     weights="ternary"), AN386),
], ids=["mlp-ternary", "ties-m3", "cnn-strided-ternary"])
def test_zoo_models_through_the_qemu_serial_port(tmp_path, make, board):
    path = tmp_path / "m.onnx"
    onnx.save(make(), path)
    out = convert(path, tmp_path / "out", board=board)
    _, ir = targets.open_build(out)
    x = random_inputs(ir, 16, seed=3)
    with serve(uart_io.elf_path(out, board), board) as pty:
        y, facts = infer(out, pty, x)
    assert facts["samples"] == 16
    assert targets.first_mismatch(y, golden.run(ir, x)) is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_random_models_through_the_qemu_serial_port(tmp_path, seed):
    model, _, _ = zoo.random_model(seed)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    out = convert(path, tmp_path / "out")
    _, ir = targets.open_build(out)
    x = random_inputs(ir, 32, seed=seed)
    with serve(uart_io.elf_path(out, AN386), AN386) as pty:
        y, _ = infer(out, pty, x)
    assert targets.first_mismatch(y, golden.run(ir, x)) is None


def exchange(port, data: bytes, wait: float = 3.0) -> P.Frame:
    port.write(data)
    port.timeout = wait
    return P.read_frame(port.read, 1 << 16)


def test_firmware_answers_each_error_and_keeps_serving(mlp_build):
    _, ir = targets.open_build(mlp_build)
    x = random_inputs(ir, 1, seed=0)
    sample = golden.quantise_input(ir.layers[0], x)[0].astype("<i2").tobytes()
    with serve(uart_io.elf_path(mlp_build, AN386), AN386) as pty, \
            serial.Serial(pty, 115200, timeout=3) as port:
        info = exchange(port, P.encode(P.Type.INFO, 1))
        assert (info.type, info.seq, info.status) == (0x81, 1, 0)
        assert P.Info.unpack(info.payload) == P.Info(1, 2, True, 128, 40)
        bad = bytearray(P.encode(P.Type.INFER, 2, sample))
        bad[40] ^= 0x04
        start = time.monotonic()
        got = exchange(port, bytes(bad))
        assert (got.type, got.seq, got.status, got.payload) == (0x82, 2, P.Status.BAD_CRC, b"")
        assert time.monotonic() - start >= P.GAP_MS / 1000  # waited for a quiet line
        got = exchange(port, P.encode(P.Type.INFER, 3, sample[:-2]))
        assert (got.seq, got.status) == (3, P.Status.BAD_LENGTH)
        got = exchange(port, P.encode(0x33, 4))
        assert (got.type, got.seq, got.status) == (0xB3, 4, P.Status.BAD_TYPE)
        port.write(P.encode(P.Type.INFER, 5, sample)[:30])  # stalls: dropped, no answer
        time.sleep(3 * P.GAP_MS / 1000)
        got = exchange(port, P.encode(P.Type.INFER, 6, sample))
        assert (got.seq, got.status) == (6, P.Status.OK)
    scores = np.frombuffer(got.payload, "<i4")
    layer = targets.scores_layer(ir)
    assert np.array_equal(golden.float_ops(scores.astype(np.int64)[None], layer.ops),
                          golden.run(ir, x))


@pytest.mark.parametrize("board", ["nucleo-f446re", "nucleo-f746zg"])
def test_make_builds_the_same_uart_firmware_and_the_nucleo_links(tmp_path, board):
    out = convert(EXAMPLES / "mlp_digits.onnx", tmp_path / "nucleo", board=board)
    ours = uart_io.elf_path(out, board)
    image = toolchain.read_elf(ours)
    assert "link_serve" in image.symbols and "edge_model_run" in image.symbols
    assert "sh_exit" not in image.symbols  # no semihosting on a stand-alone board
    assert "main" in image.symbols and "edge_test_inputs" not in image.symbols  # driver replaced
    assert image.firmware_io() == toolchain.FirmwareIO(2, True, 64, 10)
    proc = subprocess.run(["make", "-s", "uart"], cwd=out, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert (out / "model-uart.elf").read_bytes() == ours.read_bytes()
    ours.unlink()
    built = targets.backend("cortex-m").build(out, targets.open_build(out)[0], None)
    assert "model-uart.elf" in built and ours.read_bytes() == (out / "model-uart.elf").read_bytes()


def test_infer_refuses_a_build_without_uart_firmware(tmp_path, mlp_build):
    out = tmp_path / "plain"
    shutil.copytree(mlp_build, out)
    meta = json.loads((out / "edge-sdk.json").read_text())
    del meta["options"]["io"]  # what convert writes without --io uart
    (out / "edge-sdk.json").write_text(json.dumps(meta))
    proc = run_cli("infer", out, "--port", "/dev/null-port", "--input",
                   EXAMPLES / "digits_mlp_x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 2 and "--io uart" in proc.stderr, proc.stderr
    assert not (tmp_path / "y.npy").exists()
