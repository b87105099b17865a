"""`edge-sdk report OUT/ --html`: a build's report as one self-contained HTML page.

The page holds what `report` prints (as tables, with every figure of `report.json`), the
layers of the IR the build was made from, and plots drawn with matplotlib and embedded as
base64 PNGs, so the one file can be mailed or attached to a CI run without its folder.
Cortex-M: flash and RAM split into weights/arena and the rest, MACs per layer; FPGA: LUT4, FF
and block RAM as a share of each device, Fmax per device, cycles per pipeline stage against
the initiation interval. Rendering is a pure function of the folder's files, and the PNGs
carry no timestamp or version metadata, so the same build gives the same bytes.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path

from ..errors import EdgeError
from ..ir import layers as L
from ..ir.graph import Graph
from .summary import layer_rows

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 62em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
"""


def render(folder: Path, meta: dict, report: dict, ir: Graph) -> str:
    """The whole page for the build folder `folder` (meta: its edge-sdk.json, report: its
    report.json as the backend returns it, ir: the lowered IR it was converted from)."""
    plt = _matplotlib()
    target = meta.get("target", "?")
    title = f"edge-sdk report: {meta.get('model', ir.name)} on {target}"
    body = [f"<h1>{escape(title)}</h1>", "<h2>Build</h2>", _kv(_build_rows(folder, meta))]
    if target == "cortex-m":
        body += _cortexm(report, ir, plt)
    elif target == "fpga":
        body += _fpga(folder, report, plt)
    else:
        raise EdgeError(f"{folder}: no HTML report for target {target!r}")
    body += _layers(ir, plt)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _matplotlib():
    """The Figure class of matplotlib's object API (no pyplot: no global state, no GUI)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EdgeError("report --html draws its plots with matplotlib, which is not installed "
                        "(pip install matplotlib)") from None
    return Figure


# ---------------------------------------------------------------------------- sections
def _build_rows(folder: Path, meta: dict) -> list[tuple[str, object]]:
    src = meta.get("source", {})
    opts = ", ".join(f"{k}={v}" for k, v in sorted(meta.get("options", {}).items())) or "-"
    return [("folder", str(folder)), ("model", meta.get("model", "")),
            ("source", f"{src.get('file', '')} ({src.get('format', '?')})"),
            ("target", meta.get("target", "")), ("options", opts)]


def _cortexm(r: dict, ir: Graph, figure) -> list[str]:
    rows: list[tuple[str, object]] = [("board", f"{r.get('board')} ({r.get('cpu')})")]
    if r.get("library"):
        rows.append(("build", "C library (no firmware): sizes of the model's objects alone"))
    size = r.get("size", {})
    for key in ("text", "data", "bss", "stack"):
        if key in size:
            rows.append((f"size: {key} (B)", size[key]))
    for key, label in (("flash_bytes", "flash (B)"), ("ram_bytes", "RAM (B)"),
                       ("weight_bytes", "weights (B)"), ("arena_bytes", "arena (B)"),
                       ("macs", "MACs"), ("binary_macs", "binary MACs")):
        if key in r:
            rows.append((label, r[key]))
    inp = r.get("input")
    if inp:
        lo, hi = inp["range"]
        rows.append(("input", f"{inp['elements']} x {inp['dtype']} in [{lo}, {hi}]"))
    ipi = r.get("instructions_per_inference")
    if ipi:
        rows += [("instructions per inference (mean)", round(ipi["mean"])),
                 ("instructions per inference (min / max)", f"{ipi['min']} / {ipi['max']}"),
                 ("instructions counted by", f"{ipi['counter']}, {ipi['samples']} samples"),
                 ("instructions per MAC", f"{r['instructions_per_mac']:.3f}")]
    out = ["<h2>Cortex-M figures</h2>", _kv(rows)]
    if "flash_bytes" in r:
        out.append(_img(_memory_plot(r, figure), "flash and RAM"))
    return out


def _memory_plot(r: dict, figure) -> bytes:
    """Flash and RAM, each on its own scale (RAM is often 1 % of flash)."""
    weights, arena = r.get("weight_bytes", 0), r.get("arena_bytes", 0)
    bars = [("flash", [("weights", weights), ("code, other constants",
                                              r["flash_bytes"] - weights)]),
            ("RAM", [("arena", arena), ("other static data", r["ram_bytes"] - arena)])]
    fig = figure(figsize=(7, 2.4))
    colors = ("#4c72b0", "#c8c8c8")
    for ax, (name, parts) in zip(fig.subplots(2, 1), bars, strict=True):
        left = 0
        for color, (label, value) in zip(colors, parts, strict=True):
            ax.barh(0, value, left=left, color=color, label=f"{label}: {value} B")
            left += value
        ax.set_yticks([0], [name])
        ax.set_xlim(0, max(left, 1))
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.axes[0].set_title(f"memory on {r.get('board')} (bytes)")
    fig.tight_layout()
    return _png(fig)


def _fpga(folder: Path, r: dict, figure) -> list[str]:
    s = r.get("schedule", {})
    out = ["<h2>FPGA figures</h2>", _kv([
        ("board", r.get("board")),
        ("cycles per inference", s.get("cycles_per_inference")),
        ("initiation interval (cycles)", s.get("initiation_interval"))])]
    stages = _stages(folder)
    if stages:
        cols = ("name", "layers", "kind", "pe", "simd", "macs", "compute_cycles", "depth")
        out += ["<h3>Pipeline stages</h3>", _table(cols, [[st.get(c, "") for c in cols]
                                                          for st in stages])]
        out.append(_img(_stage_plot(stages, s.get("initiation_interval"), figure),
                        "cycles per stage"))
    devices = r.get("devices", {})
    if devices:
        cols = ("device", "lut4", "device_lut4", "ff", "carry", "bram", "device_bram",
                "fmax_mhz", "inferences_per_s", "fits")
        out += ["<h3>Synthesis and place and route</h3>",
                _table(cols, [[d.get(c, dev if c == "device" else "") for c in cols]
                              for dev, d in sorted(devices.items())])]
        tools = next(iter(devices.values())).get("toolchain")
        if tools:
            out.append(f"<p>toolchain: {escape(json.dumps(tools, sort_keys=True))}</p>")
        out.append(_img(_device_plot(devices, figure), "resources and Fmax per device"))
    return out


def _stages(folder: Path) -> list[dict]:
    path = folder / "edge_net.json"
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text()).get("schedule", {}).get("stages", [])
    except ValueError as exc:
        raise EdgeError(f"{path}: unreadable ({exc})") from None


def _stage_plot(stages: list[dict], ii: int | None, figure) -> bytes:
    fig = figure(figsize=(7, 2.6))
    ax = fig.subplots()
    names = [st["name"] for st in stages]
    ax.bar(names, [st["compute_cycles"] for st in stages], color="#4c72b0")
    if ii:
        ax.axhline(ii, color="#c44e52", linestyle="--", label=f"initiation interval {ii}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylabel("cycles per frame")
    ax.set_title("compute cycles per stage")
    return _png(fig)


def _device_plot(devices: dict, figure) -> bytes:
    fig = figure(figsize=(7, 2.8))
    util, fmax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    names = sorted(devices)
    width = 0.25
    for i, (key, cap, label) in enumerate((("lut4", "device_lut4", "LUT4"),
                                           ("ff", "device_lut4", "FF"),
                                           ("bram", "device_bram", "BRAM"))):
        shares = [100 * devices[d].get(key, 0) / devices[d][cap] if devices[d].get(cap) else 0
                  for d in names]
        util.bar([j + (i - 1) * width for j in range(len(names))], shares, width, label=label)
    util.set_xticks(range(len(names)), names)
    util.set_ylabel("% of the device")
    util.legend(fontsize=8)
    util.set_title("resources")
    fmax.bar(names, [devices[d].get("fmax_mhz") or 0 for d in names], color="#55a868")
    fmax.set_ylabel("MHz")
    fmax.set_title("Fmax")
    fig.tight_layout()
    return _png(fig)


def _layers(ir: Graph, figure) -> list[str]:
    rows = layer_rows(ir)
    macs = layer_macs(ir)
    cols = ("layer", "type", "weights", "in_bits", "out_shape", "out_bits", "macs", "params",
            "packed_bytes", "float32_bytes")
    table = [[macs.get(r["layer"], "") if c == "macs" else _cell(r[c]) for c in cols]
             for r in rows]
    out = ["<h2>Layers</h2>", _table(cols, table)]
    if macs:
        fig = figure(figsize=(7, 2.6))
        ax = fig.subplots()
        ax.bar(list(macs), list(macs.values()), color="#4c72b0")
        ax.set_ylabel("MACs per inference")
        ax.set_title("MACs per layer")
        ax.tick_params(axis="x", labelsize=7)
        out.append(_img(_png(fig), "MACs per layer"))
    return out


def layer_macs(ir: Graph) -> dict[str, int]:
    """Multiply-accumulates per inference of each dense/conv layer (conv: per output pixel)."""
    infos = ir.infos()
    out = {}
    for layer in ir.layers:
        if isinstance(layer, (L.Dense, L.Conv2d)):
            pixels = 1
            if isinstance(layer, L.Conv2d):
                shape = infos[layer.output].shape
                pixels = int(shape[1]) * int(shape[2])
            out[layer.name] = layer.weights.rows * layer.weights.k * pixels
    return out


# ---------------------------------------------------------------------------- HTML pieces
def _cell(v) -> object:
    if isinstance(v, list):
        return "x".join(map(str, v))
    return v if v not in ("", None) else "-"


def _td(v) -> str:
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(v, float):
        v = f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return f"<td class=\"n\">{escape(str(v))}</td>" if numeric else f"<td>{escape(str(v))}</td>"


def _table(cols, rows) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _kv(rows: list[tuple[str, object]]) -> str:
    body = "\n".join(f"<tr><th>{escape(str(k))}</th>{_td(v)}</tr>" for k, v in rows)
    return f"<table>\n{body}\n</table>"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, metadata={"Software": None})
    return buf.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<img alt=\"{escape(alt)}\" src=\"data:image/png;base64,{data}\">"
