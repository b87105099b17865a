"""edge-sdk: binary, ternary and factorizer-head networks on Cortex-M and FPGAs, bit-exactly."""

from .errors import EdgeError
from .model import Model, load

__version__ = "0.1.0"
__all__ = ["EdgeError", "Model", "__version__", "load"]
