"""Cortex-M4 instruction counts: edge-sdk's generated kernels next to plain C and int8 SMLAD C.

    .venv/bin/python bench/cortex_m.py [--samples 16] [--keep DIR] [--out FILE]

For the example MLP, the example CNN (both with their real input range, pixels 0..16, so the
input is int8) and a single 1024x1024 binary dense layer, builds four firmware ELFs each with the
edge-sdk toolchain (arm-none-eabi-gcc, the flags of board qemu-mps2-an386 = Cortex-M4F, -O2) and
counts the instructions of every `edge_model_run` call exactly with unicorn:

  (a) the TVM-generated kernels of the Cortex-M backend (`codegen.build`, popcount "swar"; the
      "builtin" popcount as an extra row),
  (b) plain C (bench/cortex_m/plain_kernels.h): loops over int8 weights in {-1, +1}, one
      multiply-accumulate per weight, NCHW, thresholds / pools written plainly, every shape a
      compile-time constant (the kernels are inlined into the generated model.c),
  (c) int8 x int8 written the way CMSIS-NN's Cortex-M4 path does it
      (bench/cortex_m/smlad_kernels.c): SXTB16 + SMLAD dual 16-bit MACs, NHWC, im2col to int16
      for the convolutions, the threshold fused into the kernel's output stage, shapes passed
      at run time as to a library.

(b) and (c) are hand-written kernels; this script generates their model.c per model (weights,
buffers, the calls with the shapes as constants) and model.h with the same API as the backend's
(`edge_model_run`, EDGE_IN_T, EDGE_IN_SIZE, EDGE_OUT_SIZE), so the same firmware and counter run
all of them. Every variant's int32 scores must equal the golden model's on the same random inputs
(the run stops otherwise). Prints a table and writes bench/results/cortex_m.json.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import edge_sdk
from edge_sdk import golden
from edge_sdk.converters.cortexm import boards, codegen, icount, toolchain
from edge_sdk.ir import layers as L
from edge_sdk.ir.graph import Graph

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "bench" / "cortex_m"
BOARD = "qemu-mps2-an386"
DIGITS_RANGE = (0, 16)  # the examples' pixels (examples/README.md)
TARGET_INSTR_PER_BINARY_MAC = 0.5
TARGET_C_OVER_A = 8.0
TARGET_MODEL = "binary_dense_1024"

VARIANTS = {
    "a_swar": "(a) edge-sdk TVM kernels, popcount swar",
    "a_builtin": "(a') edge-sdk TVM kernels, popcount builtin",
    "b_plain": "(b) plain C, int8 ±1 weights",
    "c_smlad": "(c) int8 SMLAD, CMSIS-NN style",
}


# ---------------------------------------------------------------------------- models
def binary_dense_1024(seed: int = 0) -> Graph:
    """Input (int8 in [-1, 1]) -> x >= 0 ? +1 : -1 -> Dense 1024x1024 (±1 weights) -> Scores."""
    n = 1024
    rng = np.random.default_rng(seed)
    w = rng.choice(np.array([-1, 1], np.int8), size=(n, n))
    layers: list[L.Layer] = [
        L.Input("in", [], "in", shape=(n,), lo=-1, hi=1),
        L.Threshold("bin", ["in"], "bin", tau=np.zeros(n, np.int64), flip=np.zeros(n, bool),
                    zero=np.zeros(n, bool)),
        L.Dense("dense", ["bin"], "dense", weights=L.IntWeights(w)),
        L.Scores("scores", ["dense"], "scores"),
    ]
    return Graph("binary_dense_1024", layers, ["in"], ["scores"])


def models() -> dict[str, Graph]:
    ex = ROOT / "examples"
    return {
        "mlp_digits": edge_sdk.load(ex / "mlp_digits.onnx", input_range=DIGITS_RANGE).ir,
        "cnn_digits": edge_sdk.load(ex / "cnn_digits.onnx", input_range=DIGITS_RANGE).ir,
        TARGET_MODEL: binary_dense_1024(),
    }


# ---------------------------------------------------------------------------- C emission
@dataclass
class Tensor:
    expr: str  # C expression of the data
    dtype: str  # "int8" | "int32"
    shape: tuple[int, ...]  # logical shape (CHW for 3-D), no batch
    hwc: bool = False  # 3-D data stored H, W, C (kernels (c))
    flat_hwc: tuple[int, int, int] | None = None  # 1-D data flattened from HWC (C, H, W)


class CModule:
    """Declarations and statements of one generated model.c."""

    def __init__(self, header: str):
        self.header = header
        self.decls: list[str] = []
        self.body: list[str] = []
        self.weight_bytes = 0

    def array(self, name: str, ctype: str, values: np.ndarray, const: bool = True,
              per_line: int = 32) -> str:
        flat = np.asarray(values).reshape(-1)
        self.weight_bytes += flat.size * np.dtype(ctype.replace("_t", "")).itemsize
        rows = [", ".join(map(str, flat[i:i + per_line].tolist()))
                for i in range(0, flat.size, per_line)]
        qual = "static const" if const else "static"
        self.decls.append(f"{qual} {ctype} {name}[{flat.size}] = {{\n    "
                          + ",\n    ".join(rows) + "\n};")
        return name

    def buffer(self, name: str, ctype: str, size: int) -> str:
        self.decls.append(f"static {ctype} {name}[{size}] __attribute__((aligned(4)));")
        return name

    def files(self, in_size: int, out_size: int) -> dict[str, str]:
        model_h = (
            "/* Generated by bench/cortex_m.py: a benchmark baseline, same API as edge-sdk's. */\n"
            "#ifndef EDGE_MODEL_H\n#define EDGE_MODEL_H\n\n#include <stdint.h>\n\n"
            "#define EDGE_IN_T int8_t\n"
            f"#define EDGE_IN_SIZE {in_size}\n#define EDGE_OUT_SIZE {out_size}\n\n"
            "int edge_model_run(const EDGE_IN_T *in, int32_t *out);\n\n#endif\n"
        )
        model_c = (
            "/* Generated by bench/cortex_m.py. */\n#include <stdint.h>\n#include <string.h>\n"
            f'#include "model.h"\n#include "{self.header}"\n\n'
            + "\n".join(self.decls)
            + "\n\nint edge_model_run(const EDGE_IN_T *in, int32_t *out)\n{\n"
            + "".join(f"    {s}\n" for s in self.body)
            + "    return 0;\n}\n"
        )
        return {"model.h": model_h, "model.c": model_c}


def clamp_tau(layer: L.Threshold, lo: int, hi: int) -> np.ndarray:
    """Thresholds as int32 with the same result on every accumulator value in [lo, hi].

    [lo - 2, hi + 2] keeps both the comparison and the tie value (tau -/+ 1) right: a tau
    beyond it decides every value in [lo, hi] the same way and its tie is unreachable.
    """
    tau = np.clip(np.asarray(layer.tau, np.int64), lo - 2, hi + 2)
    if tau.min() < -(2**31) or tau.max() >= 2**31:
        raise SystemExit(f"layer {layer.name}: thresholds do not fit int32")
    return tau.astype(np.int32)


def scores_input(graph: Graph) -> str:
    last = graph.producer(graph.outputs[0])
    if not isinstance(last, L.Scores):
        raise SystemExit(f"{graph.name}: the output is not a Scores layer")
    return last.inputs[0]


def _input_layer(graph: Graph) -> L.Input:
    (inp,) = [layer for layer in graph.layers if isinstance(layer, L.Input)]
    if inp.lo < -128 or inp.hi > 127:
        raise SystemExit(f"{graph.name}: the baselines take int8 inputs, range is "
                         f"[{inp.lo}, {inp.hi}]")
    return inp


def _window(fields: list[int]) -> str:
    return "{" + ", ".join(str(int(v)) for v in fields) + "}"


def _window_fields(layer, cin, hin, win, cout, hout, wout, dil=(1, 1)) -> list[int]:
    return [cin, hin, win, cout, hout, wout, *layer.kernel, *layer.strides, layer.pads[0],
            layer.pads[1], *dil]


def plain_model(graph: Graph) -> tuple[dict[str, str], int]:
    """Baseline (b): model.c inlining plain_kernels.h, NCHW, every tensor in its own buffer."""
    infos = graph.infos()
    inp = _input_layer(graph)
    out_name = scores_input(graph)
    m = CModule("plain_kernels.h")
    t: dict[str, Tensor] = {}
    for i, layer in enumerate(graph.layers):
        info = infos[layer.output]
        if isinstance(layer, L.Input):
            t[layer.output] = Tensor("in", "int8", info.shape)
            continue
        x = t[layer.inputs[0]]
        xi = infos[layer.inputs[0]]
        if isinstance(layer, (L.Dense, L.Conv2d)):
            if x.dtype != "int8":
                raise SystemExit(f"{layer.name}: the baselines need int8 activations")
            w = m.array(f"w{i}", "int8_t", layer.weights.unpack())
            y = "out" if layer.output == out_name else m.buffer(f"b{i}", "int32_t", info.size)
            if isinstance(layer, L.Dense):
                m.body.append(f"plain_dense({x.expr}, {w}, {y}, {layer.weights.rows}, "
                              f"{layer.weights.k});")
            else:
                p = _window_fields(layer, *xi.shape, *info.shape, layer.dilations)
                m.decls.append(f"static const plain_window_t p{i} = {_window(p)};")
                m.body.append(f"plain_conv2d({x.expr}, {w}, {y}, &p{i});")
            t[layer.output] = Tensor(y, "int32", info.shape)
        elif isinstance(layer, L.Threshold):
            tau = m.array(f"tau{i}", "int32_t", clamp_tau(layer, xi.lo, xi.hi))
            flip = m.array(f"flip{i}", "int8_t", np.asarray(layer.flip, np.int8))
            zero = m.array(f"zero{i}", "int8_t", np.asarray(layer.zero, np.int8))
            y = m.buffer(f"b{i}", "int8_t", info.size)
            fn = "plain_threshold_s8" if x.dtype == "int8" else "plain_threshold_s32"
            inner = math.prod(info.shape[1:])
            m.body.append(f"{fn}({x.expr}, {y}, {tau}, {flip}, {zero}, {info.shape[0]}, "
                          f"{inner});")
            t[layer.output] = Tensor(y, "int8", info.shape)
        elif isinstance(layer, L.MaxPool):
            if x.dtype != "int8" or (layer.select_min is not None and np.any(layer.select_min)):
                raise SystemExit(f"{layer.name}: the baselines pool int8 max only")
            p = _window_fields(layer, *xi.shape, *info.shape)
            m.decls.append(f"static const plain_window_t p{i} = {_window(p)};")
            y = m.buffer(f"b{i}", "int8_t", info.size)
            m.body.append(f"plain_maxpool_s8({x.expr}, {y}, &p{i});")
            t[layer.output] = Tensor(y, "int8", info.shape)
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            t[layer.output] = Tensor(x.expr, x.dtype, info.shape)
        elif isinstance(layer, L.Scores):
            if x.expr != "out":
                m.body.append(f"for (int32_t i = 0; i < {info.size}; i++) "
                              f"{{ out[i] = {x.expr}[i]; }}")
        else:
            raise SystemExit(f"{layer.name}: {type(layer).__name__} not in the baselines")
    files = m.files(infos[inp.output].size, infos[out_name].size)
    files["plain_kernels.h"] = (KERNELS / "plain_kernels.h").read_text()
    return files, m.weight_bytes


def smlad_model(graph: Graph) -> tuple[dict[str, str], int]:
    """Baseline (c): model.c calling smlad_kernels.c, NHWC, thresholds fused into kernels."""
    infos = graph.infos()
    inp = _input_layer(graph)
    out_name = scores_input(graph)
    m = CModule("smlad_kernels.h")
    t: dict[str, Tensor] = {}
    fused: dict[str, str] = {}  # threshold layer -> the thr struct its producer applies
    for i, layer in enumerate(graph.layers):
        if isinstance(layer, (L.Dense, L.Conv2d)):
            users = graph.consumers(layer.output)
            if len(users) == 1 and isinstance(users[0], L.Threshold):
                fused[users[0].name] = f"thr{i}"
    for i, layer in enumerate(graph.layers):
        info = infos[layer.output]
        if isinstance(layer, L.Input):
            if len(info.shape) == 3 and info.shape[0] > 1:
                y = m.buffer(f"b{i}", "int8_t", info.size)
                m.body.append(f"smlad_chw_to_hwc_s8(in, {y}, {', '.join(map(str, info.shape))});")
                t[layer.output] = Tensor(y, "int8", info.shape, hwc=True)
            else:
                t[layer.output] = Tensor("in", "int8", info.shape, hwc=len(info.shape) == 3)
            continue
        x = t[layer.inputs[0]]
        xi = infos[layer.inputs[0]]
        if isinstance(layer, (L.Dense, L.Conv2d)):
            if x.dtype != "int8":
                raise SystemExit(f"{layer.name}: the baselines need int8 activations")
            values = layer.weights.unpack()
            users = graph.consumers(layer.output)
            thr_layer = users[0] if len(users) == 1 and users[0].name in fused else None
            if thr_layer is not None:
                thr = f"&thr{i}"
                tau = m.array(f"tau{i}", "int32_t", clamp_tau(thr_layer, info.lo, info.hi))
                flip = m.array(f"flip{i}", "int8_t", np.asarray(thr_layer.flip, np.int8))
                zero = m.array(f"zero{i}", "int8_t", np.asarray(thr_layer.zero, np.int8))
                m.decls.append(f"static const smlad_thr_t thr{i} = {{{tau}, {flip}, {zero}}};")
                y8 = m.buffer(f"b{i}", "int8_t", info.size)
                y32 = "0"
                out = Tensor(y8, "int8", info.shape)
            else:
                thr, y8 = "0", "0"
                y32 = "out" if layer.output == out_name else m.buffer(f"b{i}", "int32_t",
                                                                       info.size)
                out = Tensor(y32, "int32", info.shape)
            if isinstance(layer, L.Dense):
                if x.flat_hwc is not None:  # columns in the HWC order the data has
                    c, h, w_ = x.flat_hwc
                    values = values.reshape(-1, c, h, w_).transpose(0, 2, 3, 1)
                w = m.array(f"w{i}", "int8_t", values)
                m.body.append(f"smlad_fc_s8({x.expr}, {w}, {layer.weights.rows}, "
                              f"{layer.weights.k}, {thr}, {y8}, {y32});")
            else:
                if not x.hwc:
                    raise SystemExit(f"{layer.name}: conv input is not NHWC")
                c, kh, kw = layer.in_channels, *layer.kernel
                w = m.array(f"w{i}", "int8_t",
                            values.reshape(-1, c, kh, kw).transpose(0, 2, 3, 1))
                p = _window_fields(layer, *xi.shape, *info.shape, layer.dilations)
                m.decls.append(f"static const smlad_window_t p{i} = {_window(p)};")
                k = c * kh * kw
                buf = m.buffer(f"im2col{i}", "int16_t", 2 * ((k + 3) // 4) * 4)
                col = m.buffer(f"col{i}", "int8_t", k)
                m.body.append(f"smlad_conv_s8({x.expr}, {w}, &p{i}, {buf}, {col}, {thr}, "
                              f"{y8}, {y32});")
                out.hwc = True
            t[layer.output] = out
        elif isinstance(layer, L.Threshold):
            if layer.name in fused:
                t[layer.output] = t[layer.inputs[0]]
                continue
            if x.flat_hwc is not None:
                raise SystemExit(f"{layer.name}: threshold after an HWC flatten not supported")
            tau = m.array(f"tau{i}", "int32_t", clamp_tau(layer, xi.lo, xi.hi))
            flip = m.array(f"flip{i}", "int8_t", np.asarray(layer.flip, np.int8))
            zero = m.array(f"zero{i}", "int8_t", np.asarray(layer.zero, np.int8))
            m.decls.append(f"static const smlad_thr_t thr{i} = {{{tau}, {flip}, {zero}}};")
            y = m.buffer(f"b{i}", "int8_t", info.size)
            fn = "smlad_threshold_s8" if x.dtype == "int8" else "smlad_threshold_s32"
            if len(info.shape) == 3 and not x.hwc:
                raise SystemExit(f"{layer.name}: 3-D threshold input is not NHWC")
            m.body.append(f"{fn}({x.expr}, {y}, &thr{i}, {info.shape[0]}, {info.size});")
            t[layer.output] = Tensor(y, "int8", info.shape, hwc=x.hwc)
        elif isinstance(layer, L.MaxPool):
            if x.dtype != "int8" or (layer.select_min is not None and np.any(layer.select_min)):
                raise SystemExit(f"{layer.name}: the baselines pool int8 max only")
            p = _window_fields(layer, *xi.shape, *info.shape)
            m.decls.append(f"static const smlad_window_t p{i} = {_window(p)};")
            y = m.buffer(f"b{i}", "int8_t", info.size)
            m.body.append(f"smlad_maxpool_s8({x.expr}, {y}, &p{i});")
            t[layer.output] = Tensor(y, "int8", info.shape, hwc=True)
        elif isinstance(layer, (L.Flatten, L.Reshape)):
            if len(info.shape) != 1:
                raise SystemExit(f"{layer.name}: only flattening reshapes are supported")
            flat = tuple(xi.shape) if x.hwc and xi.shape[0] > 1 else x.flat_hwc
            t[layer.output] = Tensor(x.expr, x.dtype, info.shape, flat_hwc=flat)
        elif isinstance(layer, L.Scores):
            if x.hwc and info.shape[0] > 1 or x.flat_hwc is not None:
                raise SystemExit(f"{layer.name}: scores on NHWC data not supported")
            if x.expr != "out":
                m.body.append(f"for (int32_t i = 0; i < {info.size}; i++) "
                              f"{{ out[i] = {x.expr}[i]; }}")
        else:
            raise SystemExit(f"{layer.name}: {type(layer).__name__} not in the baselines")
    files = m.files(infos[inp.output].size, infos[out_name].size)
    for name in ("smlad_kernels.c", "smlad_kernels.h"):
        files[name] = (KERNELS / name).read_text()
    return files, m.weight_bytes


# ---------------------------------------------------------------------------- measuring
def random_inputs(graph: Graph, n: int, seed: int = 0) -> np.ndarray:
    """n inputs over the input range; the first two are all-lo and all-hi."""
    inp = _input_layer(graph)
    rng = np.random.default_rng(seed)
    x = rng.integers(inp.lo, inp.hi + 1, size=(n, *inp.shape))
    x[0], x[1] = inp.lo, inp.hi
    return x.astype(np.float32)


def measure(files: dict[str, str], folder: Path, q: np.ndarray, ref: np.ndarray,
            label: str) -> dict:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    t0 = time.perf_counter()
    elf = toolchain.build(folder, BOARD, folder / "build" / "model.elf")
    t_build = time.perf_counter() - t0
    sizes = toolchain.size(elf)
    t0 = time.perf_counter()
    res = icount.count_instructions(elf, BOARD, q, ref.shape[1])
    t_count = time.perf_counter() - t0
    bad = np.argwhere(res.outputs.astype(np.int64) != ref)
    if bad.size:
        s, o = bad[0]
        raise SystemExit(f"{label}: {len(bad)} outputs differ from the golden model, first at "
                         f"sample {s} output {o}: {res.outputs[s, o]} vs {ref[s, o]}")
    counts = res.instructions.astype(np.int64)
    return {
        "instructions": {"mean": float(counts.mean()), "min": int(counts.min()),
                         "max": int(counts.max())},
        "flash_bytes": sizes["text"] + sizes["data"],
        "size": sizes,
        "outputs_equal_golden": True,
        "seconds": {"build": round(t_build, 2), "count": round(t_count, 2)},
    }


def tool_version(tool: str) -> str:
    out = subprocess.run([toolchain.find_tool(tool), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()[0]


def run(samples: int, work: Path) -> dict:
    board = boards.get_board(BOARD)
    results = []
    for name, graph in models().items():
        x = random_inputs(graph, samples)
        q = golden.quantise_input(_input_layer(graph), x).reshape(samples, -1).astype(np.int8)
        ref = golden.run_all(graph, x)[scores_input(graph)].reshape(samples, -1)
        cm = codegen.build(graph, popcount="swar")
        if cm.info.input_dtype != "int8":
            raise SystemExit(f"{name}: expected int8 inputs, got {cm.info.input_dtype}")
        plain, smlad = plain_model(graph), smlad_model(graph)
        variant_files = {
            "a_swar": (cm.files, cm.info.weight_bytes),
            "a_builtin": (codegen.build(graph, popcount="builtin").files, cm.info.weight_bytes),
            "b_plain": plain,
            "c_smlad": smlad,
        }
        row = {"model": name, "macs": cm.info.total_macs, "binary_macs": cm.info.binary_macs,
               "input": {"dtype": cm.info.input_dtype, "range": list(cm.info.input_range),
                         "elements": cm.info.input_size},
               "outputs": cm.info.output_size, "samples": samples, "variants": {}}
        for key, (files, weights) in variant_files.items():
            r = measure(files, work / name / key, q, ref, f"{name} {key}")
            r["weight_bytes"] = weights
            r["instructions_per_mac"] = r["instructions"]["mean"] / cm.info.total_macs
            if cm.info.binary_macs == cm.info.total_macs:
                r["instructions_per_binary_mac"] = r["instructions_per_mac"]
            r["label"] = VARIANTS[key]
            row["variants"][key] = r
            print(f"  {name:<18} {key:<10} {r['instructions']['mean']:>12.0f} instructions "
                  f"(build {r['seconds']['build']:.1f} s, count {r['seconds']['count']:.1f} s)",
                  flush=True)
        a = row["variants"]["a_swar"]["instructions"]["mean"]
        row["ratio_vs_a"] = {k: v["instructions"]["mean"] / a for k, v in row["variants"].items()}
        results.append(row)
    return {
        "board": BOARD,
        "cpu": board.cpu,
        "compiler": tool_version("arm-none-eabi-gcc"),
        "cflags": [*toolchain.COMMON_CFLAGS, *board.gcc_flags],
        "ldflags": list(toolchain.LINK_FLAGS),
        "counter": f"unicorn {_unicorn_version()} (exact instructions per edge_model_run call)",
        "models": results,
    }


def _unicorn_version() -> str:
    import unicorn

    return unicorn.__version__


def targets(report: dict) -> dict:
    row = next(r for r in report["models"] if r["model"] == TARGET_MODEL)
    per_mac = row["variants"]["a_swar"]["instructions_per_binary_mac"]
    ratio = row["ratio_vs_a"]["c_smlad"]
    return {
        "model": TARGET_MODEL,
        "a_instructions_per_binary_mac": per_mac,
        "a_instructions_per_binary_mac_max": TARGET_INSTR_PER_BINARY_MAC,
        "a_instructions_per_binary_mac_holds": per_mac <= TARGET_INSTR_PER_BINARY_MAC,
        "c_over_a": ratio,
        "c_over_a_min": TARGET_C_OVER_A,
        "c_over_a_holds": ratio >= TARGET_C_OVER_A,
    }


def _verdict(ok: bool) -> str:
    return "HOLDS" if ok else "DOES NOT HOLD"


def format_table(report: dict) -> str:
    arch = " ".join(report["cflags"][len(toolchain.COMMON_CFLAGS):])
    lines = [
        f"Cortex-M4 ({report['board']}: {arch})",
        f"compiler: {report['compiler']}, {' '.join(toolchain.COMMON_CFLAGS)}",
        f"counter: {report['counter']}",
        "check: every variant's int32 scores == the golden model's, on every input",
        "instr/MAC: instructions per inference / all MACs of the model (binary and multi-bit)",
        "flash: text + data of the whole ELF (incl. the test firmware)",
        "",
        (f"{'model':<18} {'MACs (binary)':>17}  {'variant':<44} {'instr/inference':>15} "
         f"{'instr/MAC':>9} {'flash B':>9} {'weights B':>9} {'x vs (a)':>8}"),
    ]
    for row in report["models"]:
        macs = f"{row['macs']} ({row['binary_macs']})"
        for i, (key, v) in enumerate(row["variants"].items()):
            lines.append(
                f"{row['model'] if i == 0 else '':<18} {macs if i == 0 else '':>17}  "
                f"{v['label']:<44} {v['instructions']['mean']:>15.0f} "
                f"{v['instructions_per_mac']:>9.3f} {v['flash_bytes']:>9} "
                f"{v['weight_bytes']:>9} {row['ratio_vs_a'][key]:>8.2f}"
            )
        lines.append(f"{'':<18} {'':>17}  (c)/(a) = {row['ratio_vs_a']['c_smlad']:.2f}x "
                     f"instructions, (b)/(a) = {row['ratio_vs_a']['b_plain']:.2f}x; "
                     f"{row['samples']} inputs, input {row['input']['dtype']} in "
                     f"{row['input']['range']}")
    t = report["targets"]
    per_mac, ratio = t["a_instructions_per_binary_mac"], t["c_over_a"]
    lines += [
        "",
        f"targets on {t['model']} (every MAC binary):",
        (f"  (a) instructions per binary MAC <= {t['a_instructions_per_binary_mac_max']}: "
         f"{per_mac:.3f} -> {_verdict(t['a_instructions_per_binary_mac_holds'])}"),
        (f"  (c)/(a) >= {t['c_over_a_min']:g}x: {ratio:.2f}x -> "
         f"{_verdict(t['c_over_a_holds'])}"),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=16,
                    help="random inputs per model (the first two are all-lo and all-hi)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the generated sources and ELFs in DIR (default: a temp dir)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cortex_m.json"))
    args = ap.parse_args()
    if args.samples < 2:
        ap.error("--samples must be at least 2")

    t0 = time.perf_counter()
    if args.keep:
        work = Path(args.keep)
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        report = run(args.samples, work)
    else:
        with tempfile.TemporaryDirectory(prefix="edge-bench-cm-") as tmp:
            report = run(args.samples, Path(tmp))
    report["targets"] = targets(report)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print()
    print(format_table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
