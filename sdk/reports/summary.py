"""`edge-sdk inspect`: what each layer is, how wide its data is, what it costs in memory."""

from __future__ import annotations

import json
import math

from ..bitpack import n_words
from ..ir import layers as L
from ..ir.graph import Graph, TensorInfo
from .table import kv_table


def _bits(info: TensorInfo) -> str:
    return {"bipolar": "1", "ternary": "2 (±1/0)"}.get(info.kind, f"{info.bits}")


def layer_rows(graph: Graph) -> list[dict]:
    infos = graph.infos()
    rows = []
    for layer in graph.layers:
        out = infos[layer.output]
        inp = infos[layer.inputs[0]] if layer.inputs else None
        row = {
            "layer": layer.name,
            "type": type(layer).__name__,
            "source": layer.source,
            "in_bits": _bits(inp) if inp else "",
            "out_shape": list(out.shape),
            "out_kind": out.kind,
            "out_bits": _bits(out),
            "weights": "",
            "params": 0,
            "packed_bytes": 0,
            "float32_bytes": 0,
        }
        if isinstance(layer, (L.Dense, L.Conv2d)):
            w = layer.weights
            row["weights"] = "ternary" if w.ternary else "binary"
            row["params"] = w.rows * w.k
            row["packed_bytes"] = w.rows * n_words(w.k) * 4 * (2 if w.ternary else 1)
            row["float32_bytes"] = w.rows * w.k * 4
        elif isinstance(layer, L.Threshold):
            c = int(layer.tau.shape[0])
            row["params"] = c
            row["packed_bytes"] = c * max(1, math.ceil(inp.bits / 8))  # one threshold / channel
            row["float32_bytes"] = c * 4 * 4  # the BN it replaces: gamma, beta, mean, var
            row["ties"] = int(layer.zero.sum())
        elif isinstance(layer, L.Scores):
            n = sum(L.channels_of(op) * (4 if isinstance(op, L.BatchNorm) else 1) for op in layer.ops)
            row["params"] = n
            row["packed_bytes"] = row["float32_bytes"] = n * 4
        rows.append(row)
    return rows


def totals(rows: list[dict]) -> dict:
    return {k: sum(r[k] for r in rows) for k in ("params", "packed_bytes", "float32_bytes")}


def format_table(graph: Graph) -> str:
    rows = layer_rows(graph)
    cols = [("layer", "layer"), ("type", "type"), ("weights", "weights"), ("in_bits", "in bits"),
            ("out_shape", "out shape"), ("out_bits", "out bits"), ("params", "params"),
            ("packed_bytes", "packed B"), ("float32_bytes", "float32 B"), ("source", "source")]
    cells = [[str(h) for _, h in cols]]
    for r in rows:
        cells.append([_cell(r[k]) for k, _ in cols])
    t = totals(rows)
    cells.append(["total", "", "", "", "", "", str(t["params"]), str(t["packed_bytes"]),
                  str(t["float32_bytes"]), ""])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
    ratio = t["float32_bytes"] / t["packed_bytes"] if t["packed_bytes"] else float("nan")
    src = graph.source
    head = [
        (f"model: {graph.name} ({src.get('format', 'ir')}, opset {src.get('opset', '-')}, "
        f"producer '{src.get('producer', '')}')")
    ]
    ties = sum(r.get("ties", 0) for r in rows)
    tail = [
        (f"memory: {t['packed_bytes']} B packed vs {t['float32_bytes']} B as float32 "
        f"({ratio:.1f}x smaller)")
    ]
    if ties:
        tail.append(f"note: {ties} channel(s) give Sign(0) = 0 at one accumulator value "
                    "(exact ties, reproduced by the golden model)")
    return "\n".join(head + lines + tail)


def _cell(v) -> str:
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v) if v not in ("", None) else "-"


def inspect_data(graph: Graph) -> dict:
    """What `inspect --json` prints and `Model.inspect().data` holds: model, layers, totals."""
    rows = layer_rows(graph)
    return {"model": graph.name, "source": graph.source, "layers": rows, "totals": totals(rows)}


def as_json(graph: Graph) -> str:
    return json.dumps(inspect_data(graph), indent=1, sort_keys=True)


def format_factorizer(s: dict) -> str:
    """`inspect` for a network ending in a BlockCodeFactorizer node."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted(s["options"].items())) or "defaults"
    rows = [
        ("network", f"{s['network_nodes']} ONNX nodes (run by onnxruntime) -> query [N, {s['D']}]"),
        ("factorizer", f"node '{s['node']}', decoder {s['decoder']} ({opts})"),
        ("codes", (f"F={s['F']} factors x M={s['M']} codevectors, B={s['B']} blocks of "
                  f"L={s['L']} (D={s['D']})")),
        ("classes", f"M^F = {s['classes']:,}"),
        ("codebooks", f"{s['codebook_bytes']:,} B ({s['codebook_form']})"),
        ("vs FC head", (f"{s['fc_binary_bytes']:,} B binary / {s['fc_float32_bytes']:,} B float32 "
                       f"for {s['classes']:,} rows of {s['D']}")),
    ]
    t = s.get("targets")
    if t is not None:
        rows.append(("on targets", t["text"]))
    return kv_table(rows)
