"""The `edge-sdk` command line.

Every user-facing failure is an `EdgeError`: printed as one line on stderr, exit code 2, and
no partial output (files and folders are written to a temporary sibling and renamed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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
                    help="run what the targets compute: the factorizer head's integer decoder "
                         "(binary networks are integer either way)")

    sp = sub.add_parser("convert", help="convert a model for a target")
    model_arg(sp)
    sp.add_argument("--target", required=True, choices=TARGETS)
    sp.add_argument("-o", "--out", required=True, help="output folder")
    sp.add_argument("--board", help="board (cortex-m: qemu-mps2-an386 (default), "
                    "qemu-mps2-an385, nucleo-f446re; fpga: icebreaker)")
    sp.add_argument("--popcount", choices=("swar", "builtin"), default="swar",
                    help="cortex-m: popcount lowering (default: portable SWAR)")
    sp.add_argument("--library", action="store_true",
                    help="cortex-m: an embeddable C library (model.c/.h, kernels, CMakeLists.txt; "
                         "no main, no board files) instead of a firmware build")
    sp.add_argument("--pe", type=int, help="fpga: output neurons computed in parallel")
    sp.add_argument("--simd", type=int, help="fpga: input bits consumed per cycle")

    sp = sub.add_parser("simulate", help="run a batch through a build on its simulator")
    sp.add_argument("folder", help="build folder written by `convert --target cortex-m|fpga`")
    sp.add_argument("--input", required=True, help="input batch .npy")
    sp.add_argument("--output", required=True, help="where to write the output .npy")
    sp.add_argument("--check", action="store_true",
                    help="fail (exit 1) unless every output equals the golden model's")
    sp.add_argument("--board", help="cortex-m: simulate on another QEMU board than the one "
                    "given to convert (qemu-mps2-an386 = M4, qemu-mps2-an385 = M3)")

    sp = sub.add_parser("report", help="size, instructions/cycles, resources, Fmax of a build")
    sp.add_argument("folder")
    sp.add_argument("--json", action="store_true", help="machine-readable output")

    for name, text in (("build", "build firmware / bitstream for a board"),
                       ("flash", "program a board (needs a probe/board attached)")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("folder")
        sp.add_argument("--board", help="board (default: the one given to convert)")
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


def _short(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def cmd_inspect(args) -> int:
    from . import load
    from .reports.summary import as_json, format_table

    m = load(args.model, input_range=args.input_range)
    if m.ir is None:  # a network with a factorizer head
        from .reports.summary import format_factorizer

        print(json.dumps(m.summary(), indent=1, sort_keys=True) if args.json
              else format_factorizer(m.summary()))
        return 0
    print(as_json(m.ir) if args.json else format_table(m.ir))
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
    from . import load

    m = load(args.model, input_range=args.input_range)
    x = load_npy(args.input)
    outputs = m.run_outputs(x, fixed_point=args.fixed_point)
    y = next(iter(outputs.values()))
    save_outputs(args.output, outputs)
    if args.check:
        if m.ir is None:
            raise EdgeError(f"{m.path}: --check needs onnxruntime to run the whole model; it "
                            "cannot run the edge_sdk.BlockCodeFactorizer node")
        return _check_against_source(m, x, y)
    return 0


def _check_against_source(m, x: np.ndarray, y: np.ndarray) -> int:
    from .converters.onnx.reference import run_onnxruntime
    from .reports.compare import agreement

    if m.source is None:
        raise EdgeError(f"{m.path}: --check needs the source model (.onnx), not an IR folder")
    if m.source.source.get("format") == "qonnx":  # custom nodes: qonnx's own executor
        from .converters.onnx.qonnx_reference import run_qonnx

        a, label = agreement(y, run_qonnx(m.path, x)), "qonnx"
    elif m.source.source.get("format") == "tflite":  # no TensorFlow: a NumPy reading of the ops
        from .converters.tflite.reference import run_reference

        a, label = agreement(y, run_reference(m.path, x)), "the NumPy TFLite/LCE reference"
    else:
        a, label = agreement(y, run_onnxruntime(m.path, x)), "onnxruntime"
    print(f"golden vs {label}: {a.describe()}")
    return 0 if a.ok else 1


def cmd_convert(args) -> int:
    from . import load, targets

    if args.library and args.target != "cortex-m":
        raise EdgeError(f"--library makes a C library: it needs --target cortex-m, not "
                        f"{args.target}")
    m = load(args.model, input_range=args.input_range)
    if args.target == "ir":
        m.save_ir(args.out)
        print(f"wrote IR folder {args.out}", file=sys.stderr)
        return 0
    options = {k: v for k, v in (("board", args.board), ("pe", args.pe), ("simd", args.simd))
               if v is not None}
    if args.target == "cortex-m":
        options["popcount"] = args.popcount
        if args.library:
            options["library"] = True
    targets.convert(m, args.target, args.out, options)
    print(f"wrote {args.target} build folder {args.out}", file=sys.stderr)
    return 0


def cmd_simulate(args) -> int:
    from . import golden, targets

    x = load_npy(args.input)
    opts = {"board": args.board} if args.board else {}
    y, extra = targets.simulate(args.folder, x, **opts)
    save_outputs(args.output, {"output": y})
    for key, value in sorted(extra.items()):
        print(f"{key}: {value}")
    if args.check:
        _, ir = targets.open_build(args.folder)
        problem = targets.first_mismatch(y, golden.run(ir, x))
        if problem:
            print(f"edge-sdk: MISMATCH with the golden model: {problem}", file=sys.stderr)
            return 1
        print(f"target == golden model on all {len(x)} samples (bit-exact)")
    return 0


def cmd_report(args) -> int:
    from . import targets

    meta, _ = targets.open_build(args.folder)
    be = targets.backend(meta["target"])
    rep = be.report(Path(args.folder), meta)
    if args.json:
        print(json.dumps(rep, indent=1, sort_keys=True))
    else:
        print(be.format_report(rep))
    return 0


def _board_cmd(args, action: str) -> int:
    from . import targets

    meta, _ = targets.open_build(args.folder)
    be = targets.backend(meta["target"])
    board = args.board or meta.get("options", {}).get("board")
    print(getattr(be, action)(Path(args.folder), meta, board))
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
            "diff": _diff,
        }
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
