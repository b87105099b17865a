"""Train and export the binary MLP example (``examples/mlp_digits.onnx``).

Architecture: 64 -> 128 -> 128 -> 10 with binary weights everywhere, BatchNorm
after every layer and ``torch.sign`` activations between hidden layers. The
first layer sees the raw integer pixels (0..16), the final BatchNorm output is
the class score (no sign), matching what the SDK's MLP converter expects.

Run: ``python examples/train_mlp.py``
"""

from __future__ import annotations

import numpy as np
from torch import nn
from train_common import TrainConfig, run

from edge_sdk.train import BinaryActivation, BinaryLinear


def build_mlp() -> nn.Sequential:
    """Binary MLP using the ``torch.sign`` activation variant."""
    return nn.Sequential(
        BinaryLinear(64, 128),
        nn.BatchNorm1d(128),
        BinaryActivation(),
        BinaryLinear(128, 128),
        nn.BatchNorm1d(128),
        BinaryActivation(),
        BinaryLinear(128, 10),
        nn.BatchNorm1d(10),
    )


def flat(x: np.ndarray) -> np.ndarray:
    """The MLP consumes the flat [N, 64] pixels unchanged."""
    return x


def main() -> None:
    """Train, export and verify the MLP."""
    run(build_mlp, flat, "mlp_digits.onnx", TrainConfig(epochs=40))


if __name__ == "__main__":
    main()
