"""`edge-sdk infer` against a fake device on a real OS pty pair: every way a port or a device can
fail gives one line on stderr, exit 2 and no output file; a well-behaved peer gives the golden
output. The peer answers with frames built by edge_sdk.protocol (tested in test_protocol.py)
from the golden model's integer scores, then damaged as each case needs.
"""

from __future__ import annotations

import os
import select
import shutil
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
import serial
import zoo

import edge_sdk
from edge_sdk import golden, targets
from edge_sdk import protocol as P
from edge_sdk.cli import main
from edge_sdk.infer import codec

pytestmark = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                                reason="arm-none-eabi-gcc not installed")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A tiny Cortex-M build with UART firmware, its IR, inputs and the answers it expects."""
    tmp = tmp_path_factory.mktemp("host")
    onnx.save(zoo.mlp(0, sizes=(16, 16, 4)), tmp / "m.onnx")
    out = targets.convert(edge_sdk.load(tmp / "m.onnx"), "cortex-m", tmp / "cm",
                          {"io": "uart"})
    meta, ir = targets.open_build(out)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 16, size=(5, 16)).astype(np.float32)
    np.save(tmp / "x.npy", x)
    scores = golden.run_all(ir, x)[targets.scores_layer(ir).inputs[0]]
    answers = [np.asarray(s, dtype="<i4").tobytes() for s in scores]
    return {"out": out, "ir": ir, "x": x, "x_path": tmp / "x.npy", "answers": answers,
            "info": codec(out, meta).info}


class FakeDevice:
    """Plays the device on the master side of a pty; `answer(frame, n)` returns the bytes to
    send for the n-th request (None: stay silent)."""

    def __init__(self, answer: Callable[[P.Frame, int], bytes | None]):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.answer = answer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        parser = P.FrameParser()
        n = 0
        while not self.stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                continue
            for frame in parser.feed(data):
                if isinstance(frame, P.Frame):
                    reply = self.answer(frame, n)
                    n += 1
                    if reply:
                        os.write(self.master, reply)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)


def honest(b, info=None):
    """A correct device (optionally claiming other INFO facts)."""
    def answer(frame: P.Frame, n: int) -> bytes:
        if frame.type == P.Type.INFO:
            return P.encode(0x81, frame.seq, (info or b["info"]).pack())
        sample = n - 1
        return P.encode(0x82, frame.seq, b["answers"][sample])
    return answer


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def infer(capsys):
    """`edge-sdk infer` through the CLI's own main() (in-process: no interpreter start-up)."""
    def run(b, port, tmp_path, *extra):
        out = tmp_path / "y.npy"
        capsys.readouterr()
        code = main(["infer", str(b["out"]), "--port", str(port), "--input", str(b["x_path"]),
                     "--output", str(out), "--timeout", "0.5", *extra])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err), out
    return run


def assert_refused(proc, out, *words):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-sdk: error: "), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists()


def test_an_honest_device_gives_the_golden_output(build, tmp_path, infer):
    with FakeDevice(honest(build)) as dev:
        proc, out = infer(build, dev.path, tmp_path, "--check")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(out), golden.run(build["ir"], build["x"]))


def test_stale_answers_of_an_earlier_session_are_skipped(build, tmp_path, infer):
    good = honest(build)

    def answer(frame, n):
        reply = good(frame, n)
        if frame.type == P.Type.INFER:  # an old answer first, then the right one
            return P.encode(0x82, (frame.seq - 7) & 0xFF, b"\x00" * 16) + reply
        return reply

    with FakeDevice(answer) as dev:
        proc, out = infer(build, dev.path, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.load(out), golden.run(build["ir"], build["x"]))


def test_absent_port(build, tmp_path, infer):
    proc, out = infer(build, tmp_path / "ttyNOPE", tmp_path)
    assert_refused(proc, out, "no such serial port")


def test_busy_port(build, tmp_path, infer):
    with FakeDevice(honest(build)) as dev, serial.Serial(dev.path, exclusive=True):
        proc, out = infer(build, dev.path, tmp_path)
    assert_refused(proc, out, dev.path, "busy")


def test_silent_device_times_out(build, tmp_path, infer):
    with FakeDevice(lambda frame, n: None) as dev:
        proc, out = infer(build, dev.path, tmp_path)
    assert_refused(proc, out, "no answer to INFO", "--io uart")


def test_timeout_on_a_later_sample_leaves_no_output(build, tmp_path, infer):
    good = honest(build)
    with FakeDevice(lambda frame, n: good(frame, n) if n < 3 else None) as dev:
        proc, out = infer(build, dev.path, tmp_path)
    assert_refused(proc, out, "no answer to INFER of sample 2")


def corrupt_crc(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 0x5A])


@pytest.mark.parametrize("damage,words", [
    (lambda f, b: corrupt_crc(P.encode(0x82, f.seq, b["answers"][0])), ("CRC",)),
    (lambda f, b: P.encode(0x82, f.seq, b["answers"][0][:-4]),
     ("12 payload bytes, 16 expected",)),
    (lambda f, b: P.encode(0x82, f.seq, b["answers"][0] + b"\x00" * 4), ("wrong length",)),
    (lambda f, b: P.encode(0x82, f.seq, b"", P.Status.BAD_CRC), ("did not match",)),
    (lambda f, b: P.encode(0x82, f.seq, b"", P.Status.BAD_LENGTH), ("refused the frame",)),
    (lambda f, b: P.encode(0x80, 0, b"", P.Status.BUSY), ("busy",)),
    (lambda f, b: P.encode(0x82, f.seq, b"", P.Status.MODEL_ERROR), ("model failed",)),
    (lambda f, b: P.encode(0x82, f.seq, b"", 0x77), ("unknown status 119",)),
    (lambda f, b: P.encode(0x82, f.seq, b["answers"][0])[:-6], ("no answer", "went quiet")),
], ids=["bad-crc", "short", "long", "status-crc", "status-length", "busy", "model-error",
        "unknown-status", "truncated"])
def test_bad_answers(build, tmp_path, infer, damage, words):
    good = honest(build)

    def answer(frame, n):
        return damage(frame, build) if frame.type == P.Type.INFER else good(frame, n)

    with FakeDevice(answer) as dev:
        proc, out = infer(build, dev.path, tmp_path)
    assert_refused(proc, out, "INFER of sample 0", *words)


def test_a_device_with_another_model_is_refused(build, tmp_path, infer):
    other = P.Info(P.Device.CORTEX_M, 2, True, 2 * 32, 40)
    with FakeDevice(honest(build, other)) as dev:
        proc, out = infer(build, dev.path, tmp_path)
    assert_refused(proc, out, "64-byte inputs", "flash or load this build first")
