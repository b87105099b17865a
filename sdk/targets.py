"""Build folders: what `convert --target cortex-m|fpga` writes and `simulate/report/build/flash`
read back, so each CLI step can run on its own.

A build folder holds `edge-sdk.json` (target, board, options), `ir/` (the lowered IR: the
golden model and the output's float ops come from it), the backend's generated files and
`report.json`. Backends live in `edge_sdk.converters.<target>.backend` and provide
`convert(ir, options, folder) -> report` (writing their files into `folder`),
`simulate(folder, meta, ir, q, x) -> (scores, extra)` (q: the quantised batch, x: as given), `report`, `format_report`, `build` and
`flash`;
the float post-ops and the comparison with the golden model are done here, once for all targets.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from . import golden
from .errors import EdgeError
from .ir import layers as L
from .ir import serialize
from .ir.graph import Graph
from .model import Model, write_folder

FORMAT = "edge-sdk-build"
VERSION = 1
BACKENDS = {"cortex-m": "cortexm", "fpga": "fpga"}


def backend(target: str):
    if target not in BACKENDS:
        raise EdgeError(f"unknown target '{target}' (known: {', '.join(BACKENDS)})")
    name = f"edge_sdk.converters.{BACKENDS[target]}.backend"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise EdgeError(f"target '{target}' is not available in this installation") from None
        raise EdgeError(f"target '{target}' needs the missing package '{exc.name}' (install "
                        "edge-sdk with its extras: pip install 'edge-sdk[cortexm,fpga]')") from None


FACTORIZER = "factorizer"  # meta["kind"] of a build whose model ends in the factorizer node
FACTORIZER_BACKENDS = {"cortex-m": "edge_sdk.converters.cortexm.factorizer.deployed",
                       "fpga": "edge_sdk.converters.fpga.factorizer_deployed"}


def factorizer_backend(target: str):
    """The module that builds a factorizer head (after its network, if any) for `target`:
    `convert(ir | None, head, options, folder) -> report` and
    `simulate(folder, meta, ir | None, head, inputs, ...) -> (indices, iterations, facts)`."""
    backend(target)  # the same "unknown target" / "missing package" errors
    name = FACTORIZER_BACKENDS[target]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise EdgeError(f"target '{target}' cannot run a factorizer head in this "
                            "installation") from None
        raise


def _convert_factorizer(model, target: str, out: str | Path, options: dict) -> Path:
    ir, head = model.deployed()
    bad = [k for k in ("library", "io") if options.get(k)]
    if bad:
        raise EdgeError(f"{model.path}: option '{bad[0]}' is not supported for a model with a "
                        "BlockCodeFactorizer head yet")
    be = factorizer_backend(target)
    meta = {"format": FORMAT, "version": VERSION, "target": target, "kind": FACTORIZER,
            "model": Path(model.path).stem, "source": {"file": Path(model.path).name},
            "options": options}

    def fill(tmp: Path) -> None:
        if ir is not None:
            serialize.save(ir, tmp / "ir")
        head.save(tmp)
        report = be.convert(ir, head, dict(options), tmp)
        (tmp / "edge-sdk.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")

    return write_folder(out, fill)


def convert(model: Model, target: str, out: str | Path, options: dict) -> Path:
    if hasattr(model, "deployed"):
        return _convert_factorizer(model, target, out, options)
    if options.get("factorizer_lanes"):
        raise EdgeError(f"{model.path}: factorizer_lanes applies to models that end in a "
                        "BlockCodeFactorizer node; this one does not")
    if model.ir is None:
        model.save_ir(out)  # raises the model's own "not supported yet" error
    be = backend(target)
    meta = {"format": FORMAT, "version": VERSION, "target": target,
            "model": model.ir.name, "source": model.ir.source, "options": options}

    def fill(tmp: Path) -> None:
        serialize.save(model.ir, tmp / "ir")
        report = be.convert(model.ir, dict(options), tmp)
        (tmp / "edge-sdk.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")

    return write_folder(out, fill)


def open_build(folder: str | Path) -> tuple[dict, Graph | None]:
    """(edge-sdk.json, the IR); the IR is None for a factorizer build without a network."""
    folder = Path(folder)
    path = folder / "edge-sdk.json"
    if not path.is_file():
        raise EdgeError(f"{folder}: not a build folder (no edge-sdk.json); run "
                        "`edge-sdk convert MODEL --target ... -o FOLDER` first")
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise EdgeError(f"{path}: unreadable ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise EdgeError(f"{path}: not a build folder of this edge-sdk version")
    if meta.get("kind") == FACTORIZER and not (folder / "ir").is_dir():
        return meta, None
    return meta, serialize.load(folder / "ir")


def head_of(folder: str | Path):
    from .factorizer.deploy import DeployedHead

    return DeployedHead.load(folder)


def factorizer_golden(ir: Graph | None, head, x: np.ndarray) -> dict[str, np.ndarray]:
    """What a factorizer build must output: `run --fixed-point` of the converted model."""
    from .factorizer_model import scores

    q = head.queries(scores(ir, x) if ir is not None else x)
    return head.outputs_of(*head.decode(q))


def simulate_factorizer(folder: str | Path, x: np.ndarray,
                        **opts) -> tuple[dict[str, np.ndarray], dict]:
    """Outputs by name (indices, iterations if the model has them) and the simulator's facts."""
    meta, ir = open_build(folder)
    head = head_of(folder)
    inputs = golden.quantise_input(ir.layers[0], x) if ir is not None else head.queries(x)
    if meta["target"] != "cortex-m":
        opts.pop("board", None)
    idx, its, facts = factorizer_backend(meta["target"]).simulate(
        Path(folder), meta, ir, head, inputs, **opts)
    return head.outputs_of(idx, its), facts


def scores_layer(ir: Graph) -> L.Scores:
    out = ir.producer(ir.outputs[0])
    if not isinstance(out, L.Scores):
        raise EdgeError("the IR's output is not a Scores layer")
    return out


def simulate(folder: str | Path, x: np.ndarray, **opts) -> tuple[np.ndarray, dict]:
    """Run a batch on the target's simulator; returns the model output (as `run`) and facts."""
    meta, ir = open_build(folder)
    q = golden.quantise_input(ir.layers[0], x)
    scores, extra = backend(meta["target"]).simulate(Path(folder), meta, ir, q, x, **opts)
    return output_of_scores(ir, scores, len(x)), extra


def output_of_scores(ir: Graph, scores, n: int) -> np.ndarray:
    """The model output from a target's integer scores: the Scores layer's float ops (after
    q * 2^-frac for fixed-point scores, issue #11), exactly as the golden model applies them."""
    layer = scores_layer(ir)
    info = ir.infos()[layer.inputs[0]]
    scores = np.asarray(scores).reshape((n,) + tuple(info.shape))
    if info.kind == "fixed":
        real = (scores.astype(np.float64) * 2.0 ** -info.frac).astype(np.float32)
        return golden.float_ops(real, layer.ops)
    return golden.float_ops(scores.astype(np.int64), layer.ops)


def first_mismatch(y: np.ndarray, ref: np.ndarray) -> str | None:
    if y.shape != ref.shape:
        return f"shape {list(y.shape)} vs golden {list(ref.shape)}"
    bad = np.argwhere(y != ref)
    if bad.size == 0:
        return None
    i = tuple(int(v) for v in bad[0])
    return (f"{len(np.unique(bad[:, 0]))} of {len(y)} samples differ; first at index {list(i)}: "
            f"target {y[i]!r} vs golden {ref[i]!r}")
