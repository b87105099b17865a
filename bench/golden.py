"""Golden-model throughput next to onnxruntime on the same model, measured in the same run.

    .venv/bin/python bench/golden.py [--model examples/cnn_digits.onnx] [--repeat 5]

Prints a table (samples/s per batch size, and golden / onnxruntime) and writes
bench/results/golden.json. onnxruntime runs with its default optimiser and 2 threads, as a user
would run it; the golden model is NumPy (integer-exact, XNOR-popcount on packed bits).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import edge_sdk

ROOT = Path(__file__).resolve().parents[1]


def best_rate(fn, n: int, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "examples" / "cnn_digits.onnx"))
    ap.add_argument("--batches", default="1,64,1024")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "golden.json"))
    args = ap.parse_args()

    model = edge_sdk.load(args.model)
    shape = tuple(model.ir.layers[0].shape)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    rng = np.random.default_rng(0)
    rows = []
    for n in (int(b) for b in args.batches.split(",")):
        x = rng.integers(0, 17, size=(n, *shape)).astype(np.float32)
        g = best_rate(lambda x=x: model.run(x), n, args.repeat)
        o = best_rate(lambda x=x: sess.run(None, {name: x}), n, args.repeat)
        rows.append({"batch": n, "golden_samples_per_s": g, "onnxruntime_samples_per_s": o,
                     "golden_over_onnxruntime": g / o})
    print(f"model: {args.model}")
    print(f"{'batch':>6}  {'golden /s':>12}  {'onnxruntime /s':>15}  {'golden/ort':>10}")
    for r in rows:
        print(f"{r['batch']:>6}  {r['golden_samples_per_s']:>12.0f}  "
              f"{r['onnxruntime_samples_per_s']:>15.0f}  {r['golden_over_onnxruntime']:>10.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": Path(args.model).name, "machine": platform.machine(),
                               "onnxruntime": ort.__version__, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
