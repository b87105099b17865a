"""Train one binary CNN backbone with two heads on the attribute images and export both to ONNX.

Heads, trained the same way (same backbone, epochs, optimiser, schedule and seed):

- `query`: the last binary layer emits D = B*L scores, read as B blocks of L. The target is the
  product vector of the true attributes under FIXED random one-hot codebooks
  (`random_sbc(F, M, B, L, CODEBOOK_SEED)`): in block b its hot position is
  sum_f idx_f[m_f, b] mod L. Loss: cross-entropy per block towards that position (the block-wise
  softmax of the scores is the query the factorizer decodes). The file ends in Reshape ->
  Softmax(axis=-1) -> Reshape -> `edge_sdk.BlockCodeFactorizer` (decoder "default"), so
  `edge-sdk run` outputs the three attribute indices and the iteration counts.
- `fc`: a binary fully connected layer over all M^F = 512 classes (plain cross-entropy); its
  file ends in the class scores.

Why a loop of its own instead of examples/train_common.py: that loop is tied to the digits data
and to one class-label loss; the query head needs the block-wise loss. The recipe is the same
(Adam 1e-2, cosine decay, STE, BatchNorm before every sign, deterministic kernels).

Run: `python examples/attributes/train.py` (both heads, writes the .onnx files, the test split
and `training.json` next to this script).
Variants measured in examples/README.md (`experiments.json`): `--seed N`, `--loss class|...`,
`--head-bits 8`, `--hidden H` (`--fc-hidden H` for the FC head), `--widths`, `--epochs`, `--blocks B --block-len L` (the block
geometry), `--loss distill|distill+block` (soft block targets from an FC teacher, see
QueryLoss), `--loss block+aux` (a training-only FC head), `--query-scale S` (a softer block
softmax for the decoder, see soften_query); use `--out DIR` to keep the shipped files.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from data import (
    SIZE,
    TRAIN_PER_CLASS,
    TRAIN_SEED,
    F,
    M,
    Split,
    all_classes,
    make_split,
    test_split,
)
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as tf

from edge_sdk.factorizer import Codebooks, product_indices, random_sbc
from edge_sdk.train import BinaryActivation, BinaryConv2d, BinaryLinear, export_onnx

HERE = Path(__file__).resolve().parent
SEED = 0
CODEBOOK_SEED = 10
QUERY_ONNX = "attributes_factorizer.onnx"
FC_ONNX = "attributes_fc.onnx"


@dataclass(frozen=True)
class Config:
    """What the shipped models used (see examples/README.md for the variants measured)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-2
    widths: tuple[int, int, int] = (16, 32, 128)
    blocks: int = 8
    block_len: int = 16
    hidden: int = 0  # query head only: a binary hidden layer of this width before the query
    fc_hidden: int = 0  # the same for the FC head
    loss: str = "block"  # query head only: one of QUERY_LOSSES (see QueryLoss)
    train_per_class: int = TRAIN_PER_CLASS
    seed: int = SEED  # weight initialisation and batch order
    head_bits: int = 1  # output layer weights: 1 (binary) or 8 (float on the 8-bit grid)
    temperature: float = 2.0  # "distill" losses only: softmax temperature of the FC teacher
    query_scale: float = 1.0  # query head only: factor on its last BatchNorm after training


def backbone(widths: tuple[int, int, int]) -> nn.Sequential:
    """16x16 integer image -> 16 * widths[2] binary features.

    The first convolution has binary weights and multi-bit (0..15) inputs; every later layer
    has binary weights and binary (+-1) activations. Pooling follows the sign (max of +-1 is
    an OR), as in examples/train_cnn.py.
    """
    c1, c2, c3 = widths
    return nn.Sequential(
        BinaryConv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), BinaryActivation(zero_to_plus=True),
        nn.MaxPool2d(2),
        BinaryConv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), BinaryActivation(zero_to_plus=True),
        nn.MaxPool2d(2),
        BinaryConv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), BinaryActivation(zero_to_plus=True),
        nn.Flatten(),
    )


def build(cfg: Config, outputs: int, hidden: int = 0) -> nn.Sequential:
    """Backbone + linear head (+-1 weights, or 8-bit with `head_bits` 8; BatchNorm as the
    per-output scale/offset).

    `hidden` > 0 puts a binary layer (BatchNorm, sign) of that width before the output layer.
    """
    features = cfg.widths[2] * (SIZE // 4) ** 2
    body = backbone(cfg.widths)  # first: the initialisation order fixes the weights
    head: list[nn.Module] = []
    if hidden:
        head = [BinaryLinear(features, hidden), nn.BatchNorm1d(hidden),
                BinaryActivation(zero_to_plus=True)]
        features = hidden
    if cfg.head_bits == 8:
        out: nn.Module = _int8_linear()(features, outputs, bias=False)
    else:
        out = BinaryLinear(features, outputs)
    return nn.Sequential(body, *head, out, nn.BatchNorm1d(outputs))


def _int8_linear() -> type:
    """examples/resnets' Int8Linear (weights trained on `--calibrate`'s 8-bit grid), loaded by
    path: both examples name their script train.py, so a plain import would collide."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("resnets_train",
                                                  HERE.parent / "resnets" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Int8Linear


QUERY_LOSSES = ("block", "class", "class+block", "logclass", "logclass+block", "distill",
                "distill+block", "block+aux")


def codebooks(cfg: Config) -> Codebooks:
    return random_sbc(F, M, cfg.blocks, cfg.block_len, seed=CODEBOOK_SEED)


def targets(kind: str, split: Split, cb: Codebooks) -> torch.Tensor:
    """Class index [N] (fc) or the product's hot position per block [N, B] (query)."""
    if kind == "fc":
        return torch.from_numpy(split.classes.astype(np.int64))
    return torch.from_numpy(product_indices(cb.indices, split.y, cb.L))


class QueryLoss(nn.Module):
    """The query head's loss.

    `block`: cross-entropy per block towards the true product's hot position. It asks every
    block to be right, although decoding only needs the true product to score above the other
    products. `class`: cross-entropy over all M^F products of the decoder's own score, the
    similarity sum_b p_b[pos_c,b] of the block-wise softmax p with product c's hot positions,
    times a learned temperature (a training-only parameter; argmax does not depend on it).
    `class+block` adds the two.

    `distill`: cross-entropy per block towards soft targets from a trained FC teacher (same
    backbone, recipe and seed): p_b(j) = sum of the teacher's class probabilities (softmax of
    its logits / temperature) over the classes whose product has position j in block b. Why:
    the teacher's near misses tell each block which positions are plausible, a smoother target
    than the one hot position. `distill+block` adds the hard block loss. `block+aux`: the block
    loss plus a training-only FC head on the same backbone features (plain cross-entropy over
    the classes), so the backbone learns class-separating features; the aux head is dropped
    at export (the deployed model is the query head alone).
    """

    def __init__(self, kind: str, cb: Codebooks):
        super().__init__()
        if kind not in QUERY_LOSSES:
            raise ValueError(f"unknown query loss {kind!r}")
        self.kind, self.L = kind, cb.L
        self.register_buffer("pos", torch.from_numpy(
            product_indices(cb.indices, all_classes(), cb.L)))  # [C, B]
        self.log_temp = nn.Parameter(torch.tensor(float(np.log(8.0))))

    def forward(self, scores: torch.Tensor, target: torch.Tensor,
                classes: torch.Tensor, soft: torch.Tensor | None = None) -> torch.Tensor:
        n, b = target.shape
        loss = scores.new_zeros(())
        if self.kind.startswith("distill"):
            logp = torch.log_softmax(scores.reshape(n, b, self.L), -1)
            loss = loss - (soft * logp).sum(-1).mean()
        if "block" in self.kind:
            loss = loss + tf.cross_entropy(scores.reshape(-1, self.L), target.reshape(-1))
        if self.kind.startswith("logclass"):
            logp = torch.log_softmax(scores.reshape(n, b, self.L), -1)
            loss = loss + tf.cross_entropy(logp[:, torch.arange(b)[None, :], self.pos].sum(-1),
                                           classes)
        elif "class" in self.kind:
            p = torch.softmax(scores.reshape(n, b, self.L), -1)
            sim = p[:, torch.arange(b)[None, :], self.pos].sum(-1)  # [N, C]
            loss = loss + tf.cross_entropy(sim * self.log_temp.exp(), classes)
        return loss


def seed_everything(seed: int = SEED) -> None:
    """One thread: the heads train in two processes side by side (see --heads) and a fixed
    thread count keeps the float sums, hence the trained weights, reproducible."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def soft_block_targets(teacher_logits: np.ndarray, cb: Codebooks, temperature: float
                       ) -> torch.Tensor:
    """[N, B, L] soft block targets: the teacher's class probabilities summed per position."""
    logits = torch.from_numpy(teacher_logits).double() / temperature
    q = torch.softmax(logits, -1)  # [N, C]
    pos = torch.from_numpy(product_indices(cb.indices, all_classes(), cb.L))  # [C, B]
    n, b = len(q), pos.shape[1]
    onehot = tf.one_hot(pos, cb.L).double()  # [C, B, L]
    return torch.einsum("nc,cbl->nbl", q, onehot).float().reshape(n, b, cb.L)


def teacher_logits(cfg: Config, split: Split, cb: Codebooks, cache: Path | None
                   ) -> tuple[np.ndarray, float]:
    """The FC head's logits on the training images (eval mode), trained with the same config
    and seed; cached in `cache` so several students can share one teacher. Returns (logits,
    the teacher's training seconds, 0 when read from the cache)."""
    if cache is not None and cache.exists():
        return np.load(cache), 0.0
    model, seconds = train("fc", cfg, split, cb)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(split.x)).numpy()
    if cache is not None:
        np.save(cache, logits)
    return logits, seconds


def train(kind: str, cfg: Config, split: Split, cb: Codebooks, epochs: int | None = None,
          teacher_cache: Path | None = None) -> tuple[nn.Sequential, float]:
    """Train one head; returns (model, wall seconds, the teacher's included for `distill`)."""
    teacher_seconds = 0.0
    soft = None
    if kind == "query" and cfg.loss.startswith("distill"):
        logits, teacher_seconds = teacher_logits(cfg, split, cb, teacher_cache)
        soft = soft_block_targets(logits, cb, cfg.temperature)
    seed_everything(cfg.seed)
    d = cfg.blocks * cfg.block_len
    model = build(cfg, M**F, cfg.fc_hidden) if kind == "fc" else build(cfg, d, cfg.hidden)
    x = torch.from_numpy(split.x)
    y = targets(kind, split, cb)
    classes = torch.from_numpy(split.classes.astype(np.int64))
    epochs = cfg.epochs if epochs is None else epochs
    forward = model
    if kind == "fc":
        def loss_fn(scores, i):
            return tf.cross_entropy(scores, y[i])
        params = list(model.parameters())
    else:
        query_loss = QueryLoss(cfg.loss, cb)
        def loss_fn(scores, i):
            return query_loss(scores, y[i], classes[i], None if soft is None else soft[i])
        params = list(model.parameters()) + list(query_loss.parameters())
        if cfg.loss.endswith("+aux"):  # training-only FC head on the backbone's features
            features = cfg.widths[2] * (SIZE // 4) ** 2
            aux = nn.Sequential(BinaryLinear(features, M**F), nn.BatchNorm1d(M**F))
            body, top = model[0], model[1:]
            aux_forward = {}

            def forward(xb):
                h = body(xb)
                aux_forward["scores"] = aux(h)
                return top(h)

            def loss_fn(scores, i):
                return query_loss(scores, y[i], classes[i]) + tf.cross_entropy(
                    aux_forward["scores"], classes[i])
            params += list(aux.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if idx.numel() < 2:  # BatchNorm needs more than one sample
                continue
            opt.zero_grad()
            loss = loss_fn(forward(x[idx]), idx)
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        sched.step()
        print(f"{kind} epoch {epoch + 1:3d}  loss {total / len(x):.4f}  "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return model, time.perf_counter() - start + teacher_seconds


@torch.no_grad()
def torch_accuracy(kind: str, model: nn.Module, split: Split, cb: Codebooks) -> float:
    """Accuracy in torch; the query head by exhaustive search over its block-wise softmax
    (the float decoders' ceiling), so it can be compared with `edge-sdk run`."""
    model.eval()
    scores = model(torch.from_numpy(split.x))
    if kind == "fc":
        pred = scores.argmax(1).numpy()
        return float((pred == split.classes).mean())
    n, (b, length) = len(scores), (cb.shape[2], cb.L)
    p = torch.softmax(scores.reshape(n, b, length).double(), -1).numpy()
    pos = product_indices(cb.indices, all_classes(), length)  # [C, B]
    match = p[:, np.arange(b)[None, :], pos].sum(-1)  # [N, C]
    return float((match.argmax(1) == split.classes).mean())


def append_factorizer(path: Path, cb: Codebooks) -> None:
    """Reshape -> Softmax(axis=-1) -> Reshape -> edge_sdk.BlockCodeFactorizer after the scores."""
    m = onnx.load(path)
    g = m.graph
    (out,) = [o.name for o in g.output]
    f, mm, b, length = cb.shape
    dense = cb.as_dense().reshape(f, mm, b * length).astype(np.float32)
    g.initializer.extend([
        numpy_helper.from_array(dense, "codebooks"),
        numpy_helper.from_array(np.array([-1, b, length], np.int64), "block_shape"),
        numpy_helper.from_array(np.array([-1, b * length], np.int64), "query_shape"),
    ])
    g.node.extend([
        helper.make_node("Reshape", [out, "block_shape"], ["blocks"], name="to_blocks"),
        helper.make_node("Softmax", ["blocks"], ["block_softmax"], name="block_softmax",
                         axis=-1),
        helper.make_node("Reshape", ["block_softmax", "query_shape"], ["query"], name="to_query"),
        helper.make_node("BlockCodeFactorizer", ["query", "codebooks"],
                         ["attributes", "iterations"], domain="edge_sdk", name="factorizer",
                         blocks=b, block_len=length, decoder="default"),
    ])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("attributes", TensorProto.INT64, ["N", f]),
                     helper.make_tensor_value_info("iterations", TensorProto.INT64, ["N"])])
    m.opset_import.append(helper.make_opsetid("edge_sdk", 1))
    onnx.checker.check_model(m)
    onnx.save(m, path)


def soften_query(model: nn.Sequential, scale: float) -> None:
    """Multiply the query scores by `scale` (< 1: a softer block softmax) by scaling the last
    BatchNorm's weight and bias, so the exported model needs no extra node.

    Why: the block loss calibrates each block's softmax for that block alone, and a block that
    is confidently wrong then outweighs several that are mildly right in the decoder's sum
    sum_b p_b[pos_b]. A softer softmax moves that sum towards sum_b (scores at pos_b), the
    log-likelihood of the product if the blocks' scores were independent log-probabilities.
    """
    bn = model[-1]
    with torch.no_grad():
        bn.weight.mul_(scale)
        bn.bias.mul_(scale)


def train_head(kind: str, cfg: Config, out: Path, epochs: int | None = None,
               teacher_cache: Path | None = None) -> dict:
    """Train, evaluate in torch and export one head into `out` (one process's job)."""
    tr, te = make_split(cfg.train_per_class, TRAIN_SEED), test_split()
    cb = codebooks(cfg)
    model, seconds = train(kind, cfg, tr, cb, epochs, teacher_cache)
    if kind == "query" and cfg.query_scale != 1.0:
        soften_query(model, cfg.query_scale)
    acc = torch_accuracy(kind, model, te, cb)
    path = out / (QUERY_ONNX if kind == "query" else FC_ONNX)
    for layer in model.modules():  # 8-bit head: export the grid values themselves
        if hasattr(layer, "snap"):
            layer.snap()
    export_onnx(model, torch.from_numpy(te.x[:2]), path, output_name="scores")
    if kind == "query":
        append_factorizer(path, cb)
    print(f"{kind}: {seconds:.0f} s, torch test accuracy {acc:.4f} -> {path.name}", flush=True)
    return {"train_seconds": round(seconds, 1), "torch_test_accuracy": acc}


def run(cfg: Config, out: Path, heads: tuple[str, ...] = ("query", "fc"),
        epochs: int | None = None, parallel: bool = True, teacher_cache: Path | None = None
        ) -> dict:
    """Train and export the heads into `out`; the test split is written there too.

    `parallel`: one process per head (each single-threaded), which uses both cores better than
    one process with two threads on these small layers; the results do not depend on it.
    """
    out.mkdir(parents=True, exist_ok=True)
    te = test_split()
    np.save(out / "test_x.npy", te.x)
    np.save(out / "test_y.npy", te.y)
    config = asdict(cfg)
    if not cfg.loss.startswith("distill"):  # keeps the default run's training.json as it was
        del config["temperature"]
    if cfg.query_scale == 1.0:
        del config["query_scale"]
    if not cfg.fc_hidden:
        del config["fc_hidden"]
    summary: dict = {"config": config, "train_images": M**F * cfg.train_per_class,
                     "test_images": len(te.x)}
    start = time.perf_counter()
    if parallel and len(heads) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(heads), mp_context=ctx) as pool:
            jobs = {k: pool.submit(train_head, k, cfg, out, epochs, teacher_cache)
                    for k in heads}
            summary.update({k: job.result() for k, job in jobs.items()})
    else:
        summary.update({k: train_head(k, cfg, out, epochs, teacher_cache) for k in heads})
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=Config.epochs)
    ap.add_argument("--widths", default=",".join(map(str, Config.widths)))
    ap.add_argument("--blocks", type=int, default=Config.blocks)
    ap.add_argument("--block-len", type=int, default=Config.block_len)
    ap.add_argument("--hidden", type=int, default=Config.hidden)
    ap.add_argument("--fc-hidden", type=int, default=Config.fc_hidden)
    ap.add_argument("--lr", type=float, default=Config.lr)
    ap.add_argument("--loss", default=Config.loss, choices=QUERY_LOSSES, help="query head loss")
    ap.add_argument("--temperature", type=float, default=Config.temperature,
                    help="distill losses: the FC teacher's softmax temperature")
    ap.add_argument("--teacher-cache", type=Path, default=None,
                    help="distill losses: .npy of the teacher's training logits (written if "
                         "missing; must come from the same widths/epochs/seed/head-bits)")
    ap.add_argument("--query-scale", type=float, default=Config.query_scale,
                    help="factor on the query scores after training (< 1: softer block softmax)")
    ap.add_argument("--per-class", type=int, default=TRAIN_PER_CLASS,
                    help="training images per class")
    ap.add_argument("--heads", default="query,fc")
    ap.add_argument("--head-bits", type=int, default=1, choices=(1, 8))
    ap.add_argument("--seed", type=int, default=SEED, help="initialisation and batch order")
    ap.add_argument("--out", type=Path, default=HERE)
    a = ap.parse_args()
    widths = tuple(int(v) for v in a.widths.split(","))
    if len(widths) != 3:
        ap.error("--widths takes three channel counts")
    cfg = Config(epochs=a.epochs, widths=widths, blocks=a.blocks, block_len=a.block_len,
                 hidden=a.hidden, fc_hidden=a.fc_hidden, train_per_class=a.per_class, lr=a.lr,
                 loss=a.loss, seed=a.seed, head_bits=a.head_bits, temperature=a.temperature,
                 query_scale=a.query_scale)
    summary = run(cfg, a.out, tuple(a.heads.split(",")), teacher_cache=a.teacher_cache)
    (a.out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
