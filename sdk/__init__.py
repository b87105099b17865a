"""edge-sdk: binary, ternary and factorizer-head networks on Cortex-M and FPGAs, bit-exactly.

The Python API (`sdk/api.py`) is what the `edge-sdk` CLI runs on:

    m = edge_sdk.load("model.onnx"); y = m.run(x); print(m.inspect())
    b = m.convert("cortex-m", "out/"); sim = b.simulate(x, check=True); b.report()

The names in `__all__` are the stable surface; `progress.bars()` shows long steps on a terminal.
"""

from . import progress
from .api import Build, Inspection, Report, Simulation, SourceCheck, load, open_build
from .errors import EdgeError
from .model import Model

__version__ = "0.1.0"
__all__ = ["Build", "EdgeError", "Inspection", "Model", "Report", "Simulation", "SourceCheck",
           "__version__", "load", "open_build", "progress"]
