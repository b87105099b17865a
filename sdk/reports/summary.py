"""`edge-sdk inspect`: what each layer is, how wide its data is, what it costs in memory."""

from __future__ import annotations

import json
import math

import numpy as np

from ..bitpack import n_words
from ..errors import EdgeError
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
        if isinstance(layer, (L.Dense, L.Conv2d)) and L.is_int8(layer.weights):
            w = layer.weights
            row["weights"] = "int8" + (" (calibrated)" if w.float_values is not None else "")
            row["params"] = w.rows * w.k
            row["packed_bytes"] = w.rows * w.k  # one byte per weight, never bit-packed
            row["float32_bytes"] = w.rows * w.k * 4
        elif isinstance(layer, L.Quantize):
            row["params"] = 2
            row["weights"] = f"scale {layer.scale:.4g}" + ("" if layer.in_source else " (cal)")
            row["quantize"] = (f"scale {layer.scale:.6g}, zero point {layer.zero_point}, "
                               f"[{layer.lo}, {layer.hi}]"
                               + ("" if layer.in_source else " (calibrated)"))
        elif isinstance(layer, (L.Dense, L.Conv2d)):
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
        elif isinstance(layer, L.Requant):
            c = int(layer.mult.shape[0])
            row["params"] = 2 * c
            row["packed_bytes"] = c * 12  # int32 multiplier + int64 offset per channel
            row["float32_bytes"] = sum(_op_params(op) for op in layer.ops) * 4
        elif isinstance(layer, (L.PRelu, L.FixedThreshold)):
            c = int(infos[layer.inputs[0]].shape[0])
            row["params"] = c
            row["packed_bytes"] = c * 4
            row["float32_bytes"] = c * 4 + sum(_op_params(op) for op in getattr(layer, "ops", []))
        if out.kind == "fixed":
            row["frac"] = out.frac
        if isinstance(layer, L.Scores):
            n = sum(L.channels_of(op) * (4 if isinstance(op, L.BatchNorm) else 1) for op in layer.ops)
            row["params"] = n
            row["packed_bytes"] = row["float32_bytes"] = n * 4
        rows.append(row)
    return rows


def _op_params(op: L.FloatOp) -> int:
    return L.channels_of(op) * (4 if isinstance(op, L.BatchNorm) else 1)


AGREEMENT_SAMPLES = 64


def fixed_point_agreement(graph: Graph, n: int = AGREEMENT_SAMPLES, seed: int = 0) -> dict | None:
    """How `run --fixed-point` agrees with `run` (float32 real-valued layers) on `n`
    deterministic random inputs in the input's integer range; None for graphs that have no
    real-valued layers (both modes are then the same integers)."""
    from .. import golden
    from ..passes.fixed_point import has_real_valued

    if not has_real_valued(graph):
        return None
    inp = graph.layers[0]
    q = np.random.default_rng(seed).integers(inp.lo, inp.hi + 1, size=(n, *inp.shape))
    x = q if inp.scale == 1.0 and inp.zero_point == 0 else (q - inp.zero_point) * inp.scale
    try:
        ref = golden.run(graph, x)
        got = golden.run(graph, x, fixed_point=True)
    except EdgeError:
        return None
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)), initial=0.0))
    out = {"samples": n, "input_range": [int(inp.lo), int(inp.hi)], "max_abs_err": err}
    if ref.ndim == 2 and ref.shape[1] > 1:
        out["argmax_agree"] = float(np.mean(got.argmax(1) == ref.argmax(1)))
    return out


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
    agree = fixed_point_agreement(graph)
    if agree is not None:
        tail.append(_agreement_line(agree))
    return "\n".join(head + lines + tail)


def _agreement_line(a: dict) -> str:
    lo, hi = a["input_range"]
    am = (f"argmax agrees on {100 * a['argmax_agree']:.1f}%, " if "argmax_agree" in a else "")
    return (f"fixed point (run --fixed-point) vs float32 (run) on {a['samples']} random inputs "
            f"in [{lo}, {hi}]: {am}max abs error {a['max_abs_err']:.3g}")


def _cell(v) -> str:
    if isinstance(v, list):
        return "x".join(map(str, v))
    return str(v) if v not in ("", None) else "-"


def inspect_data(graph: Graph) -> dict:
    """What `inspect --json` prints and `Model.inspect().data` holds: model, layers, totals."""
    rows = layer_rows(graph)
    data = {"model": graph.name, "source": graph.source, "layers": rows, "totals": totals(rows)}
    agree = fixed_point_agreement(graph)
    if agree is not None:
        data["fixed_point_agreement"] = agree
    return data


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
