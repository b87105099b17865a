"""A model that is only the factorizer node (its query is the model input) -> a Cortex-M folder.

Why separate from the network backend: the decoder has no IR layers; its build folder holds
the firmware sources of emit.firmware_files and `factorizer.json` (the DecoderSpec), and runs
float queries by quantising them exactly as `run --fixed-point` does (`fixed.quantise`), so
the folder's indices and iterations must equal `FactorizerModel.run_outputs(x, True)`.
This is the piece `convert --target cortex-m` / `simulate` call for such models (see the
hook described in the package docstring); a network before the node is refused for now.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed
from edge_sdk.factorizer.codebooks import Codebooks

from ..toolchain import object_sizes
from .emit import firmware_files
from .run import DEFAULT_BOARD, build_firmware, run_qemu
from .spec import DecoderSpec, decoder_spec

SPEC_FILE = "factorizer.json"
# The ONNX node's decoders onto the two C decoders (resonator = published with A = 0, T = 0).
METHODS = {"default": "default", "exhaustive": "default", "published": "published",
           "resonator": "published"}


def spec_for_head(head: Any) -> DecoderSpec:
    """The DecoderSpec of a validated `FactorizerHead` (its decoder and options)."""
    opts = dict(head.options)
    if head.decoder == "resonator":
        opts.update(A=0, T=0.0)
    try:
        return decoder_spec(head.codebooks, METHODS[head.decoder], **opts)
    except EdgeError as exc:
        raise EdgeError(f"node '{head.node_name}' (BlockCodeFactorizer): {exc}") from None


def convert(model: Any, folder: str | Path, board: str = DEFAULT_BOARD) -> dict:
    """Write the decoder's firmware folder for a `FactorizerModel`; returns its report."""
    if model.network.graph.node and model.head.query != model.input_name:
        raise EdgeError(f"{model.path}: cortex-m: only the factorizer node is supported so far "
                        f"(its query must be the model input, not computed by "
                        f"{len(model.network.graph.node)} network node(s))")
    sp = spec_for_head(model.head)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in firmware_files(sp).items():
        (folder / name).write_text(text)
    fields = {**asdict(sp), "indices": sp.indices.tolist()}
    (folder / SPEC_FILE).write_text(json.dumps(fields, indent=1, sort_keys=True) + "\n")
    sizes = object_sizes(folder, board)
    return {"F": sp.F, "M": sp.M, "B": sp.B, "L": sp.L, "method": sp.method,
            "max_iters": sp.max_iters, "flash_bytes": sizes["text"] + sizes["data"],
            "ram_bytes": sizes["data"] + sizes["bss"]}


def load_spec(folder: str | Path) -> DecoderSpec:
    path = Path(folder) / SPEC_FILE
    try:
        fields = json.loads(path.read_text())
        fields["indices"] = np.asarray(fields["indices"], dtype=np.int64)
        return DecoderSpec(**fields)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise EdgeError(f"{path}: not a cortex-m factorizer folder ({exc})") from None


def simulate(folder: str | Path, x: Any, board: str = DEFAULT_BOARD) -> dict[str, np.ndarray]:
    """Float queries [N, B*L] -> {"indices": [N, F], "iterations": [N]} from QEMU."""
    folder = Path(folder)
    sp = load_spec(folder)
    q = fixed.quantise(np.asarray(x, dtype=np.float64), Codebooks.from_indices(sp.indices, sp.L))
    elf = build_firmware(sp, folder, board)
    idx, its = run_qemu(sp, elf, q.reshape(len(q), -1), board)
    return {"indices": idx, "iterations": its}


__all__ = ["convert", "load_spec", "simulate", "spec_for_head"]
