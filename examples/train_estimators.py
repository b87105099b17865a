"""One short digits training run per estimator of ``edge_sdk.train``, exported and checked.

Each estimator changes only the backward pass (or how weights are scaled); the exported file
is a plain binary/ternary network the SDK reads. For every run the script prints the test
accuracy of the torch model and of the exported file under onnxruntime, and how the SDK's
golden model agrees with onnxruntime on the whole test split (bit-exact, or float32 rounding of
a scale torch folded into a Gemm).

    python examples/train_estimators.py --estimator ste|biper|reste|twn|stats|elastic|all
        [--arch mlp|cnn] [--epochs N] [--out DIR]

Files go to ``examples/estimators/<estimator>_<arch>.onnx`` (the shipped ones were made with
the defaults). The sample .npy files next to this script are not touched.

Models (BatchNorm after every layer unless said otherwise, the last layer's output is the
class score):
- ste: sign weights and ``torch.sign`` activations, both with the STE clipped at 1.
- biper: BiPer weights (square wave, frequency 20) and ApproxSign activations, as in BiPer.
- reste: ReSTE on weights and activations, exponent raised 1 -> 3 on ReSTE's cosine schedule.
- twn: TWN ternary weights (delta = 0.7 mean|w|), STE activations.
- stats: BTNLG ternary weights (a = 4/3 mean|w| per row), ``where(x >= 0)`` activations.
- elastic: the binary recipe of BTNLG: sign weights scaled by mean|w| per row, and elastic
  activations (learned scale and per-channel shift) as each layer's input quantiser; the last
  layer has a bias and no BatchNorm, so its learned input scale sets the score scale.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from digits_data import as_images, load_split
from torch import nn
from train_common import EXAMPLES_DIR, TrainConfig, accuracy, onnx_logits, seed_everything, train

from edge_sdk.train import (
    STE,
    ApproxSign,
    BinaryActivation,
    BinaryConv2d,
    BinaryLinear,
    BiPer,
    ElasticBinaryActivation,
    ReSTE,
    TernaryConv2d,
    TernaryLinear,
    check_export,
    export_onnx,
)

ESTIMATORS = ("ste", "biper", "reste", "twn", "stats", "elastic")
HIDDEN = 96  # MLP width: 64-96-96-10 keeps each exported file near 70 KB
RESTE_O_END = 3.0


@dataclass
class Recipe:
    """What one estimator trains: the model and an optional per-epoch hook."""

    model: nn.Module
    on_epoch: Callable[[int], None] | None = None


def _layer_kinds(name: str) -> tuple[Callable[..., nn.Module], Callable[..., nn.Module],
                                     Callable[[], nn.Module], Callable[[int], None] | None]:
    """(dense, conv, activation, on_epoch) factories for `name`."""
    if name == "ste":
        return BinaryLinear, BinaryConv2d, BinaryActivation, None
    if name == "biper":
        w = BiPer(freq=20.0)
        return (lambda i, o: BinaryLinear(i, o, w),
                lambda i, o, k, padding: BinaryConv2d(i, o, k, padding=padding, estimator=w),
                lambda: BinaryActivation(ApproxSign()), None)
    if name == "reste":
        est = ReSTE(o=1.0, t=1.5)

        def anneal(epoch: int, epochs: int = TrainConfig().epochs) -> None:
            est.o = ReSTE.exponent(epoch, epochs, RESTE_O_END)

        return (lambda i, o: BinaryLinear(i, o, est),
                lambda i, o, k, padding: BinaryConv2d(i, o, k, padding=padding, estimator=est),
                lambda: BinaryActivation(est), anneal)
    if name in ("twn", "stats"):
        act = (lambda: BinaryActivation(STE())) if name == "twn" else (
            lambda: BinaryActivation(STE(), zero_to_plus=True))
        return (lambda i, o: TernaryLinear(i, o, name),
                lambda i, o, k, padding: TernaryConv2d(i, o, k, padding=padding, method=name),
                act, None)
    raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")


def build(name: str, arch: str, epochs: int) -> Recipe:
    """The model for `name` (see the module docstring)."""
    if name == "elastic":
        if arch != "mlp":
            raise SystemExit("elastic: only --arch mlp (its scale is applied by the next layer, "
                             "and the CNN flattens float data before its last layer)")
        return Recipe(_elastic_mlp())
    dense, conv, act, on_epoch = _layer_kinds(name)
    hook = None if on_epoch is None else (lambda e: on_epoch(e, epochs))
    if arch == "mlp":
        return Recipe(nn.Sequential(
            dense(64, HIDDEN), nn.BatchNorm1d(HIDDEN), act(),
            dense(HIDDEN, HIDDEN), nn.BatchNorm1d(HIDDEN), act(),
            dense(HIDDEN, 10), nn.BatchNorm1d(10),
        ), hook)
    return Recipe(nn.Sequential(
        conv(1, 16, 3, padding=1), nn.BatchNorm2d(16), act(),
        conv(16, 32, 3, padding=1), nn.BatchNorm2d(32), act(),
        nn.MaxPool2d(2), nn.Flatten(),
        dense(32 * 4 * 4, 10), nn.BatchNorm1d(10),
    ), hook)


def _elastic_mlp() -> nn.Module:
    return nn.Sequential(
        BinaryLinear(64, HIDDEN, scale="row"), nn.BatchNorm1d(HIDDEN),
        BinaryLinear(HIDDEN, HIDDEN, scale="row", input_quant=ElasticBinaryActivation(HIDDEN)),
        nn.BatchNorm1d(HIDDEN),
        BinaryLinear(HIDDEN, 10, scale="row", bias=True,
                     input_quant=ElasticBinaryActivation(HIDDEN)),
    )


@dataclass(frozen=True)
class Row:
    """One line of the README table."""

    name: str
    arch: str
    torch_acc: float
    onnx_acc: float
    golden: str
    train_seconds: float
    kbytes: float

    def markdown(self) -> str:
        return (f"| {self.name} | {self.arch} | {100 * self.torch_acc:.2f} % | "
                f"{100 * self.onnx_acc:.2f} % | {self.golden} | {self.train_seconds:.1f} s | "
                f"{self.kbytes:.0f} KB |")


def run_one(name: str, arch: str, cfg: TrainConfig, out_dir: Path) -> Row:
    """Seed, train, export (frozen weights) and check one estimator's model."""
    seed_everything()
    split = load_split()
    layout = (lambda x: x) if arch == "mlp" else as_images
    x_train = torch.from_numpy(layout(split.x_train))
    y_train = torch.from_numpy(split.y_train)
    x_test_np = layout(split.x_test)
    x_test = torch.from_numpy(x_test_np)

    recipe = build(name, arch, cfg.epochs)
    start = time.perf_counter()
    train(recipe.model, x_train, y_train, cfg, on_epoch=recipe.on_epoch)
    seconds = time.perf_counter() - start
    torch_acc = accuracy(recipe.model, x_test, torch.from_numpy(split.y_test))

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}_{arch}.onnx"
    dynamic = export_onnx(recipe.model, x_test[:64], path)
    scores = onnx_logits(path, x_test_np, dynamic)
    onnx_acc = float((scores.argmax(axis=1) == split.y_test).mean())
    agree = check_export(path, x_test_np)
    row = Row(name, arch, torch_acc, onnx_acc, agree.describe().split(" on ")[0],
              seconds, path.stat().st_size / 1024)
    print(f"{name}/{arch}: torch {torch_acc:.4f}, onnxruntime {onnx_acc:.4f}, "
          f"golden vs onnxruntime: {agree.describe()} ({path})")
    if not agree.ok:
        raise SystemExit(f"{path}: the SDK's golden model disagrees with onnxruntime")
    return row


def main(argv: list[str] | None = None) -> list[Row]:
    """Parse arguments, run the chosen estimators, print the README table rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimator", default="all", choices=(*ESTIMATORS, "all"))
    ap.add_argument("--arch", default="mlp", choices=("mlp", "cnn"))
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument("--out", type=Path, default=EXAMPLES_DIR / "estimators")
    args = ap.parse_args(argv)
    names = ESTIMATORS if args.estimator == "all" else (args.estimator,)
    cfg = TrainConfig(epochs=args.epochs)
    rows = [run_one(n, args.arch, cfg, args.out) for n in names]
    print("\n| Estimator | Arch | Test acc (torch) | Test acc (onnxruntime) | "
          "edge-sdk golden vs onnxruntime | Train time | File |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    return rows


if __name__ == "__main__":
    main()
