"""Build the generated C for the host (gcc, ctypes) to check it against the golden model.

The same sources go to arm-none-eabi-gcc for the device; compiling them here with the same
warning flags catches non-portable C early, and running them here is fast enough for
randomised bit-exactness tests over many inputs. Nothing in the generated code is host-specific.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ...errors import EdgeError

WARNINGS = ("-Wall", "-Wextra", "-Werror", "-std=c99", "-pedantic")
CC = "gcc"

# A batch loop in C so that many inputs cost one ctypes call.
BATCH_DRIVER = """\
#include <stdint.h>
#include "model.h"

int edge_host_run_batch(int n, const EDGE_IN_T *in, int32_t *out) {
    int i;
    for (i = 0; i < n; ++i) {
        int rc = edge_model_run(in + (long)i * EDGE_IN_SIZE, out + (long)i * EDGE_OUT_SIZE);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
"""


def compile_shared(files: dict[str, str], workdir: str | Path, opt: str = "-O2") -> ctypes.CDLL:
    """Write `files`, compile every .c into one shared library and load it."""
    if shutil.which(CC) is None:
        raise EdgeError(f"host C compiler '{CC}' not found")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (work / name).write_text(text)
    sources = sorted(str(work / n) for n in files if n.endswith(".c"))
    lib = work / "libedge_host.so"
    cmd = [CC, *WARNINGS, opt, "-fPIC", "-shared", "-I", str(work), "-o", str(lib), *sources]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EdgeError(f"host compile failed: {proc.stderr.strip()}")
    return ctypes.CDLL(str(lib))


class HostModel:
    """A generated model compiled for the host: `run(q)` maps integer inputs to int32 outputs."""

    def __init__(self, files: dict[str, str], workdir: str | Path, in_dtype: str,
                 in_size: int, out_size: int):
        self.in_dtype = np.dtype(in_dtype)
        self.in_size = in_size
        self.out_size = out_size
        self._lib = compile_shared({**files, "edge_host_batch.c": BATCH_DRIVER}, workdir)
        self._run = self._lib.edge_host_run_batch
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]

    def run(self, q: np.ndarray) -> np.ndarray:
        """q: integer batch [N, *input shape] already quantised -> int32 [N, out_size]."""
        q = np.asarray(q)
        n = q.shape[0]
        info = np.iinfo(self.in_dtype)
        if q.size and (q.min() < info.min or q.max() > info.max):
            raise EdgeError(f"input values outside {self.in_dtype} range")
        x = np.ascontiguousarray(q.reshape(n, -1).astype(self.in_dtype))
        if x.shape[1] != self.in_size:
            raise EdgeError(f"input has {x.shape[1]} values per sample, model takes {self.in_size}")
        y = np.zeros((n, self.out_size), dtype=np.int32)
        rc = self._run(n, x.ctypes.data, y.ctypes.data)
        if rc != 0:
            raise EdgeError(f"edge_model_run returned {rc}")
        return y
