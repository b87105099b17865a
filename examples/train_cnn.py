"""Train and export the binary CNN example (``examples/cnn_digits.onnx``).

Architecture: two 3x3 binary convolutions (1->16->32 channels, padding 1) each
followed by BatchNorm and a binary activation, a 2x2 max-pool, then a binary
fully connected layer to 10 classes and a final BatchNorm (class scores, no
sign). The activation is ``where(x >= 0, 1, -1)`` rather than ``torch.sign`` so
the exported graph exercises the SDK's other binarisation pattern and never
produces a 0 activation.

The input is [N, 1, 8, 8]; the reshape from 64 pixels happens in the data
pipeline so the graph begins with a Conv.

Run: ``python examples/train_cnn.py``
"""

from __future__ import annotations

from digits_data import as_images
from torch import nn
from train_common import TrainConfig, run

from edge_sdk.train import BinaryActivation, BinaryConv2d, BinaryLinear


def build_cnn() -> nn.Sequential:
    """Binary CNN using the ``where(x >= 0, 1, -1)`` activation variant."""
    return nn.Sequential(
        BinaryConv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        BinaryActivation(zero_to_plus=True),
        BinaryConv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        BinaryActivation(zero_to_plus=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        BinaryLinear(32 * 4 * 4, 10),
        nn.BatchNorm1d(10),
    )


def main() -> None:
    """Train, export and verify the CNN."""
    run(build_cnn, as_images, "cnn_digits.onnx", TrainConfig(epochs=40))


if __name__ == "__main__":
    main()
