"""The Python API of edge-sdk, and the layer the `edge-sdk` CLI itself is written on.

One code path for both: every CLI command parses its arguments, calls these functions and
prints what they return, so a script gets exactly the numbers, files and one-line `EdgeError`s
the command line gets.

    import edge_sdk

    m = edge_sdk.load("model.onnx")               # import and lower to the IR
    y = m.run(x)                                  # golden model, integer-exact
    print(m.inspect().text)                       # layers, bit widths, memory
    b = m.convert("fpga", "out/", pe=8, simd=32)  # a Build: the folder `edge-sdk` reads too
    sim = b.simulate(x, check=True)               # the target's simulator vs the golden model
    assert sim.ok, sim.mismatch
    print(b.report().data)                        # the figures (dict), as `report --json`
    b = edge_sdk.open_build("out/")               # later, from another process

Stable: the names in `edge_sdk.__all__` and the methods and fields documented here. This module
imports nothing heavy at import time (the backends pull in TVM or Amaranth when first used),
and nothing from `model`, which builds its `Model` on `ModelAPI` below.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from . import progress
from .errors import EdgeError

if TYPE_CHECKING:
    from .ir.graph import Graph
    from .model import Model
    from .reports.compare import Agreement

TARGETS = ("ir", "cortex-m", "fpga")
# Which keyword options each target takes; any other given option is refused, never ignored.
TARGET_OPTIONS = {"ir": (), "cortex-m": ("board", "popcount", "library", "io"),
                  "fpga": ("board", "pe", "simd", "factorizer_lanes")}
Folding = int | list[int | None] | dict[str, int] | None


def load(path: str | os.PathLike, input_range: tuple[int, int] | None = None,
         calibration: np.ndarray | None = None) -> Model:
    """Import a model file (.onnx, QONNX, .tflite) or an IR folder, lowered and ready to run.

    `input_range` (lo, hi) narrows the integer range of a float input (default -255..255);
    a real-valued input is refused, never rounded. `calibration` (an array [N, *input shape])
    quantises the float (real-weight) layers of a plain ONNX or .tflite model to 8 bits
    (issue #11).
    Raises EdgeError on anything it cannot read.
    """
    from .model import load as load_model

    if not isinstance(path, (str, os.PathLike)):
        raise EdgeError(f"load: expected a model path (str or Path), got {type(path).__name__}")
    with progress.step(f"reading {Path(path).name}"):
        return load_model(path, input_range=_input_range(input_range), calibration=calibration)


def _input_range(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise EdgeError(f"input_range: expected (lo, hi), two integers, got {value!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (lo, hi)):
        raise EdgeError(f"input_range: expected (lo, hi), two integers, got {value!r}")
    if lo > hi:
        raise EdgeError(f"input_range: empty range [{lo}, {hi}]")
    return int(lo), int(hi)


@dataclass(frozen=True)
class Inspection:
    """`inspect`: `data` is what `inspect --json` prints, `text` the table it prints."""

    data: dict
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SourceCheck:
    """The golden model's output against the source format's own executor on one batch."""

    reference: str  # "onnxruntime", "qonnx" or "the NumPy TFLite/LCE reference"
    agreement: Agreement

    @property
    def ok(self) -> bool:
        """Bit-exact, or equal to float32 rounding with the same argmax (see reports.compare)."""
        return self.agreement.ok

    def __str__(self) -> str:
        return f"golden vs {self.reference}: {self.agreement.describe()}"


class ModelAPI:
    """What every model `load` returns can do beyond `run`: inspect, check, convert.

    A mixin so that plain networks (`Model`) and factorizer-head networks share one surface;
    it needs `ir`, `source`, `path` and `run` from the class it is mixed into.
    """

    ir: Graph | None
    source: Graph | None
    path: str

    def inspect(self) -> Inspection:
        """Layers, kinds, shapes, bit widths, parameters and memory (what `inspect` shows)."""
        from .reports import summary

        if self.ir is None:  # a network with a factorizer head
            s = self.summary()
            return Inspection(s, summary.format_factorizer(s))
        return Inspection(summary.inspect_data(self.ir), summary.format_table(self.ir))

    def check(self, x: np.ndarray, y: np.ndarray | None = None) -> SourceCheck:
        """Compare the golden output `y` (computed if not given) with the source's executor.

        onnxruntime for ONNX, qonnx's executor for QONNX (custom nodes), a NumPy reading of the
        ops for TFLite/LCE. What `run --check` prints; `ok` is its exit status.
        """
        from .reports.compare import agreement

        if self.ir is None:
            raise EdgeError(f"{self.path}: --check needs onnxruntime to run the whole model; it "
                            "cannot run the edge_sdk.BlockCodeFactorizer node")
        if self.source is None:
            raise EdgeError(f"{self.path}: --check needs the source model (.onnx), not an IR "
                            "folder")
        y = self.run(x) if y is None else y
        fmt = self.source.source.get("format")
        if fmt == "qonnx":
            from .converters.onnx.qonnx_reference import run_qonnx as reference

            label = "qonnx"
        elif fmt == "tflite":
            from .converters.tflite.reference import run_reference as reference

            label = "the NumPy TFLite/LCE reference"
        else:
            from .converters.onnx.reference import run_onnxruntime as reference

            label = "onnxruntime"
        with progress.step(f"{label} on {len(x)} samples"):
            ref = reference(self.path, x)
        return SourceCheck(label, agreement(y, ref))

    @overload
    def convert(self, target: Literal["ir"], out: str | os.PathLike) -> Path: ...

    @overload
    def convert(self, target: Literal["cortex-m", "fpga"], out: str | os.PathLike, *,
                board: str | None = None, popcount: str | None = None, library: bool = False,
                pe: Folding = None, simd: Folding = None, io: str | None = None,
                factorizer_lanes: dict | None = None) -> Build: ...

    @overload
    def convert(self, target: str, out: str | os.PathLike, *, board: str | None = None,
                popcount: str | None = None, library: bool = False, pe: Folding = None,
                simd: Folding = None, io: str | None = None,
                factorizer_lanes: dict | None = None) -> Build | Path: ...

    def convert(self, target: str, out: str | os.PathLike, *, board: str | None = None,
                popcount: str | None = None, library: bool = False, pe: Folding = None,
                simd: Folding = None, io: str | None = None,
                factorizer_lanes: dict | None = None) -> Build | Path:
        """Write `out` for `target` ("ir", "cortex-m", "fpga") and return what was written.

        "ir": the lowered IR folder (JSON + .npy), returned as its Path. "cortex-m" and "fpga":
        a build folder, returned as a `Build`. Options, each refused on the other target:
        board (cortex-m: qemu-mps2-an386 (default), qemu-mps2-an385, qemu-mps2-an500 (M7),
        nucleo-f446re, nucleo-f746zg; fpga:
        icebreaker (default), sim: simulation only, no device limit), popcount ("swar" default,
        "builtin"), library (cortex-m: an embeddable C
        library, no firmware), pe / simd (fpga folding: one int, a list per layer or a dict by
        layer name; default: chosen for the device), io (cortex-m: "uart" also builds
        build/<board>/model-uart.elf, the firmware `edge-sdk infer` drives), factorizer_lanes
        (fpga, a model ending in the factorizer node: {"lanes": k} for the default decoder,
        {"lanes": k, "corr_lanes": k} for published; default: the smallest that fit). The folder is
        written atomically: on any error nothing is left at `out`.
        """
        from . import targets

        given = {"board": board, "popcount": popcount, "library": library or None,
                 "pe": pe, "simd": simd, "io": io, "factorizer_lanes": factorizer_lanes}
        options = {k: v for k, v in given.items() if v is not None}
        if target not in TARGET_OPTIONS:
            raise EdgeError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
        wrong = [k for k in options if k not in TARGET_OPTIONS[target]]
        if wrong:
            allowed = ", ".join(TARGET_OPTIONS[target]) or "none"
            raise EdgeError(f"option {wrong[0]!r} does not apply to target {target!r} (its "
                            f"options: {allowed})")
        if io not in (None, "uart"):
            raise EdgeError(f"io: expected 'uart' (or None), got {io!r}")
        if io and library:
            raise EdgeError("io='uart' builds firmware; a library (library=True) has none")
        if not isinstance(library, bool):
            raise EdgeError(f"library: expected True or False, got {library!r}")
        if board is not None and not isinstance(board, str):
            raise EdgeError(f"board: expected a board name, got {board!r}")
        if target == "cortex-m":
            options.setdefault("popcount", "swar")
        name = Path(self.path).name
        with progress.step(f"converting {name} for {target}"):
            if target == "ir":
                return self.save_ir(out)
            targets.convert(self, target, out, options)
        return open_build(out)


@dataclass(frozen=True, eq=False)
class Simulation:
    """A batch run on a target's simulator: `output` has the shape, dtype and values of
    `Model.run` when the target is right; `facts` are what the simulator measured (samples,
    instructions or cycles per inference); `mismatch` says where the output first differs from
    the golden model (None if it does not, or if `checked` is False)."""

    output: np.ndarray
    facts: dict[str, Any]
    checked: bool
    mismatch: str | None = None
    outputs: dict[str, np.ndarray] | None = None  # every output by name (factorizer builds)

    @property
    def ok(self) -> bool:
        return self.mismatch is None


@dataclass(frozen=True, eq=False)
class Report:
    """A build's figures: `data` is `report.json` (what `report --json` prints), `text` the
    table `report` prints. Cortex-M: flash, RAM, arena, instructions per inference and per
    MAC; FPGA: schedule, and per device LUT4/FF/BRAM and Fmax (synthesised on first use)."""

    target: str
    data: dict
    text: str

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1, sort_keys=True, default=str)


@dataclass(frozen=True, eq=False)
class Build:
    """A build folder written by `convert` for cortex-m or fpga, read back.

    Holds the folder (absolute), its `edge-sdk.json` (`meta`: target, model, options) and the lowered IR
    it was made from, so each step (simulate, report, build, flash) can run on its own, in
    another process, days later, exactly as the CLI's separate commands do.
    """

    folder: Path
    meta: dict = field(repr=False)
    ir: Graph | None = field(repr=False)  # None: a factorizer head with no network before it

    @property
    def target(self) -> str:
        return self.meta["target"]

    @property
    def is_factorizer(self) -> bool:
        """The model ends in the BlockCodeFactorizer node (`factorizer.json` in the folder)."""
        from .targets import FACTORIZER

        return self.meta.get("kind") == FACTORIZER

    @property
    def options(self) -> dict:
        return dict(self.meta.get("options", {}))

    def run(self, x: np.ndarray) -> np.ndarray:
        """The golden model of the IR in this folder: what `simulate` must reproduce (for a
        factorizer build: the indices of `run --fixed-point`; `run_outputs` has them all)."""
        from . import golden

        if self.is_factorizer:
            return next(iter(self.run_outputs(x).values()))
        from .passes.fixed_point import has_real_valued

        # targets compute real-valued layers with the fixed-point rules (run --fixed-point)
        return golden.run(self.ir, x, fixed_point=has_real_valued(self.ir))

    def run_outputs(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name of the golden model of this folder."""
        from . import targets

        if not self.is_factorizer:
            return {"output": self.run(x)}
        return targets.factorizer_golden(self.ir, targets.head_of(self.folder), np.asarray(x))

    def simulate(self, x: np.ndarray, *, check: bool = False,
                 board: str | None = None) -> Simulation:
        """Run the batch `x` on the target's simulator: QEMU (+ unicorn instruction counts)
        for cortex-m, cocotb + Icarus on the Verilog for fpga. `check` also runs the golden
        model and fills `mismatch`; `board` (cortex-m) simulates another QEMU board."""
        from . import targets

        opts = {"board": board} if board else {}
        if self.is_factorizer:
            return self._simulate_factorizer(x, check, opts)
        with progress.step(f"simulating {len(np.asarray(x))} samples on {self.target}"):
            y, facts = targets.simulate(self.folder, x, **opts)
        if not check:
            return Simulation(y, facts, False)
        with progress.step("golden model"):
            ref = self.run(x)
        return Simulation(y, facts, True, targets.first_mismatch(y, ref))

    def _simulate_factorizer(self, x: np.ndarray, check: bool, opts: dict) -> Simulation:
        from . import targets

        x = np.asarray(x)
        with progress.step(f"simulating {len(x)} samples on {self.target}"):
            outs, facts = targets.simulate_factorizer(self.folder, x, **opts)
        first = next(iter(outs.values()))
        if not check:
            return Simulation(first, facts, False, outputs=outs)
        with progress.step("golden model (fixed point)"):
            ref = self.run_outputs(x)
        problem = next((f"{name}: {p}" for name in ref
                        if (p := targets.first_mismatch(outs[name], ref[name]))), None)
        return Simulation(first, facts, True, problem, outputs=outs)

    def report(self) -> Report:
        """The build's figures; the first FPGA report runs yosys and nextpnr (minutes)."""
        from . import targets

        if self.is_factorizer:
            return self._factorizer_report()
        be = targets.backend(self.target)
        what = " (synthesis and place and route once)" if self.target == "fpga" else ""
        with progress.step(f"{self.target} report{what}"):
            data = be.report(self.folder, self.meta)
        return Report(self.target, data, be.format_report(data))

    def _factorizer_report(self) -> Report:
        from . import targets
        from .reports.table import kv_table

        be = targets.factorizer_backend(self.target)
        with progress.step(f"{self.target} report"):
            if hasattr(be, "report"):
                data = be.report(self.folder, self.meta)
            else:
                data = json.loads((self.folder / "report.json").read_text())
        rows = [(k, str(v)) for k, v in sorted(data.items()) if not isinstance(v, (dict, list))]
        return Report(self.target, data, kv_table(rows or [("target", self.target)]))

    def write_html(self, path: str | os.PathLike | None = None) -> Path:
        """One self-contained HTML page (tables, plots as embedded PNGs) of the report;
        default `<folder>/report.html`. Written atomically: no partial file on any error."""
        from .model import write_file
        from .reports import html

        if self.is_factorizer:
            raise EdgeError(f"{self.folder}: report --html does not cover factorizer builds yet "
                            "(report and report --json do)")
        rep = self.report()
        target = Path(path) if path else self.folder / "report.html"
        with progress.step(f"rendering {target.name}"):
            page = html.render(self.folder, self.meta, rep.data, self.ir)
            return write_file(target, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))

    def build(self, board: str | None = None) -> str:
        """Firmware (cortex-m ELF) or bitstream (fpga) for `board` (default: convert's)."""
        return self._board_step("build", board)

    def flash(self, board: str | None = None) -> str:
        """Program an attached board (pyOCD probe / openFPGALoader or iceprog)."""
        return self._board_step("flash", board)

    def _board_step(self, action: str, board: str | None) -> str:
        from . import targets

        if self.is_factorizer:
            raise EdgeError(f"{self.folder}: `{action}` for a board is not available for "
                            "factorizer builds yet (convert and simulate are)")
        be = targets.backend(self.target)
        board = board or self.options.get("board")
        with progress.step(f"{action} for {board or self.target}"):
            return getattr(be, action)(self.folder, self.meta, board)


def open_build(folder: str | os.PathLike) -> Build:
    """Read back a build folder written by `convert --target cortex-m|fpga` (or `convert`)."""
    from . import targets

    if not isinstance(folder, (str, os.PathLike)):
        raise EdgeError(f"open_build: expected a folder path, got {type(folder).__name__}")
    meta, ir = targets.open_build(folder)
    return Build(Path(folder).absolute(), meta, ir)  # still valid after a chdir
