"""RTL probes for the layer-by-layer diff: every stage's output stream, recorded in simulation.

Stages talk only through valid/ready streams (hw/network.py), so the beats a stage hands to the
next one are its layer's output, complete and in a fixed order: per output pixel (row-major),
`out_beats` beats of `out_lanes` value codes (bipolar: 1 bit, 1 = +1; ternary: 2 bits, code - 1;
integers: two's complement of the range's width), lane 0 in the low bits. The cocotb bench
(cocotb_bench.py, given "probes") records those beats at each stage's `o` port inside the
generated Verilog, and `decode` puts them back into IR tensors with the frame permutation the
planner used.

The debug design is the production design with one change by default: thresholds get stages
of their own (`plan(..., fuse=False)`), so the dense/conv accumulators are on a stream too;
`fuse=True` probes the production design, where a fused threshold hides its accumulator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ... import golden
from ...errors import EdgeError
from ...hw.specs import Values
from ...hw.toolchain import to_verilog
from ...ir.graph import Graph
from .generate import MANIFEST, TOP, VERILOG, assemble, manifest
from .plan import Folding, Plan, _advance, _chain, _drafts, _in_frame, plan
from .simulate import run_cocotb
from .stream_io import beats_per_inference, encode_inputs


@dataclass(frozen=True)
class Probe:
    """One stage's output stream and the IR tensor it carries."""

    stage: str  # instance name of the stage inside the top
    tensor: str
    shape: tuple[int, ...]  # IR shape of the tensor (no batch)
    frame: tuple[int, int, int]  # (H, W, C) as the stream orders it
    perm: np.ndarray  # [H, W, C] -> C-order flat index in the IR tensor
    lanes: int
    beats: int  # beats per pixel
    values: Values


def debug_plan(ir: Graph, pe: Folding = None, simd: Folding = None, fuse: bool = False) -> Plan:
    """The hardware plan of the debug design (callers may still edit its stages' ROMs)."""
    return plan(ir, pe, simd, fuse=fuse)


def probes_of(ir: Graph, p: Plan, fuse: bool = False) -> list[Probe]:
    """Which IR tensor each stage of `p` streams out, and the stream's layout."""
    if p.outputs is not None:  # a non-chain plan (dag.py) records it per stage
        return [Probe(name, tensor, tuple(lay.shape), tuple(lay.frame), lay.perm, lay.lanes,
                      lay.beats, lay.values)
                for name, out in zip(p.names, p.outputs, strict=True) if out is not None
                for tensor, lay in [out]]
    infos = ir.infos()
    frame, perm = _in_frame(infos[ir.layers[0].output])
    kind = "int"
    out: list[Probe] = []
    stages = iter(zip(p.names, p.stages, strict=True))
    for what, group in _drafts(_chain(ir), fuse):
        frame, perm, kind = _advance(what, group, frame, perm, infos, kind)
        if what == "reshape":
            continue
        name, spec = next(stages)
        tensor = group[-1].output
        out.append(Probe(name, tensor, tuple(infos[tensor].shape), frame, perm,
                         spec.out_lanes, spec.out_beats, spec.out_values))
    return out


def design(p: Plan) -> dict[str, str]:
    """Verilog and manifest of a (debug) plan, as `generate` writes them."""
    p, net, sched = assemble(p)
    return {VERILOG: to_verilog(net, TOP),
            MANIFEST: json.dumps(manifest(p, sched), indent=1, sort_keys=True) + "\n"}


def decode(probe: Probe, words: list[int], n: int) -> np.ndarray:
    """Beats of n inferences on one stage's stream -> int64 [n, *shape] in IR order."""
    h, w, c = probe.frame
    per = h * w * probe.beats
    if len(words) != n * per:
        raise EdgeError(f"fpga probe {probe.stage}: {len(words)} beats for {n} inferences, "
                        f"expected {n * per}")
    vb = probe.values.bits
    codes = np.array([[(int(word) >> (k * vb)) & ((1 << vb) - 1) for k in range(probe.lanes)]
                      for word in words], dtype=np.int64).reshape(n * per, probe.lanes)
    if probe.values.kind == "bipolar":
        vals = 2 * codes - 1
    elif probe.values.kind == "ternary":
        vals = codes - 1
    elif probe.values.signed:
        vals = np.where(codes >> (vb - 1), codes - (1 << vb), codes)
    else:
        vals = codes
    phys = vals.reshape(n, h, w, probe.beats * probe.lanes)[..., :c]
    flat = np.empty((n, h * w * c), dtype=np.int64)
    flat[:, probe.perm.reshape(-1)] = phys.reshape(n, -1)
    return flat.reshape((n, *probe.shape))


def run_probes(files: Mapping[str, str], probes: list[Probe], ir: Graph, x: np.ndarray,
               work_dir=None) -> dict[str, np.ndarray]:
    """Stream `x` through the Verilog under cocotb + Icarus; each probed tensor, by name."""
    info = json.loads(files[MANIFEST])
    q = golden.quantise_input(ir.layers[0], x)
    n = len(q)
    beats = encode_inputs(info["input"], q)
    n_out = n * beats_per_inference(info["output"])
    sched = info["schedule"]
    limit = 4 * (sched["cycles_per_inference"] + n * sched["initiation_interval"]) + 10_000
    res = run_cocotb(files[VERILOG], TOP, beats, n_out, limit, work_dir=work_dir,
                     probes=[pr.stage for pr in probes])
    records = res.get("probes")
    if records is None or len(records) != len(probes):
        raise EdgeError("fpga: the bench returned no probe records")
    return {pr.tensor: decode(pr, rec, n) for pr, rec in zip(probes, records, strict=True)}


def dump(ir: Graph, x: np.ndarray, pe: Folding = None, simd: Folding = None,
         fuse: bool = False, work_dir=None) -> dict[str, np.ndarray]:
    """Debug design, simulated: every stage's output tensor."""
    p = debug_plan(ir, pe, simd, fuse)
    return run_probes(design(p), probes_of(ir, p, fuse), ir, x, work_dir)
