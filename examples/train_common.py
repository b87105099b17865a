"""Training, ONNX export and ONNX Runtime check shared by the example scripts.

The MLP and CNN examples differ only in the model and input layout; keeping
the loop, export and verification here guarantees both are produced the same
way (same seeds, optimiser schedule, exporter settings and accuracy check).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from digits_data import SEED, DigitsSplit, load_split, save_sample
from torch import nn

from edge_sdk.train import export_onnx as edge_export

EXAMPLES_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are what the shipped models used."""

    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0


@dataclass(frozen=True)
class Result:
    """Accuracies and timing reported by :func:`run`."""

    torch_acc: float
    onnx_acc: float
    agreement: float
    max_abs_diff: float
    train_seconds: float
    dynamic_batch: bool


def seed_everything(seed: int = SEED) -> None:
    """Fix every RNG and force deterministic kernels so reruns are identical."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def train(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    cfg: TrainConfig,
    on_epoch: Callable[[int], None] | None = None,
) -> float:
    """Train ``model`` with Adam + cosine decay; return wall time in seconds.

    Adam at ~1e-2 is the usual choice for binary nets: the latent weights only
    matter through their sign, so a large step size is needed to flip signs,
    and the decay lets the net settle at the end. ``on_epoch(epoch)`` runs before each
    epoch (e.g. ReSTE raises its exponent on a schedule).
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    n = x_train.shape[0]
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            if idx.numel() < 2:  # BatchNorm needs more than one sample
                continue
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        sched.step()
        if (epoch + 1) % 10 == 0 or epoch == 0:
            print(f"epoch {epoch + 1:3d}  loss {total / n:.4f}")
    return time.perf_counter() - start


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Eval-mode top-1 accuracy of ``model`` on ``(x, y)``."""
    model.eval()
    return (model(x).argmax(dim=1) == y).float().mean().item()


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> bool:
    """Torch's own dynamo export, as the shipped MLP/CNN were; True if batch is dynamic.

    `freeze=False, optimize=True` keeps what torch writes by itself: constant-folded `Sign(W)`
    for small layers, a `Sign(latent W)` subgraph for the MLP's 128x128 layer and BatchNorm
    fused into the Gemm/Conv weights (see README.md).
    """
    return edge_export(model, example, path, freeze=False, optimize=True)


def onnx_logits(path: Path, x: np.ndarray, dynamic_batch: bool) -> np.ndarray:
    """Run the exported file under ONNX Runtime (CPU) and return its scores."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if dynamic_batch:
        return sess.run(None, {name: x})[0]
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def run(
    build_model: Callable[[], nn.Module],
    to_input: Callable[[np.ndarray], np.ndarray],
    onnx_name: str,
    cfg: TrainConfig | None = None,
) -> Result:
    """Seed, train, evaluate, export and verify one example model.

    Args:
        build_model: constructs the untrained model (called after seeding).
        to_input: maps flat [N, 64] pixels to the model's input layout.
        onnx_name: output file name inside ``examples/``.
        cfg: training hyper-parameters.
    """
    cfg = cfg or TrainConfig()
    seed_everything()
    split: DigitsSplit = load_split()
    x_train = torch.from_numpy(to_input(split.x_train))
    y_train = torch.from_numpy(split.y_train)
    x_test_np = to_input(split.x_test)
    x_test = torch.from_numpy(x_test_np)
    y_test = torch.from_numpy(split.y_test)

    model = build_model()
    print(model)
    seconds = train(model, x_train, y_train, cfg)
    torch_acc = accuracy(model, x_test, y_test)
    with torch.no_grad():
        torch_scores = model(x_test).numpy()

    path = EXAMPLES_DIR / onnx_name
    dynamic = export_onnx(model, x_test[:64], path)
    # The exporter may fold Sign(W) and BatchNorm into the Gemm/Conv, so check
    # the file itself (not just the torch model) on the whole test split.
    scores = onnx_logits(path, x_test_np, dynamic)
    onnx_acc = float((scores.argmax(axis=1) == split.y_test).mean())
    agreement = float((scores.argmax(axis=1) == torch_scores.argmax(axis=1)).mean())
    max_abs_diff = float(np.abs(scores - torch_scores).max())
    save_sample(EXAMPLES_DIR)

    print(f"train time      {seconds:.1f} s ({cfg.epochs} epochs)")
    print(f"torch test acc  {torch_acc:.4f} ({len(split.y_test)} images)")
    print(f"onnx  test acc  {onnx_acc:.4f} ({path.name}, dynamic batch: {dynamic})")
    print(f"torch/onnx      argmax agreement {agreement:.4f}, max |score diff| {max_abs_diff:.2e}")
    return Result(torch_acc, onnx_acc, agreement, max_abs_diff, seconds, dynamic)
