"""What a target build of a factorizer model holds besides the network: `factorizer.json`.

Why one record: the Cortex-M and FPGA backends, the golden model of a build folder and a later
`simulate` in another process all need the same facts (codebook index table, decoder and its
options, the block softmax after the network, or none when the query is the model input), so
they are written once at convert time and read back from here.

Target semantics (what `run --fixed-point` computes and every target must reproduce):
- query is the model input: float queries -> fixed.quantise -> fixed.decode;
- a network makes the query: golden integer scores -> BlockSoftmax.apply -> fixed.decode.
The ONNX decoders map onto the two fixed-point decoders the targets implement:
`default`/`exhaustive` -> `default` (exhaustive integer search), `published`/`resonator` ->
`published` (resonator = published with A = 0, T = 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError

from . import fixed
from .block_softmax import BlockSoftmax
from .codebooks import Codebooks

FILE = "factorizer.json"
TARGET_METHODS = {"default": "default", "exhaustive": "default", "published": "published",
                  "resonator": "published"}


@dataclass(frozen=True, eq=False)
class DeployedHead:
    node_name: str
    outputs: list[str]  # indices, then optionally iterations
    indices: np.ndarray  # int64 [F, M, B]: hot position of each codevector's block
    L: int
    decoder: str  # the ONNX attribute
    options: dict  # keyword options of fixed.decode (A, T, similarity, max_iters, seed)
    tail: BlockSoftmax | None  # None: the query is the model input

    @property
    def shape(self) -> tuple[int, int, int, int]:
        F, M, B = self.indices.shape
        return F, M, B, self.L

    @property
    def method(self) -> str:
        """The fixed-point decoder the targets run."""
        return TARGET_METHODS[self.decoder]

    @property
    def target_options(self) -> dict:
        """Options of `method` (resonator: the published decoder with A = 0 and T = 0)."""
        opts = dict(self.options)
        if self.decoder == "resonator":
            opts.update(A=0, T=0.0)
        if self.method == "default":
            opts = {}
        return opts

    @property
    def codebooks(self) -> Codebooks:
        return Codebooks.from_indices(self.indices, self.L)

    def queries(self, x_or_scores: Any) -> np.ndarray:
        """Integer queries [N, B*L]: from float queries (no network) or integer scores."""
        _F, _M, B, L = self.shape
        if self.tail is None:
            q = fixed.quantise(np.asarray(x_or_scores, dtype=np.float64), self.codebooks)
        else:
            q = self.tail.apply(x_or_scores)
        return np.asarray(q, dtype=np.int64).reshape(-1, B * L)

    def decode(self, q: Any) -> tuple[np.ndarray, np.ndarray]:
        """The fixed-point golden decoder on integer queries (what the targets compute)."""
        return fixed.decode(q, self.codebooks, self.decoder, **self.options)

    def outputs_of(self, idx: np.ndarray, its: np.ndarray) -> dict[str, np.ndarray]:
        out = {self.outputs[0]: np.asarray(idx, dtype=np.int64)}
        if len(self.outputs) > 1:
            out[self.outputs[1]] = np.asarray(its, dtype=np.int64)
        return out

    def to_json(self) -> str:
        d = {"node": self.node_name, "outputs": self.outputs, "indices": self.indices.tolist(),
             "L": self.L, "decoder": self.decoder, "options": self.options,
             "tail": None if self.tail is None else self.tail.to_json()}
        return json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DeployedHead:
        d = json.loads(text)
        return cls(str(d["node"]), [str(o) for o in d["outputs"]],
                   np.asarray(d["indices"], dtype=np.int64), int(d["L"]), str(d["decoder"]),
                   dict(d["options"]),
                   None if d["tail"] is None else BlockSoftmax.from_json(d["tail"]))

    def save(self, folder: str | Path) -> None:
        (Path(folder) / FILE).write_text(self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> DeployedHead:
        path = Path(folder) / FILE
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise EdgeError(f"{path}: not a factorizer build ({exc})") from None


def from_head(head: Any, tail: BlockSoftmax | None) -> DeployedHead:
    """From a validated converters.onnx.factorizer_node.FactorizerHead (one-hot codebooks)."""
    cb = head.codebooks
    if not cb.is_onehot:
        raise EdgeError(f"node '{head.node_name}' (BlockCodeFactorizer): the targets need one-hot "
                        "codebooks (one hot entry per block); these are general non-negative")
    return DeployedHead(head.node_name, list(head.outputs), np.asarray(cb.indices, np.int64),
                        int(head.block_len), head.decoder, dict(head.options), tail)
