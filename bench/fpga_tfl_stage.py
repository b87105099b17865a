"""FPGA cost of one TFLite int8 ADD stage (hw/tflite_stages.TflStage) on the UP5K.

Why: the stage pipelines TFLite's MultiplyByQuantizedMultiplier chain (every product in a
cycle of its own); this measures what that buys against another version of the stage, e.g.
the unpipelined one of an older commit, in the same run. One TflAdd of two int8 streams,
8 channels on one lane, synthesised alone with yosys synth_ice40 and placed with nextpnr-ice40
(seed 1) inside converters/fpga/synth's pin harness.

    python bench/fpga_tfl_stage.py                          # this tree, LUT and DSP products
    git show 271112c:hw/tflite_stages.py > /tmp/old.py
    python bench/fpga_tfl_stage.py --baseline /tmp/old.py   # adds the baseline's rows

Prints a table and writes bench/results/fpga_tfl_stage.json. DSP-product rows have no Fmax
when the stage needs more SB_MAC16 than the UP5K's 8 (nextpnr cannot place it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from edge_sdk.converters.fpga.dag import tfl_spec
from edge_sdk.converters.fpga.synth import synth_report
from edge_sdk.hw.specs import Values
from edge_sdk.hw.tflite_stages import TflStage
from edge_sdk.ir import layers as L

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("lut4", "ff", "carry", "dsp", "bram", "fmax_mhz")


def add_spec(dsp: bool):
    """The measured stage: random MBQM multipliers/shifts, fixed by seed 0."""
    rng = np.random.default_rng(0)
    c = 8
    layer = L.TflAdd("add", ["a", "b"], "y", mult1=rng.integers(1 << 30, 1 << 31, size=c),
                     shift1=rng.integers(-3, 0, size=c),
                     mult2=rng.integers(1 << 30, 1 << 31, size=c),
                     shift2=rng.integers(-3, 0, size=c),
                     mult_out=rng.integers(1 << 30, 1 << 31, size=c),
                     shift_out=rng.integers(-20, -16, size=c), zero_point=-3, lo=-128, hi=127)
    vals = Values("int", -128 + 5, 127 + 5)
    return replace(tfl_spec(layer, 1, c, 4, c, (vals, vals), Values("int", -125, 130)), dsp=dsp)


def measure(stage_cls, dsp: bool, pnr: bool) -> dict:
    stage = stage_cls(add_spec(dsp))
    text = verilog.convert(stage, name="tfl_add")
    r = synth_report({"edge_net.v": text}, "up5k", pnr=pnr, top="tfl_add")
    return {"products": "dsp" if dsp else "luts", "latency": stage.latency,
            **{k: r[k] for k in KEYS}}


def load_stage(path: str):
    """TflStage from another copy of hw/tflite_stages.py."""
    spec = importlib.util.spec_from_file_location("edge_sdk.hw._tflite_stages_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.TflStage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", help="another hw/tflite_stages.py to measure beside this one")
    ap.add_argument("--no-pnr", action="store_true", help="yosys counts only, no Fmax")
    a = ap.parse_args()
    versions = [("this tree", TflStage)]
    if a.baseline:
        versions.insert(0, (f"baseline {a.baseline}", load_stage(a.baseline)))
    rows = []
    print("| version | products | latency | LUT4 | FF | carry | DSP | BRAM | Fmax MHz |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, cls in versions:
        for dsp in (False, True):
            r = {"version": label, **measure(cls, dsp, not a.no_pnr)}
            rows.append(r)
            print(f"| {label} | {r['products']} | {r['latency']} | "
                  + " | ".join(str(r[k]) for k in KEYS) + " |", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fpga_tfl_stage.json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
