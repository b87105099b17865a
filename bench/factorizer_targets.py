"""Factorizer decoders on the targets, next to a binary fully connected head of M^F rows.

    nice .venv/bin/python bench/factorizer_targets.py            # three sizes, with nextpnr
    nice .venv/bin/python bench/factorizer_targets.py --quick    # smallest size, no pnr

Why: a factorizer head replaces a dense layer of M^F rows (one row per product) by F codebooks
of M codevectors; this bench puts the two side by side on the same targets so the size where
the factorizer wins is visible. Sizes: M^F = 1000 (F=3, M=10), 10^4 (F=2, M=100) and 97336
(F=3, M=46), all on a query of D = B*L = 512 entries with B=4 blocks of L=128 (the D=512, B=4
point of FACTORIZER.md's capacity table; L a power of two as the FPGA published block needs).

Cortex-M (qemu-mps2-an386 = Cortex-M4): the generated decoder (converters/cortexm/factorizer)
is built and measured by `report.measure` (flash / RAM of the decoder's own objects,
instructions per decoded query under unicorn), which refuses any query whose indices or
iterations differ from `fixed.decode`; it is called once for clean and once for moved0.05
queries. The fully connected head is the network backend's code (`codegen.build`) for
Input(D) -> binarise -> Dense(M^F x D, +-1 weights) -> Scores, its flash / RAM from the same
object sizes, its instructions counted by unicorn (scores checked against the golden model).
Where its weights do not fit the board's flash (4 MiB on the an386), instructions come from
the measured per-MAC rate of the largest size that fits and flash from its code size plus
M^F*D/8 weight bytes, marked "extrapolated". The argmax over the scores (which the network
backend leaves to the application) is added as ARGMAX_INSTR_PER_ROW instructions per row.

FPGA (iCE40 UP5K, HX8K): each decoder block (hw/factorizer*.py) through yosys (LUT4/FF/BRAM)
and, without --quick, nextpnr (Fmax, best of --seeds); cycles per query measured under cocotb
+ Icarus on a few queries per size (results checked against `fixed.decode`), the published
decoder's only on queries of at most --max-sim-iters iterations, with a least-squares cycle
model (cycles = a + b * iterations) giving the mean over the Cortex-M query set (the default
decoder always takes one iteration: its cycles are M^F / lanes + the query intake). The fully
connected head: the network backend's design of it (`generate`: default folding, weights in a
block-RAM ROM, as board `sim` accepts whatever their size), synthesised by yosys at the
smallest size (not with --quick), elsewhere its M^F*D weight bits against the device's block
RAM; its cycles ceil(M^F*D / (PE*SIMD)) + the pipeline depth, both from the schedule at the
smallest size; and, for scale, the cycles of the same engine fed from a QSPI flash at 4
bits/cycle (bench/fpga.py's streamed-weight engine's LUT4/Fmax quoted from its results).

Writes bench/results/factorizer_targets.json and .md (tables the README can include).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

import edge_sdk.factorizer as fz
from edge_sdk import golden
from edge_sdk.converters.cortexm import boards, codegen, icount, toolchain
from edge_sdk.converters.cortexm.factorizer import report
from edge_sdk.converters.cortexm.factorizer.spec import decoder_spec
from edge_sdk.converters.fpga import factorizer_sim
from edge_sdk.converters.fpga.generate import VERILOG, generate
from edge_sdk.converters.fpga.synth import DEVICES as FPGA_DEVICES
from edge_sdk.converters.fpga.synth import synth_report, toolchain_versions
from edge_sdk.factorizer import fixed
from edge_sdk.hw.factorizer_spec import default_spec, published_spec
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BOARD = "qemu-mps2-an386"
SIZES = ((3, 10), (2, 100), (3, 46))  # (F, M): M^F = 1000, 10^4, 97336
B, L_BLOCK = 4, 128
D = B * L_BLOCK
METHODS = ("default", "published")
NOISES = ("clean", "moved0.05")
DEVICES = ("up5k", "hx8k")
BRAM_BITS = 4096  # one iCE40 EBR
UP5K_SPRAM_BITS = 4 * 256 * 1024  # 4 x 256 kbit single-port RAM (the network engine uses none)
STM32F746_FLASH = 1 << 20  # a common 1 MB Cortex-M7 part, as a second flash budget
ARGMAX_INSTR_PER_ROW = 4  # ldr, cmp, it/movgt pair of a running max over int32 scores
FLASH_MARGIN = 64 << 10  # firmware, code and tables next to the weights
# FPGA blocks: the smallest lane counts (the published block needs 1 lane to fit the UP5K's
# EBR at D=512; two search lanes still fit and halve the default's cycles)
LANES = {"published": {"lanes": 1, "corr_lanes": 1}, "default": {"lanes": 2}}
QSPI_BITS_PER_CYCLE = 4  # weights from a QSPI flash (iCEBreaker's) at the fabric clock


def products(F: int, M: int) -> int:
    return M**F


def size_label(F: int, M: int) -> str:
    return f"{products(F, M)} ({F}x{M})"


# ------------------------------------------------------------------------- queries
def make_queries(cb: fz.Codebooks, n: int, noise: str, seed: int) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """Integer queries [n, D] (fixed.quantise of the float queries) and their true indices."""
    q, truth = fz.make_queries(cb, n, noise, seed)
    return fixed.quantise(q, cb).reshape(n, -1), truth


# ------------------------------------------------------------------------- Cortex-M
def cm_factorizer(cb: fz.Codebooks, method: str, qs: dict, work: Path) -> dict:
    """report.measure per noise kind (it raises unless every query equals fixed.decode)."""
    sp = decoder_spec(cb, method)
    out: dict = {"method": method, "exact": True, "per_noise": {}}
    for noise, (q, truth) in qs.items():
        t0 = time.perf_counter()
        fig = report.measure(sp, q, work / f"{method}-{noise}", BOARD)
        idx, _its = fixed.decode(q, cb, method)  # == the firmware's (measure checked it)
        out["per_noise"][noise] = {**asdict(fig), "accuracy": float((idx == truth).all(1).mean()),
                                   "seconds": round(time.perf_counter() - t0, 1)}
        out["flash_bytes"], out["ram_bytes"] = fig.flash_bytes, fig.ram_bytes
        out["stack_bytes"] = fig.stack_bytes
    per = out["per_noise"].values()
    out["instructions_mean"] = float(np.mean([p["instructions_mean"] for p in per]))
    out["iterations_mean"] = float(np.mean([p["iterations_mean"] for p in per]))
    return out


def fc_graph(rows: int, seed: int = 0) -> Graph:
    """Input (int8 in [-1, 1]) -> binarise -> Dense rows x D (+-1 weights) -> Scores."""
    w = np.random.default_rng(seed).choice(np.array([-1, 1], np.int8), size=(rows, D))
    layers: list[L.Layer] = [
        L.Input("in", [], "in", shape=(D,), lo=-1, hi=1),
        L.Threshold("bin", ["in"], "bin", tau=np.zeros(D, np.int64), flip=np.zeros(D, bool),
                    zero=np.zeros(D, bool)),
        L.Dense("fc", ["bin"], "fc", weights=L.IntWeights(w)),
        L.Scores("scores", ["fc"], "scores"),
    ]
    return Graph(f"fc_{rows}x{D}", layers, ["in"], ["scores"])


def cm_fc_measured(rows: int, samples: int, work: Path) -> dict:
    """Build the network backend's C for the FC head, count it under unicorn, check scores."""
    graph = fc_graph(rows)
    rng = np.random.default_rng(rows)
    x = rng.integers(-1, 2, size=(samples, D)).astype(np.float32)
    q = golden.quantise_input(graph.layers[0], x).reshape(samples, -1).astype(np.int8)
    ref = golden.run_all(graph, x)["fc"].reshape(samples, -1).astype(np.int64)
    cm = codegen.build(graph, popcount="swar")
    work.mkdir(parents=True, exist_ok=True)
    for name, text in cm.files.items():
        (work / name).write_text(text)
    elf = toolchain.build(work, BOARD, work / "build" / "model.elf")
    res = icount.count_instructions(elf, BOARD, q, rows)
    if not np.array_equal(res.outputs.astype(np.int64), ref):
        raise SystemExit(f"FC {rows}x{D}: unicorn scores differ from the golden model")
    sizes = toolchain.object_sizes(work, BOARD)
    scores = float(np.mean(res.instructions))
    return {"rows": rows, "measured": True, "weight_bytes": cm.info.weight_bytes,
            "flash_bytes": sizes["text"] + sizes["data"],
            "ram_bytes": sizes["data"] + sizes["bss"] + 4 * rows,
            "instructions_scores": scores, "macs": cm.info.total_macs,
            "instructions_per_mac": scores / cm.info.total_macs,
            "instructions": scores + ARGMAX_INSTR_PER_ROW * rows, "samples": samples,
            "exact": True}


def cm_fc_extrapolated(rows: int, ref: dict) -> dict:
    """Per-MAC rate and code size of a measured head, scaled to `rows`."""
    weights = round(ref["weight_bytes"] * rows / ref["rows"])  # packed rows, as measured
    code = ref["flash_bytes"] - ref["weight_bytes"]
    ram_fixed = ref["ram_bytes"] - 4 * ref["rows"]  # the int32 score buffer scales with rows
    scores = ref["instructions_per_mac"] * rows * D
    return {"rows": rows, "measured": False, "weight_bytes": weights, "flash_bytes": code + weights,
            "ram_bytes": ram_fixed + 4 * rows, "instructions_scores": scores, "macs": rows * D,
            "instructions_per_mac": ref["instructions_per_mac"],
            "instructions": scores + ARGMAX_INSTR_PER_ROW * rows, "from_rows": ref["rows"]}


def fc_fits(rows: int) -> bool:
    return rows * D // 8 + FLASH_MARGIN <= boards.get_board(BOARD).flash_bytes


# ------------------------------------------------------------------------- FPGA
def fpga_spec(cb: fz.Codebooks, method: str):
    if method == "published":
        return published_spec(cb, L_BLOCK, **LANES["published"])
    return default_spec(cb, L_BLOCK, **LANES["default"])


def _synth(job: tuple) -> dict:
    """yosys counts (and nextpnr Fmax, best of `seeds`) of one block on one device."""
    (F, M, method, device, pnr, seeds) = job
    cb = fz.random_sbc(F, M, B, L_BLOCK, 0)
    t0 = time.perf_counter()
    rep = synth_report({VERILOG: factorizer_sim.verilog(fpga_spec(cb, method))}, device,
                       pnr=pnr, seeds=seeds, top=factorizer_sim.TOP)
    rep.pop("toolchain", None)
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    return rep


def fpga_cycles(cb: fz.Codebooks, method: str, qs: dict, per_noise: int, max_iters: int,
                work: Path) -> dict:
    """Cycles per query under cocotb + Icarus on the first `per_noise` queries of each noise
    kind that take at most `max_iters` iterations (checked against fixed.decode), and the
    model cycles = a + b * iterations fitted to them, evaluated at the mean iterations of all
    of `qs` (the Cortex-M query set)."""
    sp = fpga_spec(cb, method)
    picked, its_all = [], []
    for q, _truth in qs.values():
        _idx, its = fixed.decode(q, cb, method)
        its_all.extend(its.tolist())
        ok = sorted((int(its[k]), k) for k in range(len(q)) if its[k] <= max_iters)
        # the fewest and the most iterations: a spread for the fitted cycle model
        take = ok[:1] + ok[1:][-(per_noise - 1):] if per_noise > 1 else ok[:1]
        picked.extend(q[k] for _, k in sorted(take, key=lambda t: t[1]))
    if not picked:
        return {"measured_queries": 0}
    q = np.stack(picked)
    want_idx, want_its = fixed.decode(q, cb, method)
    t0 = time.perf_counter()
    res = factorizer_sim.run(sp, q, work_dir=work)
    exact = bool(np.array_equal(res.indices, want_idx) and np.array_equal(res.iterations,
                                                                          want_its))
    cyc = np.asarray(res.cycles, dtype=np.float64)
    its = want_its.astype(np.float64)
    if np.ptp(its) > 0:
        b, a = np.polyfit(its, cyc, 1)
    else:  # one iteration count only (always so for default): cycles proportional to it
        a, b = 0.0, float(cyc.mean() / its.mean())
    mean_its = float(np.mean(its_all))
    return {"measured_queries": len(q), "exact": exact, "cycles": [int(c) for c in cyc],
            "iterations": [int(i) for i in its], "cycles_measured_mean": float(cyc.mean()),
            "model": {"a": float(a), "b": float(b)}, "iterations_mean_all": mean_its,
            "cycles_mean_model": float(a + b * mean_its), "latency_first": res.latency,
            "seconds": round(time.perf_counter() - t0, 1)}


def fc_engine(rows: int) -> dict:
    """The network backend's FPGA design of the FC head (generate: default folding and
    schedule), as the `sim` board accepts it whatever the weights' size."""
    t0 = time.perf_counter()
    files, sched = generate(fc_graph(rows))
    (stage,) = [t for t in sched.stages if t.pe]
    return {"rows": rows, "pe": stage.pe, "simd": stage.simd,
            "cycles_per_inference": sched.cycles_per_inference,
            "initiation_interval": sched.initiation_interval,
            "depth": sched.cycles_per_inference - math.ceil(rows * D / (stage.pe * stage.simd)),
            "files": files, "seconds": round(time.perf_counter() - t0, 1)}


def _fc_synth(files: dict) -> dict:
    """yosys counts of the FC head's network design (no pnr: it cannot fit either device)."""
    t0 = time.perf_counter()
    rep = synth_report(files, "up5k", pnr=False)
    rep.pop("toolchain", None)
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    return rep


def fpga_fc(rows: int, eng: dict) -> dict:
    """Weight bits against block RAM; cycles of the engine's folding (ceil(MACs / (PE*SIMD))
    + its pipeline depth, both from the schedule generated at the smallest size), and of the
    same engine fed from a QSPI flash."""
    bits = rows * D
    out = {"rows": rows, "weight_kbit": bits / 1024, "pe": eng["pe"], "simd": eng["simd"],
           "cycles": math.ceil(bits / (eng["pe"] * eng["simd"])) + eng["depth"],
           "cycles_from_schedule": rows == eng["rows"],
           "cycles_qspi": math.ceil(bits / QSPI_BITS_PER_CYCLE)}
    for dev in DEVICES:
        ebr = FPGA_DEVICES[dev][2] * BRAM_BITS
        out[f"fits_{dev}"] = bits <= ebr
        out[f"device_kbit_{dev}"] = ebr / 1024
    out["fits_up5k_spram"] = bits <= UP5K_SPRAM_BITS
    return out


def fc_engine_reference() -> dict | None:
    """bench/fpga.py's measured 1024x1024 streamed-weight engine at PE 8 x SIMD 64 (its
    Fmax: the FC head's engine needs the weights streamed to fit a device at all)."""
    path = RESULTS / "fpga.json"
    if not path.is_file():
        return None
    for row in json.loads(path.read_text()).get("rows", []):
        if row.get("case", "").startswith("dense") and row.get("folding") == [[8, 64]]:
            return {k: row.get(k) for k in ("case", "lut4", "bram", "fmax_up5k", "fmax_hx8k")}
    return None


# ------------------------------------------------------------------------- tables
def _k(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.0f} k"
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3g}" if a and b else "-"


def fc_note(fc: dict) -> str:
    if fc["measured"]:
        return ""
    return f" (extrapolated, does not fit: needs {fc['flash_bytes'] / 1024:.0f} KB flash)"


def cortex_m_table(rows: list[dict]) -> list[str]:
    head = ("| M^F (FxM) | decoder | flash B | RAM B | instr/query clean | moved0.05 | mean | "
            "exact | accuracy clean/moved | FC flash B | FC RAM B | FC instr | "
            "flash fz/FC | instr fz/FC |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fc = r["cortex_m_fc"]
        for method in METHODS:
            c = r["cortex_m"].get(method)
            if c is None:
                continue
            pn = c["per_noise"]
            acc = "/".join(f"{pn[n]['accuracy']:.2f}" for n in NOISES)
            lines.append(
                f"| {size_label(r['F'], r['M'])} | {method} | {c['flash_bytes']} | "
                f"{c['ram_bytes']} | {_k(pn['clean']['instructions_mean'])} | "
                f"{_k(pn['moved0.05']['instructions_mean'])} | {_k(c['instructions_mean'])} | "
                f"{'yes' if c['exact'] else 'NO'} | {acc} | {fc['flash_bytes']}{fc_note(fc)} | "
                f"{fc['ram_bytes']} | {_k(fc['instructions'])} | "
                f"{_ratio(c['flash_bytes'], fc['flash_bytes'])} | "
                f"{_ratio(c['instructions_mean'], fc['instructions'])} |")
    return lines


def _fit(rep: dict | None, device: str) -> str:
    if rep is None:
        return "-"
    luts, brams = FPGA_DEVICES[device][1], FPGA_DEVICES[device][2]
    if rep["lut4"] > luts or rep["bram"] > brams:
        return f"does not fit (needs {rep['lut4']} LUT4 / {rep['bram']} BRAM)"
    f = rep.get("fmax_mhz")
    return f"fits, {f:.1f} MHz" if f else "fits"


def _fc_fpga(fc: dict, device: str) -> str:
    rep = fc.get("synth")
    if rep is not None:
        return _fit(rep, device)
    if fc[f"fits_{device}"]:
        return "fits EBR"
    return f"does not fit (needs {fc['weight_kbit']:.0f} kbit)"


def cortex_m_caption(n: int) -> str:
    return (f"Cortex-M4 ({BOARD}), query D = {D} (B={B}, L={L_BLOCK}). Factorizer: the decoder's "
            f"own objects (flash: code + index tables; RAM: work buffers), instructions per "
            f"decoded query under unicorn ({n} clean + {n} moved0.05 queries, bit-exact with "
            "fixed.decode), accuracy = all F indices right. FC: the network backend's binary "
            "dense layer of M^F rows on the binarised D inputs (objects; RAM includes the "
            "4*M^F-byte score buffer the caller provides), instructions under unicorn (scores "
            f"equal the golden model) + argmax at {ARGMAX_INSTR_PER_ROW} instructions per row; "
            f"an386 flash is 4 MiB, a 1 MB part (STM32F746) holds the FC weights up to "
            f"{STM32F746_FLASH * 8 // D} rows.")


def fpga_caption(pnr: bool, eng: dict, ref: dict | None, synthesised: bool) -> str:
    fmax = ", nextpnr Fmax (best of seeds)" if pnr else " (no place-and-route: --quick)"
    streamed = ""
    if ref:
        streamed = (f" With the weights streamed from off-chip instead (bench/fpga.py's "
                    f"{ref['case']} engine at the same folding: {ref['lut4']} LUT4, "
                    f"{ref['bram']} BRAM, {ref['fmax_up5k']} / {ref['fmax_hx8k']} MHz on UP5K / "
                    f"HX8K) it needs {eng['pe'] * eng['simd']} weight bits per cycle; from a "
                    f"QSPI flash at {QSPI_BITS_PER_CYCLE} bits/cycle it takes the QSPI cycles.")
    return (f"iCE40 UP5K / HX8K: yosys synth_ice40 counts{fmax}. Cycles per query: cocotb + "
            "Icarus on the simulated queries (results equal fixed.decode: exact), through the "
            "cycle model a + b*iterations fitted to them, at the mean iterations of the Cortex-M "
            "query set. FC: the network backend's design of the dense layer (default folding "
            f"PE {eng['pe']} x SIMD {eng['simd']}; its weights are a ROM in block RAM)"
            + (f", synthesised at M^F = {eng['rows']}; elsewhere" if synthesised else ";")
            + " its M^F*D weight bits against the block RAM (UP5K 30 x 4 kbit EBR, "
            "HX8K 32 x 4 kbit; the engine does not use the UP5K's 4 x 256 kbit SPRAM); engine "
            f"cycles = ceil(M^F*D / {eng['pe'] * eng['simd']}) + {eng['depth']} (the schedule's "
            f"{eng['cycles_per_inference']} at M^F = {eng['rows']}), argmax not included."
            + streamed)


def _us(cycles: float | None, rep: dict | None) -> str:
    f = rep.get("fmax_mhz") if rep else None
    return _k(cycles / f) if cycles and f else "-"


def fpga_table(rows: list[dict]) -> list[str]:
    head = ("| M^F (FxM) | decoder | lanes | LUT4 UP5K/HX8K | FF | BRAM | UP5K | HX8K | "
            "cycles/query | us/query UP5K/HX8K | "
            "exact | FC UP5K / HX8K | FC cycles engine / QSPI | cycles fz/FC engine / QSPI |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        fc = r["fpga_fc"]
        for method in METHODS:
            h = r["fpga"].get(method)
            if h is None:
                continue
            up, hx = h["synth"].get("up5k"), h["synth"].get("hx8k")
            cyc = h.get("cycles", {})
            c = cyc.get("cycles_mean_model")
            lanes = ",".join(str(v) for v in LANES[method].values())
            lines.append(
                f"| {size_label(r['F'], r['M'])} | {method} | {lanes} | "
                f"{up['lut4'] if up else '-'}/{hx['lut4'] if hx else '-'} | "
                f"{up['ff'] if up else '-'} | "
                f"{up['bram'] if up else '-'} | {_fit(up, 'up5k')} | {_fit(hx, 'hx8k')} | "
                f"{_k(c)} | {_us(c, up)}/{_us(c, hx)} | {'yes' if cyc.get('exact') else '-'} | "
                f"{_fc_fpga(fc, 'up5k')} / {_fc_fpga(fc, 'hx8k')} | "
                f"{_k(fc['cycles'])} / {_k(fc['cycles_qspi'])} | "
                f"{_ratio(c, fc['cycles'])} / {_ratio(c, fc['cycles_qspi'])} |")
    return lines


# ------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smallest size, 4 queries per noise kind, no place-and-route")
    ap.add_argument("--queries", type=int, default=16, help="queries per noise kind")
    ap.add_argument("--fc-samples", type=int, default=4)
    ap.add_argument("--seeds", default="1,2", help="nextpnr seeds (best Fmax)")
    ap.add_argument("--max-sim-iters", type=int, default=50,
                    help="simulate published queries of at most this many iterations")
    ap.add_argument("--sim-queries", type=int, default=2, help="cocotb queries per noise kind")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "factorizer_targets.json"))
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite the .md tables from the --out JSON")
    args = ap.parse_args()
    if args.render:
        path = Path(args.out)
        md = markdown(json.loads(path.read_text()))
        path.with_suffix(".md").write_text(md)
        print(md)
        return
    sizes = SIZES[:1] if args.quick else SIZES
    n = 4 if args.quick else args.queries
    pnr = not args.quick
    seeds = tuple(int(s) for s in args.seeds.split(","))
    t_start = time.perf_counter()

    # FPGA synthesis runs in the background while the Cortex-M part is measured
    jobs = [(F, M, method, dev, pnr, seeds) for F, M in sizes for method in METHODS
            for dev in DEVICES]
    pool = ProcessPoolExecutor(max_workers=args.jobs)
    futures = {job: pool.submit(_synth, job) for job in jobs}

    rows: list[dict] = []
    fc_ref: dict | None = None
    ref_engine = fc_engine_reference()
    eng = fc_engine(products(*sizes[0]))  # the FC head's FPGA design at the smallest size
    fc_synth = None if args.quick else pool.submit(_fc_synth, eng["files"])
    with tempfile.TemporaryDirectory(prefix="edge-fz-targets-") as tmp:
        work = Path(tmp)
        for F, M in sizes:
            rows_fc = products(F, M)
            cb = fz.random_sbc(F, M, B, L_BLOCK, 0)
            qs = {noise: make_queries(cb, n, noise, seed=1 + k)
                  for k, noise in enumerate(NOISES)}
            row: dict = {"F": F, "M": M, "B": B, "L": L_BLOCK, "products": rows_fc,
                         "cortex_m": {}, "fpga": {}}
            for method in METHODS:
                t0 = time.perf_counter()
                row["cortex_m"][method] = cm_factorizer(cb, method, qs,
                                                        work / f"cm-{F}x{M}")
                print(f"cortex-m {size_label(F, M)} {method}: "
                      f"{row['cortex_m'][method]['instructions_mean']:.0f} instr/query "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
            t0 = time.perf_counter()
            if fc_fits(rows_fc):
                fc = cm_fc_measured(rows_fc, args.fc_samples, work / f"fc-{rows_fc}")
                fc_ref = fc
            else:
                fc = cm_fc_extrapolated(rows_fc, fc_ref or cm_fc_measured(
                    10**4, args.fc_samples, work / "fc-ref"))
            fc["fits_stm32f746"] = fc["flash_bytes"] <= STM32F746_FLASH
            row["cortex_m_fc"] = fc
            print(f"cortex-m FC {rows_fc}x{D}: {fc['instructions']:.0f} instr "
                  f"({'measured' if fc['measured'] else 'extrapolated'}, "
                  f"{time.perf_counter() - t0:.0f} s)", flush=True)
            for method in METHODS:
                cyc = fpga_cycles(cb, method, qs, 1 if args.quick else args.sim_queries,
                                  args.max_sim_iters, work / f"sim-{F}x{M}-{method}")
                if cyc.get("measured_queries"):
                    print(f"fpga cycles {size_label(F, M)} {method}: {cyc['cycles']} at "
                          f"iterations {cyc['iterations']} (exact {cyc['exact']}, "
                          f"{cyc['seconds']} s)", flush=True)
                row["fpga"][method] = {"cycles": cyc, "synth": {}}
            row["fpga_fc"] = fpga_fc(rows_fc, eng)
            rows.append(row)
        for (F, M, method, dev, _pnr, _seeds), fut in futures.items():
            rep = fut.result()
            row = next(r for r in rows if (r["F"], r["M"]) == (F, M))
            row["fpga"][method]["synth"][dev] = rep
            print(f"fpga synth {size_label(F, M)} {method} {dev}: LUT4 {rep['lut4']} "
                  f"BRAM {rep['bram']} Fmax {rep.get('fmax_mhz')} ({rep['seconds']} s)",
                  flush=True)
    if fc_synth is not None:
        rep = fc_synth.result()
        rows[0]["fpga_fc"]["synth"] = rep
        print(f"fpga synth FC {rows[0]['products']}x{D}: LUT4 {rep['lut4']} BRAM {rep['bram']} "
              f"({rep['seconds']} s)", flush=True)
    pool.shutdown()

    out = {"board": BOARD, "B": B, "L": L_BLOCK, "D": D, "quick": args.quick,
           "queries_per_noise": n, "noises": list(NOISES), "fpga_lanes": LANES,
           "argmax_instr_per_row": ARGMAX_INSTR_PER_ROW, "toolchain": toolchain_versions(),
           "python": platform.python_version(), "rows": rows,
           "fc_engine": {k: v for k, v in eng.items() if k != "files"},
           "fc_streamed_engine_reference": ref_engine,
           "seconds": round(time.perf_counter() - t_start, 1)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    md = markdown(out)
    path.with_suffix(".md").write_text(md)
    print()
    print(md)
    print(f"wrote {path} and {path.with_suffix('.md')} in {out['seconds']} s")


def markdown(out: dict) -> str:
    """Both tables with their captions, from the JSON record (so --render can redo them)."""
    rows = out["rows"]
    caption = fpga_caption(not out["quick"], out["fc_engine"],
                           out["fc_streamed_engine_reference"], "synth" in rows[0]["fpga_fc"])
    return "\n".join([cortex_m_caption(out["queries_per_noise"]), "", *cortex_m_table(rows), "",
                      caption, "", *fpga_table(rows), ""])


if __name__ == "__main__":
    main()
