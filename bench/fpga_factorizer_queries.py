"""1000 queries per case through the factorizer blocks' Verilog under cocotb + Icarus.

Why a script and not only the slow test: a `published` query that runs to max_iters costs about
half a million cycles, and Icarus simulates ~20k cycles/s here, so one 2000-query case takes
hours. This splits the very queries of `tests/test_hw_factorizer.py::
test_verilog_under_cocotb_1000_queries_each` (codebooks seed 21, clean queries seed 22,
moved0.05 seed 23) into chunks, simulates the chunks in parallel processes (each query is
decoded independently and the block restarts its LFSR per query, so chunking changes nothing),
compares every query's indices and iteration count with `fixed.decode`, and writes one JSON.

Run: `python bench/fpga_factorizer_queries.py --method published --shape 3,16,8,64 --jobs 2`
(hours), `--n 20` for a quick check. Each finished chunk is kept in
bench/results/fpga_factorizer_parts/ and skipped when the run is started again, so an
interrupted run (of 1000 or more queries) resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import edge_sdk.factorizer as fz
from edge_sdk.factorizer import fixed
from edge_sdk.hw.factorizer_spec import default_spec, published_spec

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 21  # the slow test's seed: codebooks 21, clean queries 22, moved0.05 queries 23


def queries(shape: tuple[int, int, int, int], n: int, noise: str) -> tuple[object, np.ndarray]:
    F, M, B, L = shape
    cb = fz.random_sbc(F, M, B, L, SEED)
    seed = SEED + (1 if noise == "clean" else 2)
    q = fixed.quantise(fz.make_queries(cb, n, noise, seed)[0], cb).reshape(n, B * L)
    return cb, q


def part_file(shape: tuple, method: str, noise: str, n: int, lo: int, hi: int) -> Path:
    name = f"{method}_{'x'.join(map(str, shape))}_n{n}_{noise}_{lo}-{hi}.json"
    return RESULTS / "fpga_factorizer_parts" / name


def chunk(args: tuple) -> dict:
    shape, method, noise, n, lo, hi = args
    path = part_file(shape, method, noise, n, lo, hi)
    if path.is_file():
        return json.loads(path.read_text())
    out = simulate_chunk(shape, method, noise, n, lo, hi)
    if n < 1000:  # a quick check: nothing kept
        return out
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out) + "\n")
    tmp.replace(path)
    return out


def simulate_chunk(shape: tuple, method: str, noise: str, n: int, lo: int, hi: int) -> dict:
    from edge_sdk.converters.fpga import factorizer_sim

    cb, q = queries(shape, n, noise)
    L = shape[3]
    spec = published_spec(cb, L) if method == "published" else default_spec(cb, L)
    want_idx, want_its = fixed.decode(q[lo:hi], cb, method)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = factorizer_sim.run(spec, q[lo:hi], work_dir=tmp)
    same = (np.array_equal(res.indices, want_idx) and np.array_equal(res.iterations, want_its))
    bad = [lo + int(i) for i in np.flatnonzero((res.indices != want_idx).any(axis=1)
                                                | (res.iterations != want_its))]
    return {"noise": noise, "lo": lo, "hi": hi, "equal": bool(same), "mismatches": bad[:20],
            "cycles": [int(c) for c in res.cycles], "iterations": want_its.tolist(),
            "seconds": round(time.time() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="3,16,8,64", help="F,M,B,L")
    ap.add_argument("--method", choices=("published", "default"), default="published")
    ap.add_argument("--noise", default="clean,moved0.05")
    ap.add_argument("--n", type=int, default=1000, help="queries per noise")
    ap.add_argument("--chunk", type=int, default=50, help="queries per simulation")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    shape = tuple(int(v) for v in a.shape.split(","))
    jobs = [(shape, a.method, noise, a.n, lo, min(lo + a.chunk, a.n))
            for noise in a.noise.split(",") for lo in range(0, a.n, a.chunk)]
    t0 = time.time()
    with ProcessPoolExecutor(a.jobs) as pool:
        parts = list(pool.map(chunk, jobs))
    rows = []
    for noise in a.noise.split(","):
        mine = [p for p in parts if p["noise"] == noise]
        cyc = np.array([c for p in mine for c in p["cycles"]])
        its = np.array([i for p in mine for i in p["iterations"]])
        rows.append({"noise": noise, "queries": int(cyc.size),
                     "equal": all(p["equal"] for p in mine),
                     "mismatches": [m for p in mine for m in p["mismatches"]][:20],
                     "mean_cycles": float(cyc.mean()), "max_cycles": int(cyc.max()),
                     "mean_iterations": float(its.mean()),
                     "simulated_seconds": round(sum(p["seconds"] for p in mine), 1)})
        r = rows[-1]
        print(f"{a.method} F,M,B,L={a.shape} {noise}: {r['queries']} queries, equal to "
              f"fixed.decode: {'yes' if r['equal'] else 'NO ' + str(r['mismatches'])}; mean "
              f"{r['mean_cycles']:.0f} cycles/query (max {r['max_cycles']}), mean iterations "
              f"{r['mean_iterations']:.2f}")
    out = {"method": a.method, "shape": dict(zip("FMBL", shape, strict=True)), "seed": SEED,
           "rows": rows, "wall_seconds": round(time.time() - t0, 1), "simulator": "Icarus"}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"fpga_factorizer_{a.method}_{'x'.join(map(str, shape))}.json"
    if a.n >= 1000:
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
