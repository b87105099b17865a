"""Deterministic ONNX model zoo for the converter tests (good models here, bad ones in .bad)."""

from .models import (
    INPUT_RANGE,
    cnn,
    external_data_mlp,
    mlp,
    neg_gamma_mlp,
    odd_mlp,
    random_model,
    tie_mlp,
    tie_where_mlp,
    where_cast_mlp,
)

__all__ = [
    "INPUT_RANGE",
    "cnn",
    "external_data_mlp",
    "mlp",
    "neg_gamma_mlp",
    "odd_mlp",
    "random_model",
    "tie_mlp",
    "tie_where_mlp",
    "where_cast_mlp",
]
