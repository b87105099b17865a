"""The FPGA fit check: a model whose weights exceed the board's block RAM is refused with the
numbers and the smallest device that would hold it, before any file is written."""

from __future__ import annotations

import onnx
import pytest
from conftest import run_cli
from zoo import models

from edge_sdk.converters.fpga.backend import FIT_DEVICES, smallest_device


@pytest.mark.parametrize("kbit", [1, 120, 121, 128.5, 577, 1944, 3744, 3745])
def test_smallest_device_is_the_first_listed_that_holds_the_bits(kbit):
    bits = int(kbit * 1024)
    text = smallest_device(bits)
    holds = [name for name, size, _ in FIT_DEVICES if size * 1024 >= bits]
    if holds:
        assert f"the {holds[0]} (" in text
        assert all(f"the {name} (" not in text for name in holds[1:])
    else:
        assert text.startswith("no listed device")
    sizes = [size for _, size, _ in FIT_DEVICES]
    assert sizes == sorted(sizes)


def test_cli_refuses_a_model_too_large_for_the_up5k(tmp_path):
    # 784 -> 200 -> 10 binary MLP: 158.8 kbit of weights, above the UP5K's 120 kbit
    model = models.mlp(0, sizes=(784, 200, 10))
    path = tmp_path / "big.onnx"
    onnx.save(model, path)
    out = tmp_path / "out"
    proc = run_cli("convert", path, "--target", "fpga", "-o", out)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    bits = 784 * 200 + 200 * 10
    assert f"{bits / 1024:.1f} kbit" in line and "120 kbit" in line
    assert "ECP5 LFE5U-12F" in line  # the HX8K's 128 kbit is not enough either
    assert not out.exists()
