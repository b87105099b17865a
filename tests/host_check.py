"""The Cortex-M C, compiled for this machine or run under QEMU, checked against the golden
model's fixed-point mode.

Several test files (8-bit stems from ONNX and TFLite, windowed average pools, ...) end the same
way: generate the C, compile it with the host compiler (`HostModel`) or build the firmware and
run it under QEMU, feed it the golden model's quantised inputs and require every output to
equal the golden fixed-point tensor that feeds Scores. Those checks live here once, so a
stricter comparison reaches every caller; the expected values always come from the golden
model, never from the C under test.

Imported as `from host_check import ...` (pytest puts tests/ on sys.path, as for torch_nets);
the Cortex-M backend is imported on first use, since loading TVM takes seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_sdk import golden

if TYPE_CHECKING:
    from edge_sdk.converters.cortexm.codegen import CModel
    from edge_sdk.ir.graph import Graph
    from edge_sdk.model import Model


def golden_scores_input(ir: Graph, x: np.ndarray) -> np.ndarray:
    """The golden fixed-point tensor that feeds Scores, flat per sample (the C's output)."""
    env = golden.run_all(ir, x, fixed_point=True)
    scores = ir.producer(ir.outputs[0])
    return env[scores.inputs[0]].reshape(len(x), -1)


def assert_host_bit_exact(ir: Graph, x: np.ndarray, workdir: Path) -> CModel:
    """Generate the C for `ir`, compile it for the host in `workdir`, run the batch `x`
    (quantised by the golden input rule) and assert it equals `golden_scores_input` value for
    value; the message counts the differences and names the first. Returns the generated model,
    for checks on its files."""
    from edge_sdk.converters.cortexm import build
    from edge_sdk.converters.cortexm.host import HostModel

    cm = build(ir)
    host = HostModel(cm.files, workdir, cm.info.input_dtype, cm.info.input_size,
                     cm.info.output_size)
    _assert_equal(host.run(golden.quantise_input(ir.layers[0], x)), golden_scores_input(ir, x))
    return cm


def assert_qemu_bit_exact(model: Model, x: np.ndarray, out: Path) -> None:
    """`convert --target cortex-m` into `out`, run the batch `x` (quantised by the golden input
    rule) through the firmware under QEMU, and assert it equals `golden_scores_input` of the IR
    the build wrote, value for value."""
    from edge_sdk import targets
    from edge_sdk.converters.cortexm import backend

    folder = targets.convert(model, "cortex-m", out, {})
    meta, ir = targets.open_build(folder)
    want = golden_scores_input(ir, x)
    y, _ = backend.simulate(folder, meta, ir, golden.quantise_input(ir.layers[0], x), x,
                            count=False)
    _assert_equal(np.asarray(y).reshape(want.shape), want)


def _assert_equal(y: np.ndarray, want: np.ndarray) -> None:
    """y == want everywhere, else one line: how many differ and the first (sample, output)."""
    assert y.shape == want.shape, f"C output shape {y.shape} vs golden {want.shape}"
    bad = np.argwhere(y != want)
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise AssertionError(f"{len(bad)} differences, first at {at}: C {y[at]} vs golden "
                             f"{want[at]}")
