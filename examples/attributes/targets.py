"""Both attribute heads on both targets: convert, simulate the whole test split, report.

For each model (factorizer head, fully connected head) and target (cortex-m on QEMU's
mps2-an386, fpga under cocotb + Icarus) this converts with the SDK's API, simulates every test
image with `check=True` (the factorizer build must equal `edge-sdk run --fixed-point`, the FC
build the golden model, on every image), and records accuracy, flash/RAM and instructions per
inference (Cortex-M), cycles per inference (FPGA) in `results_targets.json`, then prints the
table examples/README.md shows. The FPGA builds use `--board sim`: both networks' weights
(about 0.3 and 1.1 Mbit) exceed the block RAM of the iCE40s the SDK targets (120/128 kbit).

Run: `python examples/attributes/targets.py [--images N] [--fpga-images N]` (about 10 minutes
on 2 cores with the default 32 images on the FPGA).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edge_sdk

HERE = Path(__file__).resolve().parent
MODELS = {"factorizer": "attributes_factorizer.onnx", "fc": "attributes_fc.onnx"}
TARGETS = {"cortex-m": {}, "fpga": {"board": "sim"}}


def predicted(name: str, y: np.ndarray) -> np.ndarray:
    """Class indices [N, 3]: the factorizer's indices, or the FC's argmax split into digits."""
    if name == "factorizer":
        return np.asarray(y, dtype=np.int64)
    c = np.asarray(y).reshape(len(y), -1).argmax(axis=1)
    return np.stack([c // 64, (c // 8) % 8, c % 8], axis=1)


def instructions(rep: dict) -> float | None:
    for key in ("instructions_per_inference", "instructions"):
        v = rep.get(key)
        if isinstance(v, dict):
            return v.get("mean")
        if isinstance(v, (int, float)):
            return v
    return None


def one(name: str, target: str, x: np.ndarray, labels: np.ndarray, work: Path) -> dict:
    model = edge_sdk.load(HERE / MODELS[name])
    t0 = time.time()
    build = model.convert(target, work / f"{name}-{target}", **TARGETS[target])
    t1 = time.time()
    sim = build.simulate(x, check=True)
    t2 = time.time()
    if not sim.ok:
        raise SystemExit(f"{name} on {target}: MISMATCH: {sim.mismatch}")
    rep = build.report().data if target == "cortex-m" else \
        json.loads((build.folder / "report.json").read_text())
    pred = predicted(name, sim.output)
    row = {"model": MODELS[name], "target": target, "images": len(x), "bit_exact": True,
           "accuracy": float((pred == labels).all(axis=1).mean()),
           "convert_s": round(t1 - t0, 1), "simulate_s": round(t2 - t1, 1),
           "facts": {k: v for k, v in sim.facts.items() if isinstance(v, (int, float, str))},
           "report": rep}
    if target == "cortex-m":
        row.update(flash_bytes=rep.get("flash_bytes"), ram_bytes=rep.get("ram_bytes"),
                   instructions_per_inference=instructions(rep))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=0, help="first N test images (default: all)")
    ap.add_argument("--fpga-images", type=int, default=32,
                    help="first N test images on the FPGA (Icarus runs ~4 s per image; the "
                         "slow test tests/test_fpga_factorizer_deployed.py runs all 512)")
    ap.add_argument("--out", default=str(HERE / "results_targets.json"))
    args = ap.parse_args()
    x = np.load(HERE / "test_x.npy")
    labels = np.load(HERE / "test_y.npy")
    if args.images:
        x, labels = x[: args.images], labels[: args.images]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            for target in TARGETS:
                n = min(len(x), args.fpga_images) if target == "fpga" else len(x)
                rows.append(one(name, target, x[:n], labels[:n], Path(tmp)))
                r = rows[-1]
                print(f"{name:10s} {target:8s} bit-exact on {r['images']} images, accuracy "
                      f"{100 * r['accuracy']:.2f} %, flash {r.get('flash_bytes')}, RAM "
                      f"{r.get('ram_bytes')}, instructions {r.get('instructions_per_inference')}"
                      f", facts {r['facts']}", file=sys.stderr)
    Path(args.out).write_text(json.dumps(rows, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
