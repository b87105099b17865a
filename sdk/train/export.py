"""ONNX export of edge_sdk.train models, and the check that the SDK runs the file exactly.

Why freeze: a weight quantiser is a subgraph of float ops on the latent weights (`Sign(W)`,
BiPer's `Sign(Sin(f W))`, TWN's `Abs/ReduceMean/Greater/...`). torch 2.13's ONNX optimiser
folds it into a constant only for tensors of at most 8192 elements (and not at all with
`optimize=False`); what is left is evaluated again by every runtime, and a `Sin` evaluated by
two runtimes can round differently. With `frozen_weights` each layer computes its exact
binary/ternary weights once in torch and the file holds them as plain constants, whatever the
size. `freeze=False` keeps the natural export (the form the original digits examples were
shipped in).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .layers import quantised_layers


@contextmanager
def frozen_weights(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every quantised layer uses its exact weights as a constant."""
    layers = quantised_layers(model)
    try:
        with torch.no_grad():
            for layer in layers:
                layer.frozen_weight = None
                layer.frozen_weight = layer.quantized_weight().detach().clone()
        yield model
    finally:
        for layer in layers:
            layer.frozen_weight = None


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, *,
                freeze: bool = True, dynamic_batch: bool = True, optimize: bool = False,
                input_name: str = "input", output_name: str = "logits") -> bool:
    """Export `model` (eval mode) with `torch.onnx.export(dynamo=True)`; True if batch is dynamic.

    A dynamic batch dimension lets the SDK and onnxruntime run any batch; when the exporter
    rejects it, the file is written for batch 1 (the SDK still runs any batch on it).

    `optimize=False` (the default) skips torch's ONNX optimiser, which fuses BatchNormalization
    into the Gemm/Conv weights (±1 becomes ±a per row, plus a bias). With BN as its own node
    every float op is applied to an exact integer accumulator, in the file as in the golden
    model, so a network whose last layer has ±1 weights runs bit-exactly in both; fused, the
    scores depend on onnxruntime's summation order of rounded ±a products. The frontend reads
    both forms.
    """
    path = Path(path)
    model.eval()
    names = {"input_names": [input_name], "output_names": [output_name],
             "optimize": optimize}
    ctx = frozen_weights(model) if freeze else nullcontext(model)
    with ctx:
        if dynamic_batch:
            try:
                torch.onnx.export(model, (example,), path, dynamo=True, external_data=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
                return True
            except Exception as exc:  # noqa: BLE001 - any exporter failure -> batch 1
                print(f"dynamic-batch export failed ({exc!r}); exporting batch 1")
        torch.onnx.export(model, (example[:1],), path, dynamo=True, external_data=False,
                          **names)
    return False


def check_export(path: str | Path, x: np.ndarray):
    """Golden model vs onnxruntime on the exported file: an `Agreement` (see reports.compare)."""
    from edge_sdk import load
    from edge_sdk.converters.onnx.reference import run_onnxruntime
    from edge_sdk.reports.compare import agreement

    return agreement(load(path).run(x), run_onnxruntime(path, x))
