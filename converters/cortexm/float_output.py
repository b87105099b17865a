"""The Scores layer's float ops as C: `edge_model_output()` for a library build.

`edge_model_run` stops at the integer scores; a firmware that wants the source model's own
output (e.g. per-class scale and offset, which can change the argmax) needs the float ops too.
The function applies them as `golden.float_ops` does: float32, in the source's order, one IEEE
operation per C statement (BatchNorm as its float32 scale and bias, computed here exactly as
the golden model computes them), so the device gets the golden model's numbers bit for bit as
long as the compiler does not fuse a multiply and an add (C99 mode, or -ffp-contract=off).

A final Softmax is left out: `expf` differs between C libraries, and it does not change the
argmax. A Softmax followed by more ops gives no function at all (said in model.h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import EdgeError
from ...ir import layers as L

PER_LINE = 6


@dataclass(frozen=True)
class Step:
    """One float32 operation `y = y <op> constant[channel]` (or a single constant)."""

    op: str  # "*", "+", "/"
    kind: str  # the IR op it comes from, for the documentation
    values: np.ndarray  # float32, size 1 or the channel count


@dataclass(frozen=True)
class FloatOutput:
    """What a library build adds for the float ops (empty `source` when there is no function)."""

    steps: tuple[Step, ...]
    softmax_beta: float | None  # a final Softmax that the function leaves out
    source: str  # C definitions for model.c
    declaration: str  # the prototype for model.h

    @property
    def available(self) -> bool:
        return bool(self.source)


def batchnorm_steps(op: L.BatchNorm) -> tuple[Step, Step]:
    """BatchNorm as golden.float_ops evaluates it: y * scale + bias, both float32.

    Kept equal to the golden model's formula (onnxruntime's CPU kernel); the library test
    compares the C with golden.float_ops on random BatchNorm parameters.
    """
    var = np.asarray(op.var, np.float32)
    inv_std = np.float32(1) / np.sqrt(var + np.float32(op.eps))
    scale = inv_std * np.asarray(op.gamma, np.float32)
    bias = np.asarray(op.beta, np.float32) - np.asarray(op.mean, np.float32) * scale
    return Step("*", "BatchNorm scale", scale), Step("+", "BatchNorm bias", bias)


def steps_of(ops: list[L.FloatOp]) -> tuple[tuple[Step, ...], float | None, bool]:
    """(steps, final softmax beta, computable): the ops as float32 steps."""
    steps: list[Step] = []
    for n, op in enumerate(ops):
        if isinstance(op, L.Softmax):
            if n != len(ops) - 1:
                return tuple(steps), None, False
            return tuple(steps), float(op.beta), True
        if isinstance(op, L.BatchNorm):
            steps.extend(batchnorm_steps(op))
        else:
            sym = {L.Mul: "*", L.Add: "+", L.Div: "/"}[type(op)]
            steps.append(Step(sym, type(op).__name__, np.asarray(op.values, np.float32)))
    return tuple(steps), None, True


def float_literal(v: np.float32) -> str:
    """The shortest decimal that reads back as exactly this float32, as a C float constant."""
    if not np.isfinite(v):
        raise EdgeError(f"the model's output ops hold a non-finite constant ({v}); the library "
                        "cannot write it as a C float")
    return np.format_float_scientific(np.float32(v), unique=True, trim="0", exp_digits=2) + "f"


def _array(name: str, values: np.ndarray) -> str:
    flat = [float_literal(v) for v in values.ravel()]
    lines = [
        "    " + ", ".join(flat[i:i + PER_LINE]) + "," for i in range(0, len(flat), PER_LINE)
    ]
    return f"static const float {name}[{len(flat)}] = {{\n" + "\n".join(lines) + "\n};\n"


def c_function(ops: list[L.FloatOp], shape: tuple[int, ...],
               name: str = "edge_model_output") -> FloatOutput:
    """C for `void name(const int32_t *scores, float *y)` over one sample of `shape`.

    The channel of flat index i is i / prod(shape[1:]) (C order, channels first), as the golden
    model broadcasts per-channel values over axis 1 of the batch.
    """
    steps, beta, ok = steps_of(ops)
    size = math.prod(shape)
    channels = shape[0] if shape else 1
    inner = size // channels if channels else 1
    declaration = f"void {name}(const int32_t *scores, float *y);\n"
    if not ok:
        return FloatOutput(steps, beta, "", "")
    tables, body = [], []
    for k, step in enumerate(steps):
        v = step.values.ravel()
        if v.size == 1:
            operand = float_literal(v[0])
        elif v.size == channels:
            table = f"{name}_c{k}"
            tables.append(_array(table, v))
            operand = f"{table}[i]" if inner == 1 else f"{table}[i / {inner}]"
        else:
            raise EdgeError(f"the model's output op {step.kind} has {v.size} values for "
                            f"{channels} channels")
        body.append(f"        v = v {step.op} {operand};\n")
    source = (
        "/* The model's output ops, float32, one IEEE operation per statement (as edge-sdk's\n"
        " * golden model); compile without FMA contraction (-std=c99 or -ffp-contract=off). */\n"
        + "".join(tables)
        + f"\nvoid {name}(const int32_t *scores, float *y)\n{{\n"
        + "    int32_t i;\n"
        + f"    for (i = 0; i < {size}; ++i) {{\n"
        + "        float v = (float)scores[i];\n"
        + "".join(body)
        + "        y[i] = v;\n    }\n}\n"
    )
    return FloatOutput(steps, beta, source, declaration)


def keeps_argmax(steps: tuple[Step, ...]) -> bool:
    """Whether the float ops cannot reorder the scores: every constant is one value shared by
    all channels, and no multiply or divide by a negative or zero number."""
    for step in steps:
        v = step.values.ravel()
        if np.unique(v).size > 1:
            return False
        if step.op in "*/" and not (v > 0).all():
            return False
    return True
