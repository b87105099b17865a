"""Run a generated factorizer decoder: on the host (ctypes), under QEMU, and under unicorn.

Why three: the host build makes randomised bit-exactness tests against `fixed.decode` cheap;
QEMU runs the very firmware a board would run (mps2 semihosting driver, `edge_model_run`
wrapper from emit.firmware_files); unicorn counts the instructions each decoded query costs
(the figure the benchmark reports). All three return (indices [N, F], iterations [N]).
"""

from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed
from edge_sdk.factorizer.codebooks import Codebooks

from .. import qemu
from ..host import compile_shared
from ..icount import Emulator
from ..toolchain import build
from .emit import HEADER, files, firmware_files
from .spec import QUERY_BITS, DecoderSpec

DEFAULT_BOARD = "qemu-mps2-an386"
FIRMWARE_QUERY_BITS = 15  # the firmware driver reads int16 samples

_BATCH = """\
#include <stdint.h>
#include "{header}"

int edge_fz_host_batch(int n, const uint16_t *q, int32_t *idx, int32_t *iters)
{{
    int i;
    for (i = 0; i < n; ++i) {{
        int rc = edge_factorizer_decode(q + (long)i * {size}, idx + (long)i * {F}, iters + i);
        if (rc != 0) {{
            return rc;
        }}
    }}
    return 0;
}}
"""


def integer_queries(sp: DecoderSpec, queries: Any, bits: int = QUERY_BITS) -> np.ndarray:
    """Integer queries [N, B*L] or [N, B, L] -> int64 [N, B*L], each entry < 2^bits."""
    q = fixed.as_int_queries(queries, Codebooks.from_indices(sp.indices, sp.L))
    if q.size and int(q.max()) >= 1 << bits:
        raise EdgeError(f"cortex-m factorizer: query entries must be < 2^{bits}, "
                        f"got {int(q.max())}")
    return q.reshape(q.shape[0], sp.BL)


def _split(sp: DecoderSpec, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return out[:, : sp.F].astype(np.int64), out[:, sp.F].astype(np.int64)


class HostDecoder:
    """The generated C compiled for the host with the project's warning flags."""

    def __init__(self, sp: DecoderSpec, workdir: str | Path):
        self.sp = sp
        batch = _BATCH.format(header=HEADER, size=sp.BL, F=sp.F)
        sources = {**files(sp), "edge_fz_host_batch.c": batch}
        # dlopen returns an already loaded library for a path it has seen: one folder per
        # distinct source, so two decoders built in the same workdir cannot be confused
        digest = hashlib.sha256("".join(sources[n] for n in sorted(sources)).encode())
        self._lib = compile_shared(sources, Path(workdir) / f"fz-{digest.hexdigest()[:16]}")
        self._run = self._lib.edge_fz_host_batch
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]

    def decode(self, queries: Any) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(integer_queries(self.sp, queries).astype(np.uint16))
        n = q.shape[0]
        idx = np.zeros((n, self.sp.F), dtype=np.int32)
        its = np.zeros(n, dtype=np.int32)
        rc = self._run(n, q.ctypes.data, idx.ctypes.data, its.ctypes.data)
        if rc != 0:
            raise EdgeError(f"edge_factorizer_decode returned {rc}")
        return idx.astype(np.int64), its.astype(np.int64)


def build_firmware(sp: DecoderSpec, folder: str | Path, board: str = DEFAULT_BOARD) -> Path:
    """Write the firmware sources into `folder` and link `folder/factorizer.elf`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in firmware_files(sp).items():
        (folder / name).write_text(text)
    return build(folder, board, folder / "factorizer.elf")


def _firmware_input(sp: DecoderSpec, queries: Any) -> np.ndarray:
    return integer_queries(sp, queries, FIRMWARE_QUERY_BITS).astype(np.int16)


def run_qemu(sp: DecoderSpec, elf: str | Path, queries: Any, board: str = DEFAULT_BOARD,
             timeout: float = 120.0) -> tuple[np.ndarray, np.ndarray]:
    """Decode every query in one QEMU run of the firmware."""
    out = qemu.run(elf, board, _firmware_input(sp, queries), sp.F + 1, timeout=timeout)
    return _split(sp, out)


def instructions_per_query(sp: DecoderSpec, elf: str | Path, queries: Any,
                           board: str = DEFAULT_BOARD) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """(indices, iterations, instructions [N]) of each query, counted by unicorn."""
    res = Emulator(elf, board).run(_firmware_input(sp, queries), sp.F + 1)
    idx, its = _split(sp, res.outputs)
    return idx, its, res.instructions
