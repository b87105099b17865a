"""`edge-sdk diff`: where do two executors of the same model first disagree?

Three executors are lined up tensor by tensor on one batch:
- the source's own executor (onnxruntime with its optimiser off; qonnx's for QONNX models),
  asked for every ONNX tensor the frontend mapped onto an IR tensor (`source["tensors"]`);
- the golden model (`golden.run_all`: every tensor of the lowered IR);
- a target's debug build: Cortex-M firmware that keeps every layer's output in RAM, read under
  unicorn (converters/cortexm/debug_dumps.py), or the FPGA design with a probe on every stage's
  output stream under cocotb + Icarus (converters/fpga/probes.py).

Lowering renames and merges tensors, so an ONNX tensor is reproduced from golden tensors by
`references`: integer and ±1 tensors that survive lowering are compared exactly; float tensors
(an accumulator after the source's Mul/Add/BatchNormalization) are rebuilt as
`golden.float_ops(accumulator, ops)` and compared to float32 rounding. A target is compared
with the golden model on every tensor it keeps (exactly: targets compute only integers).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import golden
from .errors import EdgeError
from .ir import layers as L
from .ir.graph import Graph
from .model import Model, load
from .reports.diff import Comparison, Row, Site, compare_exact, compare_float, table

TARGETS = ("golden", "cortex-m", "fpga")
# source-form layer -> the lowered layer that computes the same tensor under the same name
_SAME = {L.Conv2d: L.Conv2d, L.Dense: L.Dense, L.Binarize: L.Threshold, L.MaxPool: L.MaxPool,
         L.Flatten: L.Flatten, L.Reshape: L.Reshape, L.Transpose: L.Transpose,
         L.GroupConv2d: L.GroupConv2d,
         L.AddTensors: L.AddTensors, L.PRelu: L.PRelu, L.GlobalAvgPool: L.GlobalAvgPool,
         L.Concat: L.Concat, L.AvgPool: L.AvgPool}


@dataclass(frozen=True)
class Reference:
    """ONNX tensor `onnx` = golden tensor `tensor`, after the float `ops` (none: exactly)."""

    onnx: str
    tensor: str
    ops: tuple[L.FloatOp, ...] = ()


def references(source: Graph, ir: Graph) -> list[Reference]:
    """How each mapped ONNX tensor is reproduced from the lowered graph's golden tensors.

    Tensors whose meaning lowering changed beyond that (none known) are left out rather
    than compared wrongly.
    """
    src = {layer.output: layer for layer in source.layers}
    low = {layer.output: layer for layer in ir.layers}
    memo: dict[str, tuple[str, tuple] | None] = {}

    def resolve(t: str) -> tuple[str, tuple] | None:
        if t not in memo:
            memo[t] = _resolve(t)
        return memo[t]

    def _resolve(t: str) -> tuple[str, tuple] | None:
        sp = src.get(t)
        if sp is None:
            return None
        if isinstance(sp, L.Input):
            return ("input", ())
        if isinstance(sp, L.Affine):
            base = resolve(sp.inputs[0])
            return None if base is None else (base[0], base[1] + tuple(sp.ops))
        if isinstance(sp, L.MaxPool):
            base = resolve(sp.inputs[0])
            if base is None:
                return None
            if base[1]:  # pooled float values: lowering moved the pool before the float ops
                pool = next((x for x in ir.layers
                             if isinstance(x, L.MaxPool) and x.inputs == [base[0]]), None)
                return None if pool is None else (pool.output, base[1])
        lp = low.get(t)
        if lp is not None and isinstance(lp, _SAME.get(type(sp), ())):
            return (t, ())
        if isinstance(lp, L.Scores) and not lp.ops:  # an integer output, renamed by FoldScores
            return (lp.inputs[0], ())
        return None

    seen: set[str] = set()
    out = []
    for name, tensor in source.source.get("tensors", {}).items():
        if tensor in seen:
            continue
        seen.add(tensor)
        r = resolve(tensor)
        if r is not None:
            out.append(Reference(name, r[0], r[1]))
    return out


def _site(ir: Graph, tensor: str, detail: str = "", ops: int = 0) -> Site:
    for i, layer in enumerate(ir.layers):
        if layer.output == tensor:
            return Site(i, layer.name, layer.kind, layer.source, detail, ops)
    raise KeyError(tensor)


def _terms(ir: Graph, tensor: str) -> int:
    """Terms summed into `tensor` (through pools): what float rounding of it can accumulate."""
    low = {layer.output: layer for layer in ir.layers}
    layer = low.get(tensor)
    while isinstance(layer, L.MaxPool):
        layer = low.get(layer.inputs[0])
    return layer.weights.k if isinstance(layer, (L.Dense, L.Conv2d)) else 1


def source_label(model: Model) -> str:
    fmt = model.source.source.get("format") if model.source is not None else None
    return "qonnx" if fmt == "qonnx" else "onnxruntime"


def source_vs_golden(model: Model, x: np.ndarray, atol: float = 0.0,
                     env: dict[str, np.ndarray] | None = None) -> Comparison:
    """Golden intermediates vs the source executor's (`env`: golden.run_all, if already run)."""
    label = source_label(model)
    n = len(x)
    if model.source is None:
        return Comparison("golden", label, n, skipped="no source model: give --source "
                          "MODEL.onnx for an IR folder")
    fmt = model.source.source.get("format")
    if fmt not in ("onnx", "qonnx"):
        return Comparison("golden", label, n, skipped=f"a {fmt} model has no per-tensor "
                          "reference executor here; only targets are compared")
    from .converters.onnx.intermediates import run_onnxruntime_all, run_qonnx_all

    refs = references(model.source, model.ir)
    env = golden.run_all(model.ir, x) if env is None else env
    run = run_qonnx_all if fmt == "qonnx" else run_onnxruntime_all
    values = run(model.path, x, [r.onnx for r in refs])
    rows = []
    for r in refs:
        if r.onnx not in values:
            continue
        got = env[r.tensor]
        if r.ops:
            got = golden.float_ops(got, list(r.ops))
        want = values[r.onnx]
        if want.size != got.size:
            raise EdgeError(f"{model.path}: tensor '{r.onnx}' has {want.size} values, IR tensor "
                            f"'{r.tensor}' has {got.size}; the IR does not come from this model")
        want = want.reshape(got.shape)
        floaty = bool(r.ops) or np.issubdtype(got.dtype, np.floating)  # real-valued layers
        if floaty:
            detail = f"+ float ops = '{r.onnx}'" if r.ops else ""
            bad = compare_float(got, want, _terms(model.ir, r.tensor), atol)
        else:
            detail = ""
            bad = compare_exact(got, want)
        rows.append(Row(_site(model.ir, r.tensor, detail, len(r.ops)), tuple(got.shape[1:]),
                        not floaty, bad))
    rows.sort(key=lambda row: row.site.key)
    return Comparison("golden", label, n, rows)


def compare_dumps(target: str, ir: Graph, env: dict[str, np.ndarray],
                  dumps: dict[str, np.ndarray]) -> Comparison:
    """A target's kept tensors vs the golden model's, exactly; unkept layers show as '-'."""
    rows = []
    for i, layer in enumerate(ir.layers):
        if isinstance(layer, (L.Input, L.Scores)):
            continue
        site = Site(i, layer.name, layer.kind, layer.source)
        want = env[layer.output]
        if layer.output not in dumps:
            rows.append(Row(site, tuple(want.shape[1:]), True, observed=False))
            continue
        rows.append(Row(site, tuple(want.shape[1:]), True,
                        compare_exact(dumps[layer.output], want)))
    return Comparison(target, "golden", len(next(iter(env.values()))), rows)


def target_dumps(target: str, ir: Graph, x: np.ndarray, work: Path, fuse: bool = False
                 ) -> dict[str, np.ndarray]:
    """Build the target's debug form in `work`, run `x`, return every tensor it keeps."""
    if target == "cortex-m":
        from .converters.cortexm import debug_dumps

        return debug_dumps.dump(ir, x, work / "cortex-m", fuse=fuse)
    if target == "fpga":
        from .converters.fpga import probes

        return probes.dump(ir, x, fuse=fuse, work_dir=work / "fpga")
    raise EdgeError(f"unknown diff target '{target}' (known: {', '.join(TARGETS)})")


def diff(model: Model, target: str, x: np.ndarray, *, atol: float = 0.0, fuse: bool = False,
         work: str | Path | None = None) -> list[Comparison]:
    """Golden vs the source, then (unless target is "golden") the target vs golden."""
    if target not in TARGETS:
        raise EdgeError(f"unknown diff target '{target}' (known: {', '.join(TARGETS)})")
    if model.ir is None:
        raise EdgeError(f"{model.path}: diff does not support models with a factorizer head yet")
    env = golden.run_all(model.ir, x)
    out = [source_vs_golden(model, x, atol, env)]
    if target == "golden":
        if out[0].skipped:
            raise EdgeError(f"{model.path}: cannot diff against the source: {out[0].skipped}")
        return out
    from .passes.fixed_point import has_real_valued

    # targets compute real-valued layers with the fixed-point rules: compare with that mode
    if has_real_valued(model.ir):
        env = golden.run_all(model.ir, x, fixed_point=True)
    if work is not None:
        out.append(compare_dumps(target, model.ir, env,
                                 target_dumps(target, model.ir, x, Path(work), fuse)))
        return out
    with tempfile.TemporaryDirectory(prefix="edge-diff-") as tmp:
        out.append(compare_dumps(target, model.ir, env,
                                 target_dumps(target, model.ir, x, Path(tmp), fuse)))
    return out


def with_source(model: Model, source: str | Path, input_range=None) -> Model:
    """`model` (e.g. an IR folder) with the source-form graph of the file it came from."""
    src = load(source, input_range=input_range)
    if src.source is None or src.ir is None:
        raise EdgeError(f"{source}: --source must be a model file (.onnx)")
    mine = [(type(x).__name__, x.output) for x in model.ir.layers]
    theirs = [(type(x).__name__, x.output) for x in src.ir.layers]
    if mine != theirs:
        raise EdgeError(f"{source}: does not match {model.path} (its layers differ)")
    return Model(src.source, model.ir, src.path)


# ---------------------------------------------------------------------------- CLI
def add_parser(sub) -> None:
    """The `diff` subcommand's arguments (kept here so cli.py only registers it)."""
    from .cli import _range

    sp = sub.add_parser("diff", help="first layer, channel and element where the golden model "
                        "differs from the source, or a target from the golden model")
    sp.add_argument("model", help="model file (.onnx, .tflite) or IR folder")
    sp.add_argument("--target", required=True, choices=TARGETS)
    sp.add_argument("--input", required=True, help="input batch .npy, [N, *input shape]")
    sp.add_argument("--input-range", type=_range, metavar="LO,HI",
                    help="integer range of the model input (as for convert)")
    sp.add_argument("--source", help="the .onnx an IR folder MODEL was converted from")
    sp.add_argument("--atol", type=float, default=0.0,
                    help="extra absolute tolerance for float tensors (default 0: float32 "
                         "rounding only)")
    sp.add_argument("--fused", action="store_true",
                    help="targets: keep thresholds fused as in the production build (their "
                         "accumulators are then not observable)")
    sp.add_argument("--keep", metavar="DIR", help="keep the target's debug build in DIR")


def cmd_diff(args) -> int:
    from .cli import load_npy

    if not np.isfinite(args.atol) or args.atol < 0:
        raise EdgeError(f"--atol must be a finite number >= 0, got {args.atol}")
    x = load_npy(args.input)
    model = load(args.model, input_range=args.input_range)
    if args.source:
        model = with_source(model, args.source, args.input_range)
    comps = diff(model, args.target, x, atol=args.atol, fuse=args.fused, work=args.keep)
    for c in comps:
        print(c.line())
    print()
    print(table(comps))
    if args.keep and args.target != "golden":
        print(f"debug build kept in {args.keep}", file=sys.stderr)
    return 1 if any(c.differs for c in comps) else 0
