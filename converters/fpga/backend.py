"""The FPGA target as the CLI sees it: convert, simulate, report, build, flash.

`convert` writes the top-level Verilog (`edge_net.v`, one deterministic file) and its manifest
(`edge_net.json`: schedule, folding, stream formats). `simulate` streams every input through the
Verilog under cocotb + Icarus and measures cycles per inference and the initiation interval.
`report` runs yosys `synth_ice40` and nextpnr-ice40 (the pinned yowasp tools) for the UP5K and
the HX8K once and keeps the figures in `report.json`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph
from edge_sdk.reports.table import kv_table

from .board import build_bitstream
from .generate import MANIFEST, VERILOG, generate
from .simulate import simulate as run_cocotb
from .synth import DEVICES as SYNTH_DEVICES
from .synth import synth_report

DEVICES = ("up5k", "hx8k")
DEFAULT_BOARD = "icebreaker"
# "sim": simulation only (cocotb + Icarus, and the yosys/nextpnr report for both devices), no
# device limit on the weights' ROM, no bitstream: for models larger than an iCE40's block RAM.
BOARD_DEVICE = {"icebreaker": "up5k", "sim": None}
SIM_BOARD = "sim"
BRAM_BITS = 4096  # one iCE40 EBR


def rom_bits(layer: L.Dense | L.Conv2d) -> int:
    """Bits of the layer's weight ROM as the engine stores it (before PE/SIMD padding).

    8 bits per int8 code, 2 per ternary weight (sign + mask), 1 per binary weight. A grouped
    conv runs as a full conv with the other groups' weights masked (dag.py), so its ROM holds
    `groups` times the IR's weights, ternary (the masked zeros) whenever groups > 1."""
    w = layer.weights
    count = w.rows * w.k
    groups = getattr(layer, "groups", 1)
    if L.is_int8(w):
        return count * groups * 8
    if groups > 1:
        return count * groups * 2
    return count * (2 if w.ternary else 1)


def _check_fit(ir: Graph, board: str) -> None:
    """Refuse, with the numbers, weights that cannot live in the board's block RAM."""
    if board not in BOARD_DEVICE:
        raise EdgeError(f"fpga: unknown board {board!r} (known: {', '.join(BOARD_DEVICE)})")
    device = BOARD_DEVICE[board]
    if device is None:
        return
    brams = SYNTH_DEVICES[device][2]
    bits = sum(rom_bits(layer) for layer in ir.layers if isinstance(layer, (L.Dense, L.Conv2d)))
    if bits > brams * BRAM_BITS:
        raise EdgeError(
            f"fpga: the weights need {bits / 1024:.1f} kbit of ROM, the {board}'s "
            f"{device.upper()} has {brams} block RAMs of 4 kbit ({brams * BRAM_BITS / 1024:.0f} "
            f"kbit); the model does not fit this device; {smallest_device(bits)} (--board sim "
            "simulates it anyway)"
        )


# Block RAM of the Lattice parts a user would move to, smallest first (kbit, LUTs): iCE40
# (DS1040/DS1048: 4 kbit EBRs) and ECP5 (FPGA-DS-02012: 18 kbit EBRs). Only the iCE40s are
# targets of this SDK; the ECP5 rows tell how far a model is from fitting anything.
FIT_DEVICES = (
    ("iCE40 UP5K", 120, 5280),
    ("iCE40 HX8K", 128, 7680),
    ("ECP5 LFE5U-12F", 576, 12_000),
    ("ECP5 LFE5U-25F", 1008, 24_000),
    ("ECP5 LFE5U-45F", 1944, 44_000),
    ("ECP5 LFE5U-85F", 3744, 84_000),
)


def smallest_device(bits: int) -> str:
    """Which listed device's block RAM would first hold `bits` of weights (or none)."""
    for name, kbit, luts in FIT_DEVICES:
        if bits <= kbit * 1024:
            return (f"the smallest device whose block RAM holds them is the {name} ({kbit} kbit, "
                    f"{luts} LUTs)")
    name, kbit, _ = FIT_DEVICES[-1]
    return f"no listed device holds them (largest: {name}, {kbit} kbit)"


def convert(ir: Graph, options: dict, folder: Path) -> dict:
    _check_fit(ir, options.get("board", DEFAULT_BOARD))
    files, sched = generate(ir, options.get("pe"), options.get("simd"))
    for name, text in sorted(files.items()):
        (folder / name).write_text(text)
    return {"target": "fpga", "board": options.get("board", DEFAULT_BOARD),
            "schedule": {"cycles_per_inference": sched.cycles_per_inference,
                         "initiation_interval": sched.initiation_interval},
            "folding": json.loads(files[MANIFEST]).get("folding")}


def simulate(folder: Path, meta: dict, ir: Graph, q: np.ndarray, x: np.ndarray,
             board: str | None = None) -> tuple[np.ndarray, dict]:
    del q, board  # the simulator quantises x itself; one design whatever the board
    scores, cycles, ii = run_cocotb(folder, ir, x)
    sched = json.loads((folder / MANIFEST).read_text())["schedule"]
    extra = {
        "simulator": "cocotb + Icarus Verilog",
        "samples": len(x),
        "cycles_per_inference": f"{cycles} measured, {sched['cycles_per_inference']} scheduled",
        "initiation_interval": f"{ii} measured, {sched['initiation_interval']} scheduled",
    }
    return scores, extra


def _files(folder: Path) -> dict[str, str]:
    return {name: (folder / name).read_text() for name in (VERILOG, MANIFEST)}


def report(folder: Path, meta: dict) -> dict:
    path = folder / "report.json"
    rep = json.loads(path.read_text()) if path.is_file() else {}
    if "devices" not in rep:
        files = _files(folder)
        rep["devices"] = {d: synth_report(files, d, pnr=True, seeds=(1,)) for d in DEVICES}
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rep, indent=1, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
    return rep


def format_report(r: dict) -> str:
    s = r["schedule"]
    rows = [("schedule", (f"{s['cycles_per_inference']} cycles per inference, initiation "
                         f"interval {s['initiation_interval']} cycles"))]
    for dev, d in sorted(r.get("devices", {}).items()):
        fmax = d.get("fmax_mhz")
        speed = (f"Fmax {fmax:.1f} MHz, {fmax * 1e6 / s['initiation_interval']:,.0f} "
                 "inferences/s" if fmax else "did not place")
        fit = "" if d.get("fits", True) else \
            f"; does NOT fit: {'; '.join(d.get('fit_problems', []))}"
        rows.append((dev, (f"{d.get('lut4')} LUT4, {d.get('ff')} FF, {d.get('carry')} CARRY, "
                          f"{d.get('bram')} BRAM, {d.get('dsp', 0)} DSP; {speed}{fit}")))
    tools = next(iter(r.get("devices", {}).values()), {}).get("toolchain")
    if tools:
        rows.append(("toolchain", str(tools)))
    return kv_table(rows)


def _real_board(b: str) -> str:
    if b == SIM_BOARD:
        raise EdgeError("board 'sim' is simulation only: no bitstream; convert with --board "
                        "icebreaker for a device")
    return b


def build(folder: Path, meta: dict, board: str | None) -> str:
    b = _real_board(board or meta.get("options", {}).get("board") or DEFAULT_BOARD)
    out = build_bitstream(_files(folder), b, build_dir=folder / "build" / b)
    return f"built bitstream {out} for {b}"


def flash(folder: Path, meta: dict, board: str | None) -> str:
    b = _real_board(board or meta.get("options", {}).get("board") or DEFAULT_BOARD)
    bitstream = folder / "build" / b / "edge_board.bin"
    tool = shutil.which("openFPGALoader") or shutil.which("iceprog")
    if tool is None:
        raise EdgeError("no FPGA programmer found (openFPGALoader or iceprog); install one and "
                        f"attach the {b}")
    if not bitstream.exists():
        raise EdgeError(f"{folder}: no bitstream for {b}; run `edge-sdk build {folder}` first")
    probe = [tool, "--detect"] if tool.endswith("openFPGALoader") else [tool, "-t"]
    if subprocess.run(probe, capture_output=True, check=False, timeout=30).returncode != 0:
        raise EdgeError(f"no FPGA board attached ({Path(tool).name} found none); connect the "
                        f"{b} over USB and retry")
    args = [tool, "-b", "ice40_generic", str(bitstream)] if tool.endswith("openFPGALoader") \
        else [tool, str(bitstream)]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    if proc.returncode != 0:
        raise EdgeError(f"programming {b} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return f"flashed {bitstream} to {b}"
