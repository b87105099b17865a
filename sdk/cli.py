"""The `edge-sdk` command line.

Every user-facing failure is an `EdgeError`: printed as one line on stderr, exit code 2, and
no partial output (files and folders are written to a temporary sibling and renamed).
The commands are thin wrappers over the Python API (`api.py`: load, Model.convert, open_build,
Build.simulate/report/...): they read arguments and .npy files, call it, and print. Long steps
show rich progress bars on stderr when it is a terminal (never with --json, never on a pipe).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from .errors import EdgeError

TARGETS = ("ir", "cortex-m", "fpga")


def _range(text: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected LO,HI (two integers)") from None
    if lo > hi:
        raise argparse.ArgumentTypeError(f"empty range [{lo}, {hi}]")
    return lo, hi


def _lanes(text: str) -> dict:
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected K or K,C (integers)") from None
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise argparse.ArgumentTypeError("expected K or K,C (integers >= 1)")
    return dict(zip(("lanes", "corr_lanes"), vals, strict=False))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-sdk", description=__doc__.splitlines()[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"edge-sdk {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def model_arg(sp):
        sp.add_argument("model", help="model file (.onnx, .tflite) or IR folder")
        sp.add_argument("--input-range", type=_range, metavar="LO,HI",
                        help="integer range of the model input (default: from the input type; "
                             "float inputs -255,255)")
        sp.add_argument("--calibrate", metavar="X.npy",
                        help="calibration inputs [N, ...]: quantise float Conv/Gemm/MatMul "
                             "(ONNX) or CONV_2D/FULLY_CONNECTED (.tflite) layers with real "
                             "weights to 8 bits")

    sp = sub.add_parser("inspect", help="table of layers, bit widths, parameters and memory")
    model_arg(sp)
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    sp = sub.add_parser("run", help="golden model on a batch (.npy in, .npy out)")
    model_arg(sp)
    sp.add_argument("--input", required=True, help="input batch .npy, [N, *input shape]")
    sp.add_argument("--output", required=True,
                    help="where to write the output: .npy (the first output) or .npz (all "
                         "outputs by name)")
    sp.add_argument("--check", action="store_true",
                    help="also run onnxruntime (qonnx's executor for QONNX models) on the "
                         "original model and fail (exit 1) unless the outputs agree")
    sp.add_argument("--fixed-point", action="store_true",
                    help="run what the targets compute: the fixed-point rules of real-valued "
                         "layers (sdk/fixedpoint.py) and the factorizer head's integer block "
                         "softmax and decoder (pure binary networks are integer either way)")

    sp = sub.add_parser("convert", help="convert a model for a target")
    model_arg(sp)
    sp.add_argument("--target", required=True, choices=TARGETS)
    sp.add_argument("-o", "--out", required=True, help="output folder")
    sp.add_argument("--board", help="board (cortex-m: qemu-mps2-an386 (default), "
                    "qemu-mps2-an385, qemu-mps2-an500, nucleo-f446re, nucleo-f746zg; fpga: "
                    "icebreaker (default), sim (simulation only: no device limit, no bitstream))")
    sp.add_argument("--popcount", choices=("swar", "builtin"),
                    help="cortex-m: popcount lowering (default: swar, portable C)")
    sp.add_argument("--library", action="store_true",
                    help="cortex-m: an embeddable C library (model.c/.h, kernels, CMakeLists.txt; "
                         "no main, no board files) instead of a firmware build")
    sp.add_argument("--io", choices=("uart",),
                    help="cortex-m: also build model-uart.elf, the firmware that `edge-sdk infer` "
                         "drives over the board's UART")
    sp.add_argument("--pe", type=int, help="fpga: output neurons computed in parallel")
    sp.add_argument("--simd", type=int, help="fpga: input bits consumed per cycle")
    sp.add_argument("--factorizer-lanes", type=_lanes, metavar="K[,C]",
                    help="fpga, factorizer head: decoder lanes K (and correlation lanes C for "
                         "the published decoder); default: the smallest that fit the UP5K")

    sp = sub.add_parser("simulate", help="run a batch through a build on its simulator")
    sp.add_argument("folder", help="build folder written by `convert --target cortex-m|fpga`")
    sp.add_argument("--input", required=True, help="input batch .npy")
    sp.add_argument("--output", required=True,
                    help="where to write the output: .npy (the first output) or .npz (all "
                         "outputs by name, e.g. a factorizer's indices and iterations)")
    sp.add_argument("--check", action="store_true",
                    help="fail (exit 1) unless every output equals the golden model's (for a "
                         "factorizer head: `run --fixed-point`)")
    sp.add_argument("--board", help="cortex-m: simulate on another QEMU board than the one "
                    "given to convert (qemu-mps2-an386 = M4, qemu-mps2-an385 = M3)")

    sp = sub.add_parser("report", help="size, instructions/cycles, resources, Fmax of a build")
    sp.add_argument("folder")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--html", nargs="?", const="", metavar="FILE",
                    help="also write the tables and plots as one self-contained HTML page "
                         "(default FILE: FOLDER/report.html)")

    for name, text in (("build", "build firmware / bitstream for a board"),
                       ("flash", "program a board (needs a probe/board attached)")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("folder")
        sp.add_argument("--board", help="board (default: the one given to convert)")
    sp = sub.add_parser("infer", help="run a batch on a device over a serial port (framed "
                        "protocol; firmware from convert --io uart, or the FPGA bitstream)")
    sp.add_argument("folder", help="the build folder the device was flashed from")
    sp.add_argument("--port", required=True,
                    help="serial port: /dev/ttyACM0, /dev/pts/N (QEMU -serial pty), or a "
                         "pyserial URL such as socket://host:port")
    sp.add_argument("--input", required=True, help="input batch .npy")
    sp.add_argument("--output", required=True, help="where to write the output .npy")
    sp.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200)")
    sp.add_argument("--timeout", type=float, default=3.0,
                    help="seconds to wait for each answer beyond its time on the wire "
                         "(default 3)")
    sp.add_argument("--check", action="store_true",
                    help="fail (exit 1) unless every output equals the golden model's")
    from .diff import add_parser as add_diff

    add_diff(sub)
    return p


def load_npy(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise EdgeError(f"{path}: no such input file")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise EdgeError(f"{path}: not a readable .npy array ({_short(exc)})") from None
    if not isinstance(arr, np.ndarray):
        raise EdgeError(f"{path}: holds several arrays (.npz); give one .npy array")
    return arr


def _calibration(args) -> np.ndarray | None:
    path = getattr(args, "calibrate", None)
    return None if path is None else load_npy(path)


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def cmd_inspect(args) -> int:
    from . import load

    found = load(args.model, input_range=args.input_range,
                 calibration=_calibration(args)).inspect()
    print(json.dumps(found.data, indent=1, sort_keys=True) if args.json else found.text)
    return 0


def save_outputs(path: str, outputs: dict[str, np.ndarray]) -> None:
    """.npz: every output by name; otherwise .npy of the first. Never a partial file."""
    from .model import write_file

    everything = path.lower().endswith(".npz")
    first = next(iter(outputs.values()))

    def write(tmp):
        with open(tmp, "wb") as fh:
            if everything:
                np.savez(fh, **outputs)
            else:
                np.save(fh, first, allow_pickle=False)

    write_file(path, write)
    shown = ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in outputs.items()) \
        if everything else f"{list(first.shape)} {first.dtype}"
    print(f"wrote {path}: {shown}", file=sys.stderr)


def cmd_run(args) -> int:
    from . import load, progress

    m = load(args.model, input_range=args.input_range, calibration=_calibration(args))
    x = load_npy(args.input)
    with progress.step(f"golden model on {len(x)} samples"):
        outputs = m.run_outputs(x, fixed_point=args.fixed_point)
    y = next(iter(outputs.values()))
    save_outputs(args.output, outputs)
    if args.check:
        checked = m.check(x, y)
        print(checked)
        return 0 if checked.ok else 1
    return 0


def cmd_convert(args) -> int:
    from . import load

    if args.library and args.target != "cortex-m":
        raise EdgeError(f"--library makes a C library: it needs --target cortex-m, not "
                        f"{args.target}")
    m = load(args.model, input_range=args.input_range, calibration=_calibration(args))
    if args.target == "ir":
        m.convert("ir", args.out)
        print(f"wrote IR folder {args.out}", file=sys.stderr)
        return 0
    m.convert(args.target, args.out, board=args.board, popcount=args.popcount,
              library=args.library, pe=args.pe, simd=args.simd, io=args.io,
              factorizer_lanes=args.factorizer_lanes)
    print(f"wrote {args.target} build folder {args.out}", file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from . import open_build

    x = load_npy(args.input)
    build = open_build(args.folder)
    sim = build.simulate(x, check=args.check, board=args.board)
    save_outputs(args.output, sim.outputs or {"output": sim.output})
    for key, value in sorted(sim.facts.items()):
        print(f"{key}: {value}")
    if sim.checked:
        if not sim.ok:
            print(f"edge-sdk: MISMATCH with the golden model: {sim.mismatch}", file=sys.stderr)
            return 1
        print(f"target == golden model on all {len(x)} samples (bit-exact)")
    return 0


def cmd_report(args) -> int:
    from . import open_build

    build = open_build(args.folder)
    rep = build.report()
    print(json.dumps(rep.data, indent=1, sort_keys=True) if args.json else rep.text)
    if args.html is not None:
        path = build.write_html(args.html or None)
        print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_infer(args) -> int:
    from . import progress, targets
    from .infer import infer

    if targets.open_build(args.folder)[0].get("kind") == targets.FACTORIZER:
        raise EdgeError(f"{args.folder}: `infer` does not drive factorizer builds yet "
                        "(simulate does)")
    x = load_npy(args.input)
    with progress.step(f"{len(x)} samples over {args.port}", total=len(x)) as advance:
        y, facts = infer(args.folder, args.port, x, baud=args.baud, timeout=args.timeout,
                         progress=lambda done, total: advance())
    save_outputs(args.output, {"output": y})
    for key, value in sorted(facts.items()):
        print(f"{key}: {value}")
    if args.check:
        from . import open_build

        problem = targets.first_mismatch(y, open_build(args.folder).run(x))
        if problem:
            print(f"edge-sdk: MISMATCH with the golden model: {problem}", file=sys.stderr)
            return 1
        print(f"device == golden model on all {len(x)} samples (bit-exact)")
    return 0


def _board_cmd(args, action: str) -> int:
    from . import open_build

    print(getattr(open_build(args.folder), action)(args.board))
    return 0


def _diff(args) -> int:
    from .diff import cmd_diff

    return cmd_diff(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {
            "inspect": cmd_inspect, "run": cmd_run, "convert": cmd_convert,
            "simulate": cmd_simulate, "report": cmd_report,
            "build": lambda a: _board_cmd(a, "build"), "flash": lambda a: _board_cmd(a, "flash"),
            "diff": _diff, "infer": cmd_infer,
        }
        from . import progress

        bars = nullcontext() if getattr(args, "json", False) else progress.bars()
        with bars:
            return commands[args.cmd](args)
    except EdgeError as exc:
        print(f"edge-sdk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-sdk: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        if os.environ.get("EDGE_SDK_DEBUG"):
            raise
        print(f"edge-sdk: internal error: {type(exc).__name__}: {_short(exc)} "
              "(set EDGE_SDK_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
