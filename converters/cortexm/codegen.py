"""`generate(graph)`: the Cortex-M backend's entry point, lowered IR -> C sources + facts."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import EdgeError
from ...ir.graph import Graph
from .emit import write_files
from .plan import LayerCost, Plan, make_plan
from .popcount import MODES


@dataclass(frozen=True)
class ModelInfo:
    """What the generated C costs and takes (the numbers reports and firmware need)."""

    arena_bytes: int  # RAM: the static activation arena
    weight_bytes: int  # flash: packed weights + threshold/sign tables
    input_dtype: str  # "int8" | "int16" (EDGE_IN_T)
    input_range: tuple[int, int]
    input_size: int  # EDGE_IN_SIZE
    output_size: int  # EDGE_OUT_SIZE
    layers: tuple[LayerCost, ...]  # per Dense/Conv2d layer: MACs, binary or multi-bit input

    @property
    def binary_macs(self) -> int:
        return sum(c.macs for c in self.layers if c.binary)

    @property
    def total_macs(self) -> int:
        return sum(c.macs for c in self.layers)

    def facts(self) -> dict:
        """The model's part of report.json, the same for firmware and library builds."""
        return {
            "weight_bytes": self.weight_bytes,
            "arena_bytes": self.arena_bytes,
            "input": {"dtype": self.input_dtype, "range": list(self.input_range),
                      "elements": self.input_size},
            "output_elements": self.output_size,
            "macs": self.total_macs,
            "binary_macs": self.binary_macs,
        }


@dataclass(frozen=True)
class CModel:
    files: dict[str, str]
    info: ModelInfo
    plan: Plan  # what the files were written from (library.py re-emits model.h with docs)


def build(graph: Graph, popcount: str = "swar", *, fuse: bool = True) -> CModel:
    """Generate the C for a lowered graph; EdgeError for anything the backend cannot map.

    popcount: "swar" (portable, default) or "builtin" (`__builtin_popcount`). fuse: thresholds
    computed inside the Dense/Conv kernel that feeds them (no int32 tensor in RAM).
    """
    if popcount not in MODES:
        raise EdgeError(f"popcount must be one of {', '.join(MODES)}, got {popcount!r}")
    plan = make_plan(graph, fuse)
    files = write_files(plan, popcount)
    info = ModelInfo(
        arena_bytes=4 * plan.arena_words,
        weight_bytes=plan.weight_bytes,
        input_dtype=plan.in_dtype,
        input_range=plan.in_range,
        input_size=plan.in_size,
        output_size=plan.out_size,
        layers=tuple(plan.costs),
    )
    return CModel(files, info, plan)


def generate(graph: Graph, popcount: str = "swar", *, fuse: bool = True) -> dict[str, str]:
    """File name -> contents (model.h, model.c, edge_kernels.h, edge_kernels.c)."""
    return build(graph, popcount, fuse=fuse).files
