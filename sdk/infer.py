"""`edge-sdk infer`: run a batch on a real device (or QEMU, or a simulated FPGA) over a serial port.

The build folder says what the device must be: its target's codec (converters/cortexm/uart_io.py,
converters/fpga/uart_io.py) gives the INFO answer to expect and how a quantised sample becomes
an INFER payload and the answers become the integer scores; the float post-ops are then applied
on the host exactly as `run` and `simulate` apply them, so all three write the same values.
Nothing is returned (and so nothing written) unless every sample was answered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import golden, targets
from .errors import EdgeError
from .protocol import Device, Info, Type
from .serial_link import DEFAULT_BAUD, DEFAULT_TIMEOUT, Link

__all__ = ["codec", "infer"]

_CODECS = {"cortex-m": "edge_sdk.converters.cortexm.uart_io",
           "fpga": "edge_sdk.converters.fpga.uart_io"}


def codec(folder: str | Path, meta: dict):
    """The target's codec for a build folder: `.info`, `.encode(sample)`, `.decode(answers)`."""
    target = meta.get("target")
    if target not in _CODECS:
        raise EdgeError(f"{folder}: target {target!r} has no serial protocol")
    try:
        module = importlib.import_module(_CODECS[target])
    except ModuleNotFoundError as exc:
        raise EdgeError(f"target '{target}' needs the missing package '{exc.name}' (install "
                        "edge-sdk with its extras: pip install 'edge-sdk[cortexm,fpga]')") from None
    return module.codec(Path(folder), meta)


def _describe(info: Info) -> str:
    kind = {Device.CORTEX_M: "a Cortex-M firmware", Device.FPGA: "an FPGA bitstream"}.get(
        info.device, f"a device of kind {info.device}")
    return f"{kind} taking {info.in_bytes}-byte inputs and giving {info.out_bytes}-byte outputs"


def infer(folder: str | Path, port: str, x: np.ndarray, *, baud: int = DEFAULT_BAUD,
          timeout: float = DEFAULT_TIMEOUT,
          progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Every sample of `x` through the device on `port`; returns the model output and facts."""
    meta, ir = targets.open_build(folder)
    c = codec(folder, meta)
    q = golden.quantise_input(ir.layers[0], x)
    n = len(q)
    if n == 0:
        raise EdgeError("input: the batch is empty")
    answers = []
    with Link(port, baud, timeout) as link:
        info = link.info()
        if info != c.info:
            raise EdgeError(f"{port}: the device is {_describe(info)}, {folder} is "
                            f"{_describe(c.info)}: flash or load this build first")
        for i in range(n):
            frame = link.request(Type.INFER, c.encode(q[i]), c.info.out_bytes,
                                 f"INFER of sample {i}")
            answers.append(frame.payload)
            if progress is not None:
                progress(i + 1, n)
    y = targets.output_of_scores(ir, c.decode(answers), n)
    return y, {"port": port, "baud": baud, "samples": n, "device": _describe(info)}
