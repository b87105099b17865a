"""Issue #11's hardware targets for a QuickNet-style network at CIFAR size (random weights).

    nice .venv/bin/python bench/quicknet_targets.py            # the full table
    nice .venv/bin/python bench/quicknet_targets.py --quick    # smaller widths (16-32-64-128)

The network is examples/quicknet/quicknet.py (QuickNet's block structure, widths 32-64-128-256,
32x32x3 input, 10 classes), exported to ONNX with torch's dynamo exporter. Measured here:

- golden model: `run` (float32 real-valued layers) against onnxruntime on the same inputs, and
  how often `run --fixed-point` (what the targets compute) agrees with it on the argmax;
- Cortex-M: the build for the NUCLEO-F746ZG (STM32F746: 1 MiB flash, 320 KiB RAM) with its
  flash and RAM against the board's, instructions per inference counted by unicorn (Cortex-M7)
  on the F746 ELF; the same model under QEMU (mps2-an500, Cortex-M7) compared with the
  fixed-point golden model on every input (bit-exact or the bench fails), and the Cortex-M4
  count for comparison with the other benches;
- int8 baseline: the same network with float convolutions and no signs
  (`quicknet.py --float`), quantised by the SDK with a calibration set of random images
  (`--calibrate`: int8 weights per channel, int8 activations per tensor, int32 accumulators,
  TVM-generated int8 kernels), measured the same way (F746 fit, Cortex-M7 instructions,
  QEMU bit-exact with its own `run --fixed-point`);
- FPGA: `convert --target fpga` for the iCEBreaker (iCE40 UP5K) — the folding that fits, or
  the refusal with its resource numbers and the smallest device that would hold the weights.

Writes bench/results/quicknet_targets.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edge_sdk
from edge_sdk.converters.cortexm import boards, icount
from edge_sdk.converters.onnx.reference import run_onnxruntime
from edge_sdk.errors import EdgeError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "quicknet"))
RESULTS = ROOT / "bench" / "results"
F746 = "nucleo-f746zg"
QEMU_M7 = "qemu-mps2-an500"
QEMU_M4 = "qemu-mps2-an386"


def export(widths: tuple[int, ...], folder: Path, binary: bool = True) -> Path:
    import torch
    from quicknet import INPUT_SHAPE, build

    from edge_sdk.train import export_onnx

    path = folder / f"quicknet_{'binary' if binary else 'float'}.onnx"
    export_onnx(build(widths, binary=binary), torch.zeros((2, *INPUT_SHAPE)), path)
    return path


def images(n: int, seed: int) -> np.ndarray:
    from quicknet import INPUT_SHAPE

    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *INPUT_SHAPE)).astype(np.float32)


def golden_figures(model, path: Path, x: np.ndarray) -> dict:
    y = model.run(x)
    ref = run_onnxruntime(path, x)
    fixed = model.run(x, fixed_point=True)
    return {
        "inputs": len(x),
        "run_vs_onnxruntime_max_abs": float(np.max(np.abs(y - ref))),
        "run_vs_onnxruntime_argmax_agreement": float(np.mean(y.argmax(1) == ref.argmax(1))),
        "fixed_vs_run_argmax_agreement": float(np.mean(fixed.argmax(1) == y.argmax(1))),
        "fixed_vs_run_max_abs": float(np.max(np.abs(fixed - y))),
    }


def cortex_m(model, folder: Path, x: np.ndarray, boards_run=(QEMU_M7, QEMU_M4)) -> dict:
    out: dict = {}
    folder.mkdir(parents=True, exist_ok=True)
    board = boards.get_board(F746)
    try:
        f746 = model.convert("cortex-m", folder / "f746", board=F746)
    except EdgeError as exc:  # the refusal is the figure: it does not fit
        out["f746"] = {"board": F746, "fits": False, "refusal": str(exc),
                       "flash_limit": board.flash_bytes, "ram_limit": board.ram_bytes}
        f746 = None
    rep = f746.report().data if f746 else {}
    if f746 is not None:
        out["f746"] = {
            "board": F746,
            "flash_bytes": rep["flash_bytes"],
            "flash_limit": board.flash_bytes,
            "ram_bytes": rep["ram_bytes"],
            "ram_limit": board.ram_bytes,
            "stack_reserve": rep["size"].get("stack"),
            "weight_bytes": rep["weight_bytes"],
            "arena_bytes": rep["arena_bytes"],
            "fits": rep["flash_bytes"] <= board.flash_bytes and rep["ram_bytes"] <= board.ram_bytes,
            "macs": rep["macs"],
            "binary_macs": rep["binary_macs"],
            "instructions_per_inference": rep["instructions_per_inference"],
        }
    # bit-exact under QEMU on Cortex-M7 (same flags as the F746) and Cortex-M4
    want = model.run(x, fixed_point=True)
    names = {QEMU_M7: "qemu_m7", QEMU_M4: "qemu_m4"}
    for board_name in boards_run:
        name = names[board_name]
        build = model.convert("cortex-m", folder / name, board=board_name)
        sim = build.simulate(x)
        if not np.array_equal(sim.output, want):
            raise SystemExit(f"{board_name}: outputs differ from the fixed-point golden model")
        elf = folder / name / "build" / board_name / "model.elf"
        q = model.ir.layers[0]
        ints = np.round(x / q.scale + q.zero_point).astype(np.int16).reshape(len(x), -1)
        counts = icount.count_instructions(elf, board_name, ints).instructions
        out[name] = {"board": board_name, "inputs": len(x), "bit_exact": True,
                     "instructions_mean": float(np.mean(counts)),
                     "instructions_min": int(np.min(counts)),
                     "instructions_max": int(np.max(counts)),
                     "flash_bytes": build.report()["flash_bytes"],
                     "ram_bytes": build.report()["ram_bytes"]}
    return out


def fpga(model, folder: Path) -> dict:
    try:
        build = model.convert("fpga", folder / "fpga")
    except EdgeError as exc:
        return {"board": "icebreaker (iCE40 UP5K)", "converted": False, "refusal": str(exc)}
    rep = build.report().data
    return {"board": "icebreaker (iCE40 UP5K)", "converted": True, "report": rep}


def _row(target: str, figure: str, value: str) -> str:
    return f"| {target} | {figure} | {value} |"


def _fit(c: dict) -> str:
    if "refusal" in c:
        return f"does NOT fit: {c['refusal']}"
    verdict = "fits" if c["fits"] else "does NOT fit"
    return (f"{c['flash_bytes']:,} B of {c['flash_limit']:,} / {c['ram_bytes']:,} B of "
            f"{c['ram_limit']:,} (+ {c['stack_reserve']:,} B stack reserve): {verdict}")


def render(res: dict) -> str:
    g, c = res["golden"], res["cortex_m"]
    f7 = c["f746"]
    widths, blocks = "-".join(map(str, res["widths"])), "-".join(map(str, res["blocks"]))
    instr = f7["instructions_per_inference"]["mean"]
    lines = [
        (f"QuickNet-style network, widths {widths}, blocks {blocks}, input 3x32x32, "
         "10 classes, random weights"),
        "",
        "| Target | Figure | Value |",
        "|---|---|---|",
        _row("golden", f"`run` vs onnxruntime, {g['inputs']} images",
             f"max abs {g['run_vs_onnxruntime_max_abs']:.2e}, argmax "
             f"{g['run_vs_onnxruntime_argmax_agreement']:.1%}"),
        _row("golden", "`run --fixed-point` vs `run`",
             f"argmax {g['fixed_vs_run_argmax_agreement']:.1%}, max abs "
             f"{g['fixed_vs_run_max_abs']:.3f}"),
        _row("STM32F746 (nucleo-f746zg)", "flash / RAM", _fit(f7)),
        _row("STM32F746", "instructions per inference (unicorn, Cortex-M7)",
             f"{instr:,.0f} ({f7['macs']:,} MACs, {f7['binary_macs']:,} binary)"),
    ]
    for key in ("qemu_m7", "qemu_m4"):
        q = c[key]
        lines.append(_row(f"{q['board']} (QEMU)", "bit-exact with `run --fixed-point`",
                          f"{q['inputs']} of {q['inputs']} images; "
                          f"{q['instructions_mean']:,.0f} instructions per inference"))
    i8 = res["int8"]
    f8, q8 = i8["cortex_m"]["f746"], i8["cortex_m"]["qemu_m7"]
    instr8 = q8["instructions_mean"]  # the F746 build may not exist: QEMU's M7 build, same code
    lines += [
        _row("int8 baseline, STM32F746", "flash / RAM", _fit(f8)),
        _row(f"int8 baseline, {q8['board']} (QEMU, 4 MiB)", "flash / RAM",
             f"{q8['flash_bytes']:,} B / {q8['ram_bytes']:,} B"),
        _row("int8 baseline, Cortex-M7", "instructions per inference (unicorn)",
             f"{instr8:,.0f}: {instr8 / instr:.2f}x the binary network's"),
        _row(f"int8 baseline, {q8['board']} (QEMU)", "bit-exact with its `run --fixed-point`",
             f"{q8['inputs']} of {q8['inputs']} images"),
        _row("int8 baseline", "`run --fixed-point` vs `run` (float source)",
             f"argmax {i8['golden']['fixed_vs_run_argmax_agreement']:.1%}"),
    ]
    fp = res["fpga"]
    if fp["converted"]:
        lines.append(_row(fp["board"], "converted", "see JSON"))
    else:
        lines.append(_row(fp["board"], "refused", fp["refusal"]))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="widths 16-32-64-128")
    parser.add_argument("--inputs", type=int, default=8, help="images through QEMU")
    parser.add_argument("--int8-inputs", type=int, default=4, help="images through QEMU (int8)")
    parser.add_argument("--golden-inputs", type=int, default=256)
    args = parser.parse_args()
    from quicknet import BLOCKS, WIDTHS

    widths = (16, 32, 64, 128) if args.quick else WIDTHS
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = export(widths, folder)
        model = edge_sdk.load(path, input_range=(0, 255))
        res = {
            "widths": list(widths),
            "blocks": list(BLOCKS),
            "golden": golden_figures(model, path, images(args.golden_inputs, 1)),
            "cortex_m": cortex_m(model, folder, images(args.inputs, 2)),
            "fpga": fpga(model, folder),
        }
        fpath = export(widths, folder, binary=False)
        int8 = edge_sdk.load(fpath, input_range=(0, 255), calibration=images(64, 3))
        res["int8"] = {
            "calibration_images": 64,
            "golden": golden_figures(int8, fpath, images(args.golden_inputs, 1)),
            "cortex_m": cortex_m(int8, folder / "int8", images(args.int8_inputs, 2),
                                 boards_run=(QEMU_M7,)),
        }
    res["machine"] = {"python": platform.python_version(), "cpus": 2,
                      "seconds": round(time.time() - start, 1)}
    text = render(res)
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "quicknet_targets.json").write_text(json.dumps(res, indent=1) + "\n")
        (RESULTS / "quicknet_targets.md").write_text(text)


if __name__ == "__main__":
    main()
