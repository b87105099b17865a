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


def assert_host_bit_exact(ir: Graph, x: np.ndarray, workdir: Path,
                          want: np.ndarray | None = None) -> CModel:
    """Generate the C for `ir`, compile it for the host in `workdir`, run the batch `x`
    (quantised by the golden input rule) and assert it equals `golden_scores_input` value for
    value; the message counts the differences and names the first. `want` replaces the golden
    tensor where a test has its own reference (computed by the test, never by the C). Returns
    the generated model, for checks on its files."""
    return host_bit_exact(ir, x, workdir, want)[0]


def host_bit_exact(ir: Graph, x: np.ndarray, workdir: Path,
                   want: np.ndarray | None = None) -> tuple[CModel, np.ndarray]:
    """`assert_host_bit_exact`, returning the C's output too: (model, int32 [N, outputs]), for
    tests that go on to check it against an independent reference (LCE's interpreter, the
    model output through Scores)."""
    from edge_sdk.converters.cortexm import build
    from edge_sdk.converters.cortexm.host import HostModel

    cm = build(ir)
    host = HostModel(cm.files, workdir, cm.info.input_dtype, cm.info.input_size,
                     cm.info.output_size)
    y = host.run(golden.quantise_input(ir.layers[0], x))
    _assert_equal(y, golden_scores_input(ir, x) if want is None else want)
    return cm, y


def assert_qemu_bit_exact(model: Model | Graph, x: np.ndarray, out: Path,
                          want: np.ndarray | None = None,
                          boards: tuple[str | None, ...] = (None,)) -> Path:
    """Convert `model` for the Cortex-M into `out`, run the batch `x` (quantised by the golden
    input rule) through the firmware under QEMU on each of `boards` (None: the build's
    default board), and assert it equals `golden_scores_input` of the IR the build wrote (or
    `want`), value for value. A Model goes through `convert --target cortex-m` as a user's
    would; a Graph (hand-built, already in target form) straight through the backend with no
    options. Returns the build folder, for checks on its files."""
    from edge_sdk import targets
    from edge_sdk.converters.cortexm import backend
    from edge_sdk.ir.graph import Graph

    if isinstance(model, Graph):
        folder, meta, ir = out, {"options": {}}, model
        folder.mkdir(parents=True)
        backend.convert(ir, {}, folder)
    else:
        folder = targets.convert(model, "cortex-m", out, {})
        meta, ir = targets.open_build(folder)
    want = golden_scores_input(ir, x) if want is None else want
    q = golden.quantise_input(ir.layers[0], x)
    for board in boards:
        y, _ = backend.simulate(folder, meta, ir, q, x, board=board, count=False)
        _assert_equal(np.asarray(y).reshape(want.shape), want)
    return folder


def assert_device_tensors_bit_exact(ir: Graph, x: np.ndarray, workdir: Path) -> set[str]:
    """The debug firmware (every buffer kept, thresholds unfused) built in `workdir` and run
    under unicorn on the batch `x`: every tensor it dumps must equal golden.run_all's
    fixed-point tensor of that name. Returns the names dumped, so a test can require the
    tensors it is about among them (an empty dump would otherwise pass)."""
    from edge_sdk.converters.cortexm import debug_dumps

    env = golden.run_all(ir, x, fixed_point=True)
    dumps = debug_dumps.dump(ir, x, workdir)
    for tensor, got in dumps.items():
        np.testing.assert_array_equal(got, env[tensor], err_msg=tensor)
    return set(dumps)


def _assert_equal(y: np.ndarray, want: np.ndarray) -> None:
    """y == want everywhere, else one line: how many differ and the first (sample, output)."""
    assert y.shape == want.shape, f"C output shape {y.shape} vs golden {want.shape}"
    bad = np.argwhere(y != want)
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise AssertionError(f"{len(bad)} differences, first at {at}: C {y[at]} vs golden "
                             f"{want[at]}")
