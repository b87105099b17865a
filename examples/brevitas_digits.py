"""Train a binary MLP with Brevitas on the digits and export it as QONNX.

Architecture: 64 -> 128 -> 128 -> 10, every weight binary through Brevitas'
``SignedBinaryWeightPerTensorConst`` (exported as ``BipolarQuant`` with scale 0.1,
so the weights are ±0.1, not ±1), BatchNorm after every layer and
``SignedBinaryActPerTensorConst`` activations (``BipolarQuant`` with scale 1).
Brevitas' default quantisers at bit width 1 are not used: they export
``BipolarQuant(scale=inf)``. The first layer sees the raw integer pixels 0..16
(no input quantiser), the last BatchNorm gives the class scores.

The file is written with ``brevitas.export.export_qonnx`` (the torch.export
path) and checked with qonnx's own executor and with edge-sdk's golden model.

Run: ``python examples/brevitas_digits.py`` (needs the ``train`` and ``qonnx``
extras: torch, scikit-learn, brevitas, qonnx, onnxoptimizer).
"""

from __future__ import annotations

import numpy as np
import torch
from brevitas.export import export_qonnx
from brevitas.nn import QuantIdentity, QuantLinear
from brevitas.quant.binary import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from digits_data import load_split
from torch import nn
from train_common import EXAMPLES_DIR, TrainConfig, accuracy, seed_everything, train

import edge_sdk
from edge_sdk.converters.onnx.qonnx_reference import run_qonnx

ONNX_NAME = "brevitas_digits.qonnx.onnx"


def binary_linear(k: int, n: int) -> QuantLinear:
    return QuantLinear(k, n, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)


def binary_act() -> QuantIdentity:
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)


def build_mlp() -> nn.Sequential:
    """Binary MLP from Brevitas layers."""
    return nn.Sequential(
        binary_linear(64, 128),
        nn.BatchNorm1d(128),
        binary_act(),
        binary_linear(128, 128),
        nn.BatchNorm1d(128),
        binary_act(),
        binary_linear(128, 10),
        nn.BatchNorm1d(10),
    )


def main() -> None:
    seed_everything()
    split = load_split()
    x_train, y_train = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    x_test = torch.from_numpy(split.x_test)
    model = build_mlp()
    seconds = train(model, x_train, y_train, TrainConfig(epochs=40))
    torch_acc = accuracy(model, x_test, torch.from_numpy(split.y_test))

    path = EXAMPLES_DIR / ONNX_NAME
    model.eval()
    export_qonnx(model, args=x_test[:1], export_path=str(path), dynamo=True, optimize=True,
                 external_data=False, input_names=["input"], output_names=["logits"],
                 dynamic_shapes=({0: torch.export.Dim("batch")},))
    ref = run_qonnx(path, split.x_test)
    golden = edge_sdk.load(path).run(split.x_test)
    print(f"train time        {seconds:.1f} s (40 epochs)")
    print(f"torch test acc    {torch_acc:.4f} ({len(split.y_test)} images)")
    print(f"qonnx test acc    {float((ref.argmax(1) == split.y_test).mean()):.4f} ({path.name})")
    print(f"edge-sdk test acc {float((golden.argmax(1) == split.y_test).mean()):.4f}, "
          f"max |golden - qonnx| {float(np.abs(golden - ref).max()):.2e}, argmax agreement "
          f"{float((golden.argmax(1) == ref.argmax(1)).mean()):.4f}")


if __name__ == "__main__":
    main()
