"""`convert --target cortex-m --library`: the model as an embeddable C library.

What a firmware project needs and nothing it already has: model.c/model.h and the kernels (no
`main`, no start-up code, linker script or board files), a model.h that states the whole
contract (input dtype, shape, C order, range, how real inputs map to it, what the outputs are,
RAM and flash), `edge_model_output()` for the source's float output ops, a CMakeLists.txt
(static library, C99, edge-sdk's flags) and a README.md. The files are a pure function of the
lowered IR: two conversions give byte-identical files.

The board (--board) adds no files. It is what the arena and weights are checked against
(backend.convert) and the CPU the sizes in report.json are measured for; README.md names its
compiler flags, which the firmware's own toolchain must set for every object it links.
"""

from __future__ import annotations

import math
import shutil
import textwrap
from pathlib import Path

import numpy as np

from ...ir import layers as L
from ...ir.graph import Graph
from . import cmake, emit, float_output, toolchain
from .boards import Board
from .codegen import CModel

README = "README.md"
CMAKELISTS = "CMakeLists.txt"
OUTPUT_FN = "edge_model_output"
WIDTH = 96


def _shape(shape: tuple[int, ...]) -> str:
    return "{" + ", ".join(map(str, shape)) + "}"


def _c_order(shape: tuple[int, ...]) -> str:
    """How a multi-index maps to the flat index, spelled out for this rank."""
    if len(shape) <= 1:
        return "element i is in[i]"
    names = [f"i{k}" for k in range(len(shape))]
    expr = names[0]
    for k in range(1, len(shape)):
        expr = f"{f'({expr})' if k > 1 else expr} * {shape[k]} + {names[k]}"
    return f"element [{']['.join(names)}] is in[{expr}]"


def _ops_doc(out: float_output.FloatOutput, shape: tuple[int, ...]) -> list[str]:
    inner = math.prod(shape[1:]) if len(shape) > 1 else 1
    where = "c = i" if inner == 1 else f"c = i / {inner}"
    lines = []
    for k, step in enumerate(out.steps):
        operand = "k" if step.values.size == 1 else "k[c]"
        per = "one constant" if step.values.size == 1 else f"per channel, {where}"
        lines.append(f"  {k + 1}. y[i] = y[i] {step.op} {operand}  ({step.kind}, {per})")
    if out.softmax_beta is not None:
        lines.append(f"  then softmax(y * {out.softmax_beta:g}) over the channels: not computed "
                     "here (C libraries' expf differ; it does not change the argmax)")
    return lines


def _comment(paragraphs: list[str | list[str]]) -> str:
    """A C block comment: strings are wrapped paragraphs, lists are lines kept as they are."""
    out = ["/*"]
    for para in paragraphs:
        if isinstance(para, list):
            out += [f" *   {line}" for line in para]
        elif para:
            out += textwrap.wrap(para, WIDTH, initial_indent=" * ", subsequent_indent=" *   ",
                                 break_on_hyphens=False)
        else:
            out.append(" *")
    return "\n".join([*out, " */", ""])


def header_doc(ir: Graph, cm: CModel, out: float_output.FloatOutput) -> str:
    """The contract at the top of the library's model.h (no names from the model: see emit)."""
    infos = ir.infos()
    inp = next(layer for layer in ir.layers if isinstance(layer, L.Input))
    scores = ir.producer(ir.outputs[0])
    in_shape = tuple(infos[inp.output].shape)
    s_info = infos[scores.inputs[0]]
    lo, hi = cm.info.input_range
    identity = inp.scale == 1.0 and inp.zero_point == 0
    paras: list[str | list[str]] = [
        ("Library build (edge-sdk convert --target cortex-m --library): plain C99, no main, no "
        "board code, no heap; needs <stdint.h> only (GCC may emit memcpy/memset calls)."),
        "",
        (f"Input: one sample is EDGE_IN_SIZE = {cm.info.input_size} values of EDGE_IN_T "
        f"({cm.info.input_dtype}_t), the model's input tensor of shape EDGE_IN_SHAPE = "
        f"{_shape(in_shape)} (without the batch dimension) in C order, last index fastest: "
        f"{_c_order(in_shape)}."),
        (f"Range: integers in [EDGE_IN_MIN, EDGE_IN_MAX] = [{lo}, {hi}], the range the model was "
        "converted for (--input-range, else its input type's). The int32 arithmetic is exact "
        "inside it; nothing checks it at run time."),
        "Quantisation: a real input x is given as q = x / EDGE_IN_SCALE + EDGE_IN_ZERO_POINT "
        f"(scale {float(inp.scale)!r}, zero point {int(inp.zero_point)}"
        + ("; the model takes x itself, integer-valued). " if identity else "). ")
        + "edge-sdk's golden model refuses an x whose q is not an integer in range rather than "
        "round it; on the device, round to nearest and clamp if your data can leave that grid.",
        f"Output: edge_model_run writes EDGE_OUT_SIZE = {cm.info.output_size} int32 scores, the "
        f"model's integer output tensor of shape EDGE_OUT_SHAPE = {_shape(s_info.shape)} in C "
        f"order, each in [EDGE_OUT_MIN, EDGE_OUT_MAX] = [{s_info.lo}, {s_info.hi}]. "
        + ("They are the source model's output (exactly, as float32 values)." if not scores.ops
           else "The source model's float32 output y is the scores (as float32) after, in "
           "order:"),
    ]
    if scores.ops:
        paras.append(_ops_doc(out, tuple(s_info.shape)))
        paras.append(f"Function: {OUTPUT_FN}() computes y from the scores bit for bit as "
                     "edge-sdk's golden model (`edge-sdk run`) does." if out.available else
                     "A softmax comes before other ops: there is no C function for them here.")
    if len(s_info.shape) == 1 and s_info.shape[0] > 1 and out.available:
        paras.append("Class: the index of the largest score (the output ops keep the order, "
                     "up to float32 ties)." if float_output.keeps_argmax(out.steps) else
                     f"Class: the index of the largest y from {OUTPUT_FN}(), not of the largest "
                     "score (per-channel constants can change the order).")
    paras.append(
        f"Memory: EDGE_ARENA_BYTES = {cm.info.arena_bytes} B of static RAM (one arena in "
        "model.c's .bss, so edge_model_run is not reentrant: one call at a time), "
        f"EDGE_WEIGHT_BYTES = {cm.info.weight_bytes} B of const tables (flash), plus code and "
        "stack."
    )
    return _comment(paras)


def header_defines(ir: Graph) -> str:
    infos = ir.infos()
    inp = next(layer for layer in ir.layers if isinstance(layer, L.Input))
    s_info = infos[ir.producer(ir.outputs[0]).inputs[0]]
    in_shape = tuple(infos[inp.output].shape)
    return (
        f"#define EDGE_IN_RANK {len(in_shape)}\n"
        f"#define EDGE_IN_SHAPE {_shape(in_shape)}\n"
        f"#define EDGE_IN_SCALE {float(inp.scale)!r} /* double: the golden model divides in "
        "float64 */\n"
        f"#define EDGE_IN_ZERO_POINT ({int(inp.zero_point)})\n"
        f"#define EDGE_OUT_RANK {len(s_info.shape)}\n"
        f"#define EDGE_OUT_SHAPE {_shape(tuple(s_info.shape))}\n"
        f"#define EDGE_OUT_MIN ({int(s_info.lo)})\n"
        f"#define EDGE_OUT_MAX ({int(s_info.hi)})\n"
    )


def output_function(ir: Graph) -> float_output.FloatOutput:
    scores = ir.producer(ir.outputs[0])
    info = ir.infos()[scores.inputs[0]]
    shape = tuple(info.shape)
    ops = list(scores.ops)
    if info.kind == "fixed":  # fixed-point scores (issue #11): real = q * 2**-frac, exact
        ops.insert(0, L.Mul(np.full(shape[0], 2.0 ** -info.frac, dtype=np.float32)))
    return float_output.c_function(ops, shape, OUTPUT_FN)


def library_files(ir: Graph, cm: CModel, board: Board) -> dict[str, str]:
    """Every file of the library, by name."""
    out = output_function(ir)
    api = ""
    if out.available:
        api = ("/* The source model's float32 output from the scores of edge_model_run (see "
               "above):\n * EDGE_OUT_SIZE values, equal bit for bit to edge-sdk's golden model. "
               "*/\n" + out.declaration + "\n")
    files = dict(cm.files)
    files[emit.MODEL_H] = emit.model_h(cm.plan, header_doc(ir, cm, out), header_defines(ir), api)
    if out.available:
        files[emit.MODEL_C] = cm.files[emit.MODEL_C] + "\n" + out.source
    sources = sorted(n for n in files if n.endswith(".c"))
    files[CMAKELISTS] = cmake.cmakelists(sources)
    files[README] = readme(cm, board, sources, out.available)
    return files


def write(ir: Graph, cm: CModel, board: Board, folder: Path) -> dict:
    """Write the library into `folder`; returns report.json's contents."""
    for name, text in sorted(library_files(ir, cm, board).items()):
        (folder / name).write_text(text)
    report = {"target": "cortex-m", "library": True, "board": board.name, "cpu": board.cpu,
              **cm.info.facts()}
    if shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size"):
        sizes = toolchain.object_sizes(folder, board)
        report.update(size=sizes, flash_bytes=sizes["text"] + sizes["data"],
                      ram_bytes=sizes["data"] + sizes["bss"])
    return report


_README = """\
# edge-sdk model library

Written by `edge-sdk convert MODEL --target cortex-m --library`: the model as plain C99 for an
existing firmware project. There is no `main`, start-up code, linker script or board support
here: your project keeps its own.

| file | what it is |
| --- | --- |
| `model.h` | the API and the whole contract: input dtype, shape, C order, range, how real inputs map to it, what the outputs are, RAM and flash. Read it first. |
| `model.c` | weights (`const`, flash), the static activation arena, `edge_model_run`{output_fn} |
| {kernels} | the layer kernels (generated from TVMScript, no TVM runtime) |
| `CMakeLists.txt` | the static library target `edge_model` |
| `edge-sdk.json`, `ir/`, `report.json` | edge-sdk's own record (`edge-sdk report <this folder>`); the firmware does not need them |

## With CMake

```cmake
add_subdirectory(path/to/this/folder edge_model)
target_link_libraries(my_firmware PRIVATE edge_model)
```

The library is compiled with edge-sdk's flags (option `EDGE_MODEL_WERROR`, cache variable
`EDGE_MODEL_OPT`):

    {flags}

CPU flags come from your toolchain file or `CMAKE_C_FLAGS`, as for the rest of the firmware.

## Without CMake

Add {sources} to your build, put this folder on the include path, and compile them with the
flags above plus your CPU flags. `-ffp-contract=off` (or C99 mode, not GNU) keeps
`edge_model_output` bit-exact.

## Calling it

```c
#include "model.h"

static EDGE_IN_T input[EDGE_IN_SIZE];  /* quantised sample, see model.h */
static int32_t scores[EDGE_OUT_SIZE];
{output_decl}
int rc = edge_model_run(input, scores);  /* 0: success */
{output_call}```

`edge_model_run` uses one static arena of `EDGE_ARENA_BYTES` = {arena} B (RAM) and
`EDGE_WEIGHT_BYTES` = {weights} B of constant tables (flash): it allocates nothing and is not
reentrant (one inference at a time).

## Board

Converted for `{board}` ({cpu}): the arena and the weights fit its RAM and flash, and
report.json's sizes were measured for its CPU. Compile every object of the firmware with its
CPU flags:

    {cpu_flags}

The board selects no files here. For a complete firmware image of this model (QEMU runs,
`edge-sdk simulate`, `build`, `flash`), convert without `--library`. An example integration
for the NUCLEO-F446RE is `examples/nucleo_library/` in the edge-sdk repository.
"""


def readme(cm: CModel, board: Board, sources: list[str], has_output: bool) -> str:
    roles = cmake.split_flags(toolchain.COMMON_CFLAGS)
    flags = " ".join([f"-std=c{roles['std'][0]}", *roles["warnings"], *roles["werror"],
                      *roles["opt"], *roles["other"], cmake.NO_CONTRACT])
    kernels = ", ".join(f"`{n}`" for n in sorted(cm.files) if n.startswith("edge_kernels"))
    return _README.format(
        output_fn=f", `{OUTPUT_FN}`" if has_output else "",
        kernels=kernels,
        flags=flags,
        sources=" and ".join(f"`{s}`" for s in sources),
        output_decl="static float y[EDGE_OUT_SIZE];\n" if has_output else "",
        output_call=f"{OUTPUT_FN}(scores, y);  /* the source model's output */\n"
        if has_output else "",
        arena=cm.info.arena_bytes,
        weights=cm.info.weight_bytes,
        board=board.name,
        cpu=board.cpu,
        cpu_flags=" ".join(board.gcc_flags),
    )
