"""The FPGA build of a model ending in the factorizer: network engine -> block softmax -> decoder.

Why one top: the network's integer scores never leave the chip; the engine (as backend.py builds
it for the IR), the integer block softmax (hw/block_softmax.py) and the fixed-point decoder
(hw/factorizer*.py) are chained by valid/ready streams (with a one-query FIFO before the
decoder) in one Verilog module `edge_factorizer`, whose output beat is the decoder's: F indices then the iterations. A model whose query is its
input has no network: the top is the decoder block alone, fed the integer queries.
Either way the design is simulated with the factorizer's cocotb bench (event-driven, so the
thousands of idle cycles of an inference cost no Python) on Icarus with -g2005
(factorizer_sim.ICARUS_ARGS), and must equal DeployedHead.decode of the golden queries.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...errors import EdgeError
from ...factorizer.block_softmax import EXP_BITS
from ...factorizer.deploy import DeployedHead
from ...hw.block_softmax import BlockSoftmaxStage
from ...hw.factorizer_spec import FactorizerSpec, default_spec, published_spec
from ...hw.toolchain import to_verilog
from ...ir.graph import Graph
from . import factorizer_sim
from .backend import DEFAULT_BOARD, _check_fit
from .generate import _header as network_header
from .generate import build as build_network
from .generate import manifest as network_manifest
from .stream_io import encode_inputs

TOP = factorizer_sim.TOP
VERILOG = f"{TOP}.v"
MANIFEST = f"{TOP}.json"
FORMAT = "edge-sdk-fpga-factorizer/1"
ENTRY_VALUE_BITS = EXP_BITS + 1  # query entries from the block softmax are <= 2^EXP_BITS
MEASURE_SAMPLES = 3  # deterministic inputs simulated at convert time for the report's cycles
# decoder parallelism: the smallest lane counts, as bench/factorizer_targets.py measures them
# (the published block needs one lane to fit the UP5K's block RAM at D = 512; two search lanes
# fit and halve the default's products loop, which is short next to the query normalisation)
LANES = {"published": {"lanes": 1, "corr_lanes": 1}, "default": {"lanes": 2}}


class FactorizerNet(wiring.Component):
    """Network -> block softmax -> query FIFO -> decoder, chained by streams.

    Why the FIFO (one query deep, one block RAM): the decoder's intake stops while it
    normalises a query, and without room for the next query the network would stall behind
    it; with it the head keeps pace with the network's initiation interval whenever its own
    work per query is shorter. Submodule names are fixed, so the Verilog is deterministic.
    """

    def __init__(self, net: wiring.Component, softmax: BlockSoftmaxStage,
                 decoder: wiring.Component):
        self.net, self.softmax, self.decoder = net, softmax, decoder
        self.depth = softmax.n
        super().__init__({"i": In(stream.Signature(net.i.payload.shape().width)),
                          "o": Out(stream.Signature(decoder.o.payload.shape().width))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.net = self.net
        m.submodules.softmax = self.softmax
        m.submodules.decoder = self.decoder
        m.submodules.queries = fifo = SyncFIFOBuffered(width=ENTRY_VALUE_BITS, depth=self.depth)
        wiring.connect(m, wiring.flipped(self.i), self.net.i)
        wiring.connect(m, self.net.o, self.softmax.i)
        q, d = self.softmax.o, self.decoder.i
        m.d.comb += [fifo.w_data.eq(q.payload), fifo.w_en.eq(q.valid), q.ready.eq(fifo.w_rdy),
                     d.payload.eq(fifo.r_data), d.valid.eq(fifo.r_rdy), fifo.r_en.eq(d.ready)]
        wiring.connect(m, self.decoder.o, wiring.flipped(self.o))
        return m


def spec_of(head: DeployedHead, options: dict | None = None) -> FactorizerSpec:
    """The decoder block's spec: the head's fixed-point decoder with the build's lane counts.

    options["factorizer_lanes"]: {"lanes": k, "corr_lanes": k} (published) or {"lanes": k}
    (default), over LANES.
    """
    lanes = dict(LANES[head.method])
    extra = (options or {}).get("factorizer_lanes") or {}
    if (not isinstance(extra, dict) or set(extra) - set(lanes)
            or not all(isinstance(v, int) and v >= 1 for v in extra.values())):
        raise EdgeError(f"fpga: factorizer_lanes {extra!r}: the {head.method} decoder takes "
                        f"{', '.join(sorted(lanes))} (integers >= 1)")
    lanes.update({k: int(v) for k, v in extra.items()})
    if head.method == "published":
        return published_spec(head.indices, head.L, **head.target_options, **lanes)
    return default_spec(head.indices, head.L, **lanes)


def _score_lanes(out: dict, head: DeployedHead) -> int:
    """Lanes per score beat; refuses score streams the block softmax cannot take in order."""
    _f, _m, b, length = head.shape
    n = b * length
    h, w, c = out["frame"]
    if (h, w, c) != (1, 1, n) or out["kind"] != "int" or out["perm"] != list(range(n)):
        raise EdgeError(f"node '{head.node_name}' (BlockCodeFactorizer): the fpga engine gives "
                        f"the scores as frame {out['frame']} ({out['kind']}); the block softmax "
                        f"needs {n} integer scores in order (a dense layer last)")
    lanes = int(out["lanes"])
    if out["beats_per_pixel"] != -(-n // lanes):
        raise EdgeError(f"node '{head.node_name}' (BlockCodeFactorizer): {out['beats_per_pixel']}"
                        f" score beats of {lanes} lanes for {n} scores")
    return lanes


def _design(ir: Graph | None, head: DeployedHead, options: dict) -> tuple[str, dict]:
    """(Verilog text, manifest) of the build."""
    spec = spec_of(head, options)
    F, M, B, L = head.shape
    info: dict = {"format": FORMAT, "top": TOP, "verilog": VERILOG, "method": spec.method,
                  "F": F, "M": M, "B": B, "L": L, "index_bits": spec.index_bits,
                  "iter_bits": spec.iter_bits, "max_iters": spec.max_iters,
                  "lanes": spec.lanes, "corr_lanes": spec.corr_lanes, "network": None}
    if ir is None:
        return factorizer_sim.verilog(spec), info
    if head.tail is None:
        raise EdgeError(f"node '{head.node_name}' (BlockCodeFactorizer): a network without the "
                        "block softmax after its scores")
    p, net, sched = build_network(ir, options.get("pe"), options.get("simd"))
    man = network_manifest(p, sched)
    lanes = _score_lanes(man["output"], head)
    softmax = BlockSoftmaxStage(head.tail, lanes)
    top = FactorizerNet(net, softmax, factorizer_sim.block(spec))
    info["network"] = {"input": man["input"], "schedule": man["schedule"],
                       "folding": man["folding"], "score_lanes": lanes,
                       "notes": man["notes"]}
    info["softmax"] = {"shift": head.tail.shift, "frac": head.tail.frac,
                       "table": len(head.tail.table), "logit_bits": softmax.t_bits}
    text = (network_header(p, sched)
            + f"// then the block softmax: shift {head.tail.shift} frac {head.tail.frac} table "
              f"{len(head.tail.table)} logit bits {softmax.t_bits} score lanes {lanes}\n"
            + factorizer_sim.header(spec) + to_verilog(top, TOP))
    return text, info


def _max_cycles(info: dict, n: int) -> int:
    """A generous stall limit: the network's schedule plus a bound on each decode."""
    s = info
    per_query = s["B"] * s["L"] * 8 + s["max_iters"] * s["F"] * (s["M"] + 8) * (s["B"] * s["L"]
                                                                                 + 64)
    per_query = max(per_query, s["M"] ** s["F"] + 64 * s["B"] * s["L"])
    net = info["network"]
    if net is not None:
        sched = net["schedule"]
        per_query += sched["cycles_per_inference"] + sched["initiation_interval"]
    return 4 * n * per_query + 100_000


def _run(folder: Path, info: dict, inputs: np.ndarray, work_dir: Path | None = None) -> dict:
    """Simulate the folder's Verilog on `inputs`; indices, iterations and cycle stamps."""
    text = (folder / VERILOG).read_text()
    n = len(inputs)
    if n < 1:
        raise EdgeError("input: the batch is empty")
    if info["network"] is None:
        q = np.asarray(inputs, dtype=np.int64)
        per = info["B"] * info["L"]
        if q.ndim != 2 or q.shape[1] != per:
            raise EdgeError(f"factorizer block: queries of shape {list(q.shape)} are not rows "
                            f"of B*L = {per} entries")
        if (q < 0).any() or (q >= 1 << 31).any():
            raise EdgeError("factorizer block: query entries must be integers in [0, 2^31)")
        beats = [int(v) for v in q.reshape(-1)]
    else:
        layout = info["network"]["input"]
        q = np.asarray(inputs, dtype=np.int64)
        if list(q.shape[1:]) != list(layout["shape"]):
            raise EdgeError(f"{folder}: the design takes inputs of shape {layout['shape']}, "
                            f"got {list(q.shape[1:])}")
        beats = encode_inputs(layout, q)
    res = factorizer_sim.run_bench(text, beats, n, _max_cycles(info, n), work_dir=work_dir)
    ib, F = info["index_bits"], info["F"]
    words = res["outputs"]
    idx = np.array([[(w >> (f * ib)) & ((1 << ib) - 1) for f in range(F)] for w in words],
                   dtype=np.int64).reshape(n, F)
    its = np.array([w >> (F * ib) for w in words], dtype=np.int64)
    per_in = len(beats) // n
    last_in = [res["t_in"][(k + 1) * per_in - 1] for k in range(n)]
    t_out = res["t_out"]
    busy = [t - max(a, b) for t, a, b in zip(t_out, last_in, [-1] + t_out[:-1], strict=True)]
    facts = {"samples": n,
             "cycles_per_inference": t_out[0] - res["t_in"][0] + 1,
             "cycles_after_last_input": busy,
             "cycles_after_last_input_mean": round(float(np.mean(busy)), 1)}
    if n > 1:
        facts["initiation_interval"] = round((t_out[-1] - t_out[0]) / (n - 1))
    if info["network"] is not None:
        net_cycles = info["network"]["schedule"]["cycles_per_inference"]
        facts["network_cycles_per_inference"] = net_cycles
        facts["head_cycles_per_inference"] = facts["cycles_per_inference"] - net_cycles
    return {"indices": idx, "iterations": its, "facts": facts}


def _probe_inputs(ir: Graph | None, head: DeployedHead, n: int) -> np.ndarray:
    """Deterministic inputs for the convert-time measurement (no model data needed)."""
    rng = np.random.default_rng(0)
    if ir is None:
        from ...factorizer.noise import make_queries

        x, _ = make_queries(head.codebooks, n, "moved0.1", seed=0)
        return head.queries(x)
    layer = ir.layers[0]
    return rng.integers(int(layer.lo), int(layer.hi) + 1, size=(n, *layer.shape))


def convert(ir: Graph | None, head: DeployedHead, options: dict, folder: Path) -> dict:
    """Write the Verilog (+ manifest) into `folder`; return the report dict (JSON-able)."""
    folder = Path(folder)
    board = options.get("board") or DEFAULT_BOARD
    if ir is not None:
        _check_fit(ir, board)  # as the network backend: board "sim" takes any weight ROM
    text, info = _design(ir, head, options)
    (folder / VERILOG).write_text(text)
    (folder / MANIFEST).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    F, M, B, L = head.shape
    report = {"target": "fpga", "board": board, "kind": "factorizer", "F": F, "M": M, "B": B,
              "L": L, "method": info["method"], "decoder": head.decoder,
              "lanes": {k: info[k] for k in LANES[info["method"]]}}
    if info["network"] is not None:
        report["network"] = {"schedule": info["network"]["schedule"],
                             "folding": info["network"]["folding"]}
        report["softmax"] = info["softmax"]
    measured = _run(folder, info, _probe_inputs(ir, head, MEASURE_SAMPLES))["facts"]
    report["measured"] = {"inputs": f"{MEASURE_SAMPLES} deterministic (seed 0)", **measured}
    for key in ("cycles_per_inference", "initiation_interval", "network_cycles_per_inference",
                "head_cycles_per_inference"):
        if key in measured:  # flat copies: the report table shows the scalar entries
            report[key] = measured[key]
    return report


def _info(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EdgeError(f"{path}: not an fpga factorizer build ({exc})") from None
    if info.get("format") != FORMAT:
        raise EdgeError(f"{path}: format {info.get('format')!r} is not {FORMAT!r}")
    return info


def simulate(folder: Path, meta: dict, ir: Graph | None, head: DeployedHead,
             inputs: np.ndarray, work_dir: Path | None = None, **_opts
             ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Indices [N, F], iterations [N] and facts of the build's Verilog under cocotb + Icarus.

    inputs: the network's quantised input batch, or the integer queries [N, B*L] without one.
    """
    del meta, ir, head  # the folder's manifest holds what the simulation needs
    info = _info(Path(folder))
    res = _run(Path(folder), info, np.asarray(inputs), work_dir)
    facts = {"simulator": "cocotb + Icarus Verilog (-g2005)", **res["facts"]}
    return res["indices"], res["iterations"], facts


def report(folder: Path, meta: dict) -> dict:
    """yosys LUT4/FF/BRAM and nextpnr Fmax on the UP5K (slow: run only when asked)."""
    from .synth import synth_report

    folder = Path(folder)
    path = folder / "report.json"
    rep = json.loads(path.read_text()) if path.is_file() else {}
    if "devices" not in rep:
        from .generate import VERILOG as SYNTH_NAME

        files = {SYNTH_NAME: (folder / VERILOG).read_text()}
        up5k = synth_report(files, "up5k", pnr=True, seeds=(1,), top=TOP)
        rep["devices"] = {"up5k": up5k}
        for key in ("lut4", "ff", "bram", "dsp", "fits", "fmax_mhz"):
            rep[f"up5k_{key}"] = up5k.get(key)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(rep, indent=1, sort_keys=True, default=str) + "\n")
        tmp.replace(path)
    return rep
