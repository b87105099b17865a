"""edge_sdk.train: PyTorch modules for binary and ternary networks that edge-sdk can deploy.

Why a library: the SDK reads what a training script exported, and each published training trick
(STE, BiPer, ReSTE, TWN, the statistics-based ternary weights of "Binary and Ternary Natural
Language Generation", elastic activation scales) is easy to get subtly wrong in a way that
changes the *forward* pass, e.g. `x + (sign(x) - x).detach()` is float arithmetic and not
exactly ±1 after export. Here every trick changes the backward pass only; the forward value is
exactly ±1, {-a, 0, +a} or ±a, and `export_onnx` writes it in the forms the ONNX frontend
reads (`Sign`, `Where(x >= c, 1, -1)`, constant ±a or ternary weights, BatchNormalization).

Only this subpackage imports torch (the `[train]` extra); the rest of edge_sdk does not need it.
"""

from .activations import BinaryActivation, ElasticBinaryActivation
from .estimators import STE, ApproxSign, BiPer, Estimator, ReSTE, binarize
from .export import check_export, export_onnx, frozen_weights
from .layers import (
    BinaryConv2d,
    BinaryLinear,
    QuantConv2d,
    QuantLinear,
    TernaryConv2d,
    TernaryLinear,
)
from .weights import SignWeight, StatsTernaryWeight, TWNWeight, WeightQuantizer

__all__ = [
    "STE",
    "ApproxSign",
    "BiPer",
    "BinaryActivation",
    "BinaryConv2d",
    "BinaryLinear",
    "ElasticBinaryActivation",
    "Estimator",
    "QuantConv2d",
    "QuantLinear",
    "ReSTE",
    "SignWeight",
    "StatsTernaryWeight",
    "TWNWeight",
    "TernaryConv2d",
    "TernaryLinear",
    "WeightQuantizer",
    "binarize",
    "check_export",
    "export_onnx",
    "frozen_weights",
]
