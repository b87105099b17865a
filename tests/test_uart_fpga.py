"""FPGA over the serial port: the bitstream's logic (FramedUart + the generated edge_net) in
Icarus under cocotb, a UART bit-level model in the testbench bridging rx/tx to a real pty.
Frames are built by edge_sdk.protocol's encoder and answers decoded by it; outputs must equal
the golden model bit for bit, a bad-CRC frame must be answered BAD_CRC and leave the network in
step, and `edge-sdk infer` must drive the simulated board like a real one.
"""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest
import serial
import zoo
from conftest import EXAMPLES, run_cli

import edge_sdk
from edge_sdk import golden, targets
from edge_sdk import protocol as P
from edge_sdk.converters.fpga.uart_io import codec, serve
from edge_sdk.infer import infer

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="iverilog not installed (scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 16-16-4 MLP as an FPGA build, simulated behind its UART for the whole module."""
    tmp = tmp_path_factory.mktemp("fpga_uart")
    onnx.save(zoo.mlp(0, sizes=(16, 16, 4)), tmp / "m.onnx")
    out = targets.convert(edge_sdk.load(tmp / "m.onnx"), "fpga", tmp / "fpga",
                          {"pe": 4, "simd": 16})
    meta, ir = targets.open_build(out)
    with serve(out) as pty:
        yield {"out": out, "ir": ir, "codec": codec(out, meta), "pty": pty, "tmp": tmp}


def exchange(port, frame: bytes, limit: int) -> P.Frame:
    port.write(frame)
    return P.read_frame(port.read, limit)


def test_frames_in_answers_out_bad_crc_refused(small):
    ir, c = small["ir"], small["codec"]
    rng = np.random.default_rng(1)
    x = rng.integers(0, 16, size=(3, 16)).astype(np.float32)
    q = golden.quantise_input(ir.layers[0], x)
    want = golden.run_all(ir, x)[targets.scores_layer(ir).inputs[0]]
    with serial.Serial(small["pty"], 115200, timeout=20) as port:
        info = exchange(port, P.encode(P.Type.INFO, 1), 64)
        assert (info.type, info.seq, info.status) == (0x81, 1, P.Status.OK)
        assert P.Info.unpack(info.payload) == c.info
        assert c.info.device == P.Device.FPGA and c.info.out_bytes == 4 * 4

        got = exchange(port, P.encode(P.Type.INFER, 2, c.encode(q[0])), 1024)
        assert (got.type, got.seq, got.status) == (0x82, 2, P.Status.OK)
        assert np.array_equal(c.decode([got.payload])[0], want[0])

        bad = bytearray(P.encode(P.Type.INFER, 3, c.encode(q[1])))
        bad[P.HEADER_BYTES + 1] ^= 0x01  # one payload bit
        got = exchange(port, bytes(bad), 1024)
        assert (got.type, got.seq, got.status, got.payload) == (0x82, 3, P.Status.BAD_CRC, b"")

        got = exchange(port, P.encode(P.Type.INFER, 4, c.encode(q[2])[:-1]), 1024)
        assert (got.seq, got.status) == (4, P.Status.BAD_LENGTH)

        for k in (1, 2):  # the network stayed in step with the frames
            got = exchange(port, P.encode(P.Type.INFER, 5 + k, c.encode(q[k])), 1024)
            assert got.status == P.Status.OK
            assert np.array_equal(c.decode([got.payload])[0], want[k])


def test_infer_drives_the_simulated_fpga(small, tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 16, size=(6, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("infer", small["out"], "--port", small["pty"], "--input", tmp_path / "x.npy",
                   "--output", tmp_path / "y.npy", "--timeout", "20", "--check")
    assert proc.returncode == 0, proc.stderr
    assert "FPGA" in proc.stdout and "bit-exact" in proc.stdout
    assert np.array_equal(np.load(tmp_path / "y.npy"), golden.run(small["ir"], x))


@pytest.mark.slow
@pytest.mark.parametrize("name,xs", [("mlp_digits", "digits_mlp_x.npy"),
                                     ("cnn_digits", "digits_cnn_x.npy")])
def test_examples_through_the_simulated_uart(tmp_path, name, xs):
    out = targets.convert(edge_sdk.load(EXAMPLES / f"{name}.onnx"), "fpga", tmp_path / "f", {})
    x = np.load(EXAMPLES / xs)[:16]
    with serve(out) as pty:
        y, facts = infer(out, pty, x, timeout=60)
    assert facts["samples"] == 16
    assert np.array_equal(y, edge_sdk.load(EXAMPLES / f"{name}.onnx").run(x))
