"""The Cortex-M target as the CLI sees it: convert, simulate, report, build, flash.

`convert` writes the generated C (model.c/.h, kernels), a Makefile with the board's firmware,
builds the ELF for the board and measures it (arm-none-eabi-size, exact instruction counts under
unicorn on deterministic random inputs), so `report.json` holds real numbers. `simulate` runs
every input through the firmware under QEMU (semihosting files) and also counts instructions.
With the option `library` (`convert --library`), `convert` writes an embeddable library instead
(library.py: no firmware, no ELF), which `simulate`, `build` and `flash` refuse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.ir.graph import Graph
from edge_sdk.reports.table import kv_table

from . import boards, codegen, icount, library, qemu, toolchain, uart_io
from .makefile import write_makefile

ELF = "model.elf"
REPORT_SAMPLES = 8


def _board(options_or_meta: dict, override: str | None = None) -> boards.Board:
    opts = options_or_meta.get("options", options_or_meta)
    return boards.get_board(override or opts.get("board") or boards.DEFAULT_BOARD)


def _elf(folder: Path, board: boards.Board) -> Path:
    return folder / "build" / board.name / ELF


def _check_fit(info: codegen.ModelInfo, board: boards.Board) -> None:
    if info.arena_bytes > board.ram_bytes:
        raise EdgeError(f"cortex-m: the activation arena needs {info.arena_bytes} B of RAM, "
                        f"{board.name} has {board.ram_bytes} B")
    if info.weight_bytes > board.flash_bytes:
        raise EdgeError(f"cortex-m: the weights need {info.weight_bytes} B of flash, "
                        f"{board.name} has {board.flash_bytes} B")


def _inputs(info: codegen.ModelInfo, n: int, seed: int = 0) -> np.ndarray:
    lo, hi = info.input_range
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi + 1, size=(n, info.input_size)).astype(info.input_dtype)


def convert(ir: Graph, options: dict, folder: Path) -> dict:
    board = _board(options)
    cm = codegen.build(ir, popcount=options.get("popcount", "swar"))
    _check_fit(cm.info, board)
    if options.get("library"):
        return library.write(ir, cm, board, folder)
    for name, text in sorted(cm.files.items()):
        (folder / name).write_text(text)
    write_makefile(folder, board, sorted(n for n in cm.files if n.endswith(".c")))
    report = _measure(folder, ir, cm.info, board)
    if options.get("io") == "uart":  # a second ELF that serves `edge-sdk infer`
        report["uart"] = uart_io.write(folder, board)
    return report


def _measure(folder: Path, ir: Graph, info: codegen.ModelInfo, board: boards.Board) -> dict:
    elf = toolchain.build(folder, board, _elf(folder, board))
    sizes = toolchain.size(elf)
    report = {
        "target": "cortex-m",
        "board": board.name,
        "cpu": board.cpu,
        "size": sizes,
        "flash_bytes": sizes["text"] + sizes["data"],
        "ram_bytes": sizes["data"] + sizes["bss"],
        **info.facts(),
    }
    if board.cpu in icount.UNICORN_CPUS:  # unicorn runs edge_model_run from any board's ELF
        res = icount.count_instructions(elf, board, _inputs(info, REPORT_SAMPLES),
                                        info.output_size)
        counts = [int(c) for c in res.instructions]
        report["instructions_per_inference"] = {"min": min(counts), "max": max(counts),
                                                "mean": float(np.mean(counts)),
                                                "samples": len(counts), "counter": "unicorn"}
        if info.total_macs:
            report["instructions_per_mac"] = float(np.mean(counts)) / info.total_macs
    return report


def _refuse_library(folder: Path, meta: dict, action: str) -> None:
    if meta.get("options", {}).get("library"):
        raise EdgeError(f"{folder}: a library build (convert --library) has no firmware to "
                        f"{action}; build it into your firmware project (see its README.md), or "
                        "convert again without --library")


def simulate(folder: Path, meta: dict, ir: Graph, q: np.ndarray, x: np.ndarray,
             board: str | None = None, count: bool = True) -> tuple[np.ndarray, dict]:
    del x  # the firmware takes the quantised integers
    _refuse_library(folder, meta, "simulate")
    b = _board(meta, board)
    elf = _elf(folder, b)
    if not elf.exists():
        toolchain.build(folder, b, elf)
    io = toolchain.read_elf(elf).firmware_io()
    dtype = np.int8 if io is None or io.in_itemsize == 1 else np.int16
    x = q.reshape(len(q), -1).astype(dtype)
    out_size = int(np.prod(ir.infos()[ir.layers[-1].inputs[0]].shape))
    scores = qemu.run(elf, b, x, out_size)
    extra = {"simulator": f"qemu-system-arm -M {b.qemu_machine} ({b.cpu})",
             "samples": len(x)}
    if count:
        res = icount.count_instructions(elf, b, x, out_size)
        if not np.array_equal(res.outputs, scores):
            raise EdgeError("cortex-m: unicorn and QEMU disagree on the outputs")
        counts = np.asarray(res.instructions, dtype=np.int64)
        extra["instructions_per_inference"] = (f"mean {counts.mean():.0f}, min {counts.min()}, "
                                               f"max {counts.max()} (unicorn, exact)")
    return scores, extra


def report(folder: Path, meta: dict) -> dict:
    path = folder / "report.json"
    if not path.is_file():
        raise EdgeError(f"{folder}: no report.json; convert again")
    import json

    return json.loads(path.read_text())


def format_report(r: dict) -> str:
    rows = [("board", f"{r['board']} ({r['cpu']})")]
    if r.get("library"):
        rows.append(("build", ("C library (convert --library): sizes of the model's objects "
                     "alone, no firmware")))
    if "size" in r:
        rows += [
            ("flash", (f"{r['flash_bytes']} B (text {r['size']['text']}, data "
                       f"{r['size']['data']}); weights {r['weight_bytes']} B")),
            ("RAM", (f"{r['ram_bytes']} B (data + bss {r['size']['bss']}); arena "
                     f"{r['arena_bytes']} B"
                     + (f"; stack {r['size']['stack']} B" if "stack" in r["size"] else ""))),
        ]
    else:
        rows.append(("memory", (f"weights {r['weight_bytes']} B, arena {r['arena_bytes']} B "
                     "(arm-none-eabi-gcc absent: objects not measured)")))
    rows += [
        ("input", (f"{r['input']['elements']} x {r['input']['dtype']} in "
                  f"[{r['input']['range'][0]}, {r['input']['range'][1]}]")),
        ("MACs", f"{r['macs']} ({r['binary_macs']} binary)"),
    ]
    if r.get("uart"):
        rows.append(("uart", f"{r['uart']['elf']} for edge-sdk infer on {r['uart']['port']}"))
    ipi = r.get("instructions_per_inference")
    if ipi:
        rows.append(("instructions", (f"{ipi['mean']:.0f} per inference (min {ipi['min']}, max "
                                     f"{ipi['max']}, {ipi['samples']} samples, {ipi['counter']})")))
        rows.append(("per MAC", f"{r['instructions_per_mac']:.3f} instructions"))
    return kv_table(rows)


def build(folder: Path, meta: dict, board: str | None) -> str:
    _refuse_library(folder, meta, "build")
    b = _board(meta, board)
    elf = toolchain.build(folder, b, _elf(folder, b))
    if meta.get("options", {}).get("io") == "uart":
        elf = uart_io.build(folder, b)
    s = toolchain.size(elf)
    return f"built {elf} for {b.name}: text {s['text']} B, data {s['data']} B, bss {s['bss']} B"


def flash(folder: Path, meta: dict, board: str | None) -> str:
    _refuse_library(folder, meta, "flash")
    b = _board(meta, board)
    if b.pyocd_target is None:
        raise EdgeError(f"board {b.name} is simulated (QEMU); there is nothing to flash — use "
                        "`edge-sdk simulate`, or convert with --board nucleo-f446re")
    elf = _elf(folder, b)
    if meta.get("options", {}).get("io") == "uart":
        elf = uart_io.elf_path(folder, b)
        if not elf.exists():
            uart_io.build(folder, b)
    elif not elf.exists():
        toolchain.build(folder, b, elf)
    try:
        from pyocd.core.helpers import ConnectHelper
        from pyocd.flash.file_programmer import FileProgrammer
    except ImportError:
        raise EdgeError("flashing needs pyOCD (pip install 'edge-sdk[cortexm]')") from None
    probes = ConnectHelper.get_all_connected_probes(blocking=False, print_wait_message=False)
    if not probes:
        raise EdgeError(f"no debug probe attached: connect the {b.name}'s ST-LINK over USB "
                        "and retry (pyOCD found none)")
    with ConnectHelper.session_with_chosen_probe(target_override=b.pyocd_target,
                                                 unique_id=probes[0].unique_id) as session:
        FileProgrammer(session).program(str(elf), file_format="elf")
    return f"flashed {elf} to {b.name} via probe {probes[0].unique_id}"
