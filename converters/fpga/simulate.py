"""Run the generated Verilog (cocotb 2 + Icarus) or the Amaranth netlist (fast path) on inputs.

Both return the int64 tensor that feeds the IR's `Scores` layer, bit-exact with
`golden.run_all(graph, x)[scores input]`, plus cycles measured in simulation: the first
inference's latency (first input beat accepted to last output beat) and the steady-state
initiation interval with inputs streamed back to back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ... import golden
from ...errors import EdgeError
from ...ir.graph import Graph
from .generate import FORMAT, MANIFEST, VERILOG, Folding, build, manifest
from .stream_io import beats_per_inference, decode_outputs, encode_inputs

MIN_VERILATOR = (5, 36)


def _load(design: str | os.PathLike | Mapping[str, str]) -> tuple[dict[str, str], dict]:
    if isinstance(design, Mapping):
        files = dict(design)
    else:
        folder = Path(design)
        if not (folder / MANIFEST).is_file() or not (folder / VERILOG).is_file():
            raise EdgeError(f"{folder}: not an fpga output folder (needs {VERILOG} and "
                            f"{MANIFEST})")
        files = {VERILOG: (folder / VERILOG).read_text(), MANIFEST: (folder / MANIFEST).read_text()}
    if VERILOG not in files or MANIFEST not in files:
        raise EdgeError(f"fpga design is missing {VERILOG} or {MANIFEST}")
    info = json.loads(files[MANIFEST])
    if info.get("format") != FORMAT:
        raise EdgeError(f"fpga manifest format {info.get('format')!r} is not {FORMAT!r}")
    return files, info


def _inputs(graph: Graph, info: dict, x: np.ndarray) -> tuple[np.ndarray, list[int]]:
    q = golden.quantise_input(graph.layers[0], x)
    if list(q.shape[1:]) != list(info["input"]["shape"]):
        raise EdgeError(f"fpga design takes inputs of shape {info['input']['shape']}, the graph "
                        f"gives {list(q.shape[1:])}: design and model do not match")
    if q.shape[0] < 1:
        raise EdgeError("input: the batch is empty")
    return q, encode_inputs(info["input"], q)


def _cycles(info: dict, t_in: list[int], t_out: list[int], n: int) -> tuple[int, int]:
    per = beats_per_inference(info["output"])
    latency = t_out[per - 1] - t_in[0] + 1
    if n < 2:
        return latency, latency
    return latency, round((t_out[n * per - 1] - t_out[per - 1]) / (n - 1))


def verilator_ok() -> bool:
    """Verilator usable by cocotb 2 (>= 5.036) on PATH."""
    exe = shutil.which("verilator")
    if not exe:
        return False
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"Verilator (\d+)\.(\d+)", out)
    return bool(found) and (int(found[1]), int(found[2])) >= MIN_VERILATOR


BENCH = "edge_sdk.converters.fpga.cocotb_bench"


def run_cocotb(verilog: str, top: str, beats: list[int], output_beats: int, max_cycles: int, *,
               weights: list[int] | None = None, simulator: str = "icarus",
               work_dir: str | os.PathLike | None = None, probes: list[str] | None = None,
               bench: str = BENCH, build_args: tuple[str, ...] = ()) -> dict:
    """Compile `verilog` and stream `beats` through `top` under cocotb; raw result dict.

    The top must have stream ports `i` and `o` (and `w` when `weights` is given). Returns
    {"outputs": [int], "t_in": [cycle], "t_out": [cycle], "cycles": total}, and with
    `probes` (stage instance names, see probes.py) "probes": [[int] per stage]. `bench` is the
    cocotb test module reading the same job/result files (the factorizer has its own).
    """
    from cocotb_tools.runner import get_runner

    if simulator == "verilator" and not verilator_ok():
        raise EdgeError(f"fpga: cocotb 2 needs Verilator >= {MIN_VERILATOR[0]}."
                        f"{MIN_VERILATOR[1]:03d}; use simulator='icarus'")
    if simulator not in ("icarus", "verilator"):
        raise EdgeError(f"fpga: unknown simulator {simulator!r} (icarus or verilator)")
    own = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="edge_fpga_sim_")) if own else Path(work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        src = work / f"{top}.v"
        src.write_text(verilog)
        job, result, log = work / "job.json", work / "result.json", work / "sim.log"
        spec = {"beats": [format(b, "x") for b in beats], "output_beats": output_beats,
                "max_cycles": max_cycles}
        if weights:
            spec["weights"] = [format(w, "x") for w in weights]
        if probes:
            spec["probes"] = list(probes)
        job.write_text(json.dumps(spec))
        result.unlink(missing_ok=True)
        runner = get_runner(simulator)
        runner.build(sources=[src], hdl_toplevel=top, build_dir=work / "build",
                     timescale=("1ns", "1ps"), log_file=work / "build.log", always=True,
                     build_args=list(build_args))
        runner.test(test_module=bench, hdl_toplevel=top,
                    build_dir=work / "build", test_dir=work,
                    extra_env={"EDGE_FPGA_JOB": str(job), "EDGE_FPGA_RESULT": str(result)},
                    log_file=log, timescale=("1ns", "1ps"))
        if not result.is_file():
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"fpga simulation produced no result; log tail:\n{tail}")
        res = json.loads(result.read_text())
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    res["outputs"] = [int(h, 16) for h in res["outputs"]]
    if "probes" in res:
        res["probes"] = [[int(h, 16) for h in rec] for rec in res["probes"]]
    return res


def simulate(verilog_dir_or_files: str | os.PathLike | Mapping[str, str], graph: Graph,
             x: np.ndarray, *,
             simulator: str = "icarus", work_dir: str | os.PathLike | None = None
             ) -> tuple[np.ndarray, int, int]:
    """Stream every input of `x` through the generated Verilog under cocotb.

    verilog_dir_or_files: a folder holding edge_net.v + edge_net.json (what `convert --target
    fpga` writes) or the files dict from `generate`.
    Returns (scores int64 [N, ...], cycles_per_inference, initiation_interval).
    """
    files, info = _load(verilog_dir_or_files)
    q, beats = _inputs(graph, info, x)
    n = q.shape[0]
    n_out = n * beats_per_inference(info["output"])
    sched = info["schedule"]
    limit = 4 * (sched["cycles_per_inference"] + n * sched["initiation_interval"]) + 10_000
    res = run_cocotb(files[VERILOG], info["top"], beats, n_out, limit, simulator=simulator,
                     work_dir=work_dir)
    scores = decode_outputs(info["output"], res["outputs"], n)
    cycles, ii = _cycles(info, res["t_in"], res["t_out"], n)
    return scores, cycles, ii


def simulate_amaranth(graph: Graph, x: np.ndarray, pe: Folding = None, simd: Folding = None
                      ) -> tuple[np.ndarray, int, int]:
    """The fast path: the same design in Amaranth's simulator, no Verilog, no HDL simulator."""
    from ...hw.simtools import run_streams

    p, net, sched = build(graph, pe, simd)
    info = manifest(p, sched)
    q, beats = _inputs(graph, info, x)
    n = q.shape[0]
    n_out = n * beats_per_inference(info["output"])
    limit = 4 * (sched.cycles_per_inference + n * sched.initiation_interval) + 10_000
    out, t_out, t_in = run_streams(net, net.i, net.o, beats, n_out, max_cycles=limit)
    scores = decode_outputs(info["output"], out, n)
    cycles, ii = _cycles(info, t_in, t_out, n)
    return scores, cycles, ii
