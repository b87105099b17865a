"""Evaluate the Bi-Real and ReActNet digits examples on every edge-sdk mode and target.

For each model, on the committed test split (450 images, ``test_x.npy`` / ``test_y.npy``):

- source accuracy: the .onnx file under onnxruntime (the independent reference);
- ``run`` (faithful golden model): accuracy, and whether it equals onnxruntime exactly or only
  to float32 rounding (max |difference|);
- ``run --fixed-point`` (what the targets compute): accuracy and argmax agreement with ``run``
  (issue #11 asks for >= 99 %);
- Cortex-M (``convert --target cortex-m`` + ``simulate``: the firmware under QEMU, instructions
  counted by unicorn) on the whole split: bit-exact with ``run --fixed-point``? flash, RAM,
  instructions per inference;
- FPGA (``convert --target fpga`` + ``simulate``: the Verilog under cocotb + Icarus) on the
  first ``--fpga-n`` images (Icarus is slow): bit-exact with ``run --fixed-point``? cycles per
  inference and initiation interval; with ``--synth`` also LUT/BRAM/DSP and Fmax (yosys +
  nextpnr, minutes).

The Bi-Real model's float first conv and last dense layer become 8-bit layers with the
calibration set ``calib_x.npy`` (the first 128 TRAIN images), as ``--calibrate`` does.
Writes ``results.json`` next to this file (no timings: the same inputs give the same file) (build folders go to ``--out``, default
``out/resnets``). Run from the repository root: ``python examples/resnets/evaluate.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import edge_sdk

HERE = Path(__file__).resolve().parent
#: The digits' pixel range (raw integers 0..16): the SDK's --input-range.
INPUT_RANGE = (0, 16)
#: Model file stem -> calibration set file (None: no float layers to calibrate).
MODELS = {"bireal_digits": "calib_x.npy", "reactnet_digits": None}


def onnxruntime_scores(path: Path, x: np.ndarray) -> np.ndarray:
    """The source model under onnxruntime (CPU), one image at a time (any exported batch)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def _acc(scores: np.ndarray, y: np.ndarray) -> float:
    return float((scores.argmax(1) == y).mean())


def _first_difference(got: np.ndarray, want: np.ndarray) -> str | None:
    bad = np.argwhere(got != want)
    if bad.size == 0:
        return None
    i = tuple(bad[0])
    return f"{len(bad)} differing values, first at {list(map(int, i))}: {got[i]} vs {want[i]}"


def evaluate(name: str, out: Path, fpga_n: int, synth: bool) -> dict:
    """Every figure of one model (see the module docstring)."""
    path = HERE / f"{name}.onnx"
    x, y = np.load(HERE / "test_x.npy"), np.load(HERE / "test_y.npy")
    cal_file = MODELS[name]
    cal = None if cal_file is None else np.load(HERE / cal_file)
    res: dict = {"file": path.name, "calibration": cal_file, "test_images": len(x)}

    ref = onnxruntime_scores(path, x)
    m = edge_sdk.load(path, input_range=INPUT_RANGE, calibration=cal)
    run = m.run(x)
    fixed = m.run(x, fixed_point=True)
    res["source_acc"] = _acc(ref, y)
    res["run_acc"] = _acc(run, y)
    res["run_equals_onnxruntime"] = bool(np.array_equal(run, ref))
    res["run_max_abs_diff_vs_onnxruntime"] = float(np.abs(run - ref).max())
    res["run_argmax_equals_onnxruntime"] = bool(np.array_equal(run.argmax(1), ref.argmax(1)))
    res["fixed_acc"] = _acc(fixed, y)
    res["fixed_vs_run_argmax_agreement"] = float((fixed.argmax(1) == run.argmax(1)).mean())
    res["fixed_vs_run_max_abs_diff"] = float(np.abs(fixed - run).max())

    t = time.perf_counter()
    cm = m.convert("cortex-m", out / f"{name}_cortexm")
    sim = cm.simulate(x)
    rep = cm.report().data
    res["cortexm"] = {
        "board": rep.get("board"), "cpu": rep.get("cpu"), "images": len(x),
        "bit_exact_with_fixed_point": _first_difference(sim.output, fixed) is None,
        "difference": _first_difference(sim.output, fixed),
        "acc": _acc(sim.output, y),
        "flash_bytes": rep.get("flash_bytes"), "ram_bytes": rep.get("ram_bytes"),
        "weight_bytes": rep.get("weight_bytes"), "arena_bytes": rep.get("arena_bytes"),
        "instructions_per_inference": sim.facts.get("instructions_per_inference"),
    }
    print(f"{name}: cortex-m {time.perf_counter() - t:.0f} s", file=sys.stderr)

    t = time.perf_counter()
    # --board sim: neither design fits an iCE40 (synthesis), though the weight ROM does; the
    # Verilog is the same as for the default board
    fpga = m.convert("fpga", out / f"{name}_fpga", board="sim")
    fsim = fpga.simulate(x[:fpga_n])
    res["fpga"] = {
        "board": "sim",
        "images": fpga_n,
        "bit_exact_with_fixed_point": _first_difference(fsim.output, fixed[:fpga_n]) is None,
        "difference": _first_difference(fsim.output, fixed[:fpga_n]),
        **{k: fsim.facts.get(k) for k in ("cycles_per_inference", "initiation_interval")},
    }
    print(f"{name}: fpga {time.perf_counter() - t:.0f} s", file=sys.stderr)
    if synth:
        res["fpga"]["synthesis"] = synthesis_summary(fpga.report().data)
    return res


def synthesis_summary(report: dict) -> dict:
    """Per iCE40 device: LUT4, FF, block RAM, DSP, Fmax and whether it fits (yosys + nextpnr
    on the design that was simulated)."""
    keys = ("lut4", "ff", "bram", "dsp", "fmax_mhz", "fits", "fit_problems")
    return {dev: {k: d.get(k) for k in keys} for dev, d in report.get("devices", {}).items()}


def main() -> None:
    """Evaluate both models and write results.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/resnets"), help="build folders")
    ap.add_argument("--fpga-n", type=int, default=32, help="test images through Icarus")
    ap.add_argument("--synth", action="store_true", help="FPGA resources (yosys + nextpnr)")
    ap.add_argument("--results", type=Path, default=HERE / "results.json", help="JSON written")
    ap.add_argument("models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    results = {name: evaluate(name, args.out, args.fpga_n, args.synth) for name in args.models}
    text = json.dumps(results, indent=1, sort_keys=True, default=str)
    args.results.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
