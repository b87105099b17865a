"""`edge-sdk diff`: a deliberately corrupted weight is found at exactly its layer and channel.

Each test corrupts one weight where the issue says (the IR the golden model runs while
onnxruntime runs the untouched ONNX; the generated C table of the Cortex-M debug firmware; the
FPGA debug design's weight ROM) and checks the diff names that layer, that output channel and
the first element it changes, with values that differ by what flipping a ±1 weight must do:
2 * |activation| at the tap. Clean models report no difference and exit 0.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import edge_sdk
from edge_sdk import bitpack, golden
from edge_sdk.diff import compare_dumps, diff, references
from edge_sdk.model import Model
from edge_sdk.reports.diff import compare_exact, compare_float

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo
from conftest import run_cli

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                               reason="arm-none-eabi-gcc missing")
needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog missing")

CH = 5  # the corrupted output channel
C_IN = 2  # ... at input channel C_IN of the centre tap (never a padded tap: every pixel sees it)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """Conv layers with plain ±1 weights (their ONNX outputs are integers) and Where (±1)."""
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    onnx.save(zoo.cnn(8, channels=(4, 8)), str(path))
    rng = np.random.default_rng(3)
    x = rng.integers(1, 16, size=(3, 1, 8, 8)).astype(np.float32)  # no zero input
    np.save(path.with_name("x.npy"), x)
    return path, edge_sdk.load(path, input_range=(0, 15)), x


def _flip_ir_weight(ir, layer_name: str, row: int, col: int):
    """The IR with one packed weight bit flipped (±1 -> ∓1); the original is untouched."""
    g = copy.deepcopy(ir)
    layer = next(x for x in g.layers if x.name == layer_name)
    assert layer.weights.mask is None  # binary weights: the sign bit is the weight
    layer.weights.sign[row, col // 32] ^= np.uint32(1 << (col % 32))
    return g


def _centre_col() -> int:
    return C_IN * 9 + 4  # (c, kh, kw) order: input channel C_IN, tap (1, 1)


def _check_flip(comp, layer: str, act: np.ndarray) -> None:
    """The first difference is `layer`, channel CH, element (0, 0) of sample 0, and moves the
    accumulator by 2 * |activation| at the flipped tap."""
    row = comp.first
    assert row is not None, comp.line()
    assert row.site.layer == layer, comp.line()
    m = row.mismatch
    assert (m.sample, m.index) == (0, (CH, 0, 0)), comp.line()
    assert abs(m.got - m.want) == pytest.approx(2 * abs(float(act[0, C_IN, 0, 0])), rel=1e-5)
    earlier = [r for r in comp.rows if r.site.order < row.site.order]
    assert earlier and all(r.mismatch is None for r in earlier)


# ------------------------------------------------------------------------ golden vs ONNX
def test_golden_clean_model_is_equal(cnn):
    _, model, x = cnn
    (comp,) = diff(model, "golden", x)
    assert not comp.differs, comp.line()
    exact = {r.site.layer for r in comp.rows if r.exact}
    assert {"conv2d1", "binarize0", "binarize1", "maxpool0"} <= exact  # integer parts exact


def test_golden_names_corrupted_conv(cnn):
    path, model, x = cnn
    bad = Model(model.source, _flip_ir_weight(model.ir, "conv2d1", CH, _centre_col()), str(path))
    (comp,) = diff(bad, "golden", x)
    _check_flip(comp, "conv2d1", golden.run_all(model.ir, x)["binarize0"])
    assert comp.first.exact  # the ONNX Conv output is the integer accumulator itself


def test_golden_float_layer_corrupted(tmp_path):
    """Scaled weights and a bias: the ONNX conv output is float; the diff applies the float ops
    to the golden accumulator and still names the conv layer (first layer, integer input)."""
    path = tmp_path / "rowscale.onnx"
    onnx.save(zoo.cnn(21, channels=(6,), weights="rowscale", pool=False), str(path))
    model = edge_sdk.load(path, input_range=(0, 15))
    x = np.random.default_rng(4).integers(1, 16, size=(2, 1, 8, 8)).astype(np.float32)
    assert not diff(model, "golden", x)[0].differs
    bad = Model(model.source, _flip_ir_weight(model.ir, "conv2d0", CH, 4), str(path))
    comp = diff(bad, "golden", x)[0]
    row = comp.first
    assert row is not None and row.site.layer == "conv2d0" and not row.exact, comp.line()
    m = row.mismatch
    assert (m.sample, m.index) == (0, (CH, 0, 0)), comp.line()
    # the conv's own ONNX output: acc * (row scale) + bias, with acc moved by 2 * x
    affine = model.source.consumers("conv2d0")[0]
    scale = float(next(op for op in affine.ops if type(op).__name__ == "Mul").values[CH])
    assert abs(m.got - m.want) == pytest.approx(2 * float(x[0, 0, 0, 0]) * abs(scale), rel=1e-4)


def test_references_cover_every_layer_kind(cnn):
    _, model, _ = cnn
    refs = {r.tensor: r for r in references(model.source, model.ir)}
    assert {"conv2d0", "binarize0", "conv2d1", "binarize1", "maxpool0", "flatten0",
            "dense0"} <= set(refs)
    assert refs["binarize1"].ops == () and refs["dense0"].ops  # dense0 is seen after its BN


def test_references_follow_lowering_rewrites(tmp_path):
    """BN before the pool (lowering pools the integers first, min for negative gammas) and an
    integer output (renamed by FoldScores): every ONNX tensor still finds its golden twin."""
    from zoo import blocks as b
    from zoo._graph import GraphBuilder

    rng = np.random.default_rng(1)
    g = GraphBuilder("poolfirst")
    cur = g.add_input("x", ["N", 1, 6, 6])
    w = rng.choice([-1.0, 1.0], size=(4, 1, 3, 3)).astype(np.float32)
    cur = b.conv(g, rng, cur, w, None, kind="pm1", pads=1, strides=1, hint="c0")
    cur = b.batch_norm(g, cur, b.random_bn(rng, np.full(4, 20.0)), hint="bn0")
    cur = g.op("MaxPool", [cur], kernel_shape=[2, 2], strides=[2, 2])
    cur = g.op("Flatten", [g.op("Sign", [cur])], axis=1)
    w2 = rng.choice([-1.0, 1.0], size=(3, 36)).astype(np.float32)
    g.set_output(g.op("Gemm", [cur, g.initializer("w2", w2)], transB=1), ["N", 3])
    path = tmp_path / "m.onnx"
    onnx.save(g.model(), str(path))
    model = edge_sdk.load(path, input_range=(0, 15))
    assert any(getattr(x, "select_min", None) is not None for x in model.ir.layers)
    refs = references(model.source, model.ir)
    assert len(refs) == len(model.source.source["tensors"]) == 6
    x = rng.integers(0, 16, size=(5, 1, 6, 6)).astype(np.float32)
    (comp,) = diff(model, "golden", x)
    assert not comp.differs and len(comp.rows) == 6, comp.line()


# ------------------------------------------------------------------------ cortex-m
@needs_gcc
def test_cortexm_names_corrupted_c_table(cnn, tmp_path):
    from edge_sdk.converters.cortexm import debug_dumps

    _, model, x = cnn
    ir = model.ir
    build = debug_dumps.write_debug(ir, tmp_path / "cm")
    idx = next(i for i, layer in enumerate(ir.layers) if layer.name == "conv2d1")
    step = next(s for s in build.plan.steps if s.layer == idx)
    table = step.args[1]
    assert table.table
    # binary conv weights in flash: [O][KH][KW][ceil(C/32)] words, channel c at bit c % 32
    word = ((CH * 3 + 1) * 3 + 1) * 1 + C_IN // 32
    _flip_c_word(tmp_path / "cm" / "model.c", table.ref, word, C_IN % 32)
    debug_dumps.compile_debug(build)
    env = golden.run_all(ir, x)
    comp = compare_dumps("cortex-m", ir, env, debug_dumps.run_dumps(build, ir, x))
    _check_flip(comp, "conv2d1", env["binarize0"])
    assert all(r.observed for r in comp.rows)  # unfused: every accumulator is in RAM


def _flip_c_word(path: Path, table: str, index: int, bit: int) -> None:
    text = path.read_text()
    m = re.search(rf"static const uint32_t {table}\[\d+\] = \{{(.*?)\}};", text, re.DOTALL)
    assert m is not None
    words = [int(v.strip().rstrip("u"), 16) for v in m.group(1).split(",") if v.strip()]
    words[index] ^= 1 << bit
    body = "\n" + ",\n".join(f"    0x{w:08x}u" for w in words) + ",\n"
    path.write_text(text[:m.start(1)] + body + text[m.end(1):])


@needs_gcc
def test_cli_cortexm_clean_exit_0(cnn):
    path, _, _ = cnn
    r = run_cli("diff", path, "--target", "cortex-m", "--input", path.with_name("x.npy"),
                "--input-range", "0,15", "--fused")
    assert r.returncode == 0, r.stderr + r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].startswith("golden vs onnxruntime: equal")
    assert lines[1].startswith("cortex-m vs golden: equal")
    conv = next(line for line in lines if line.startswith("conv2d1 "))
    assert conv.split()[-1] == "-"  # fused: the production kernels keep no accumulator


# ------------------------------------------------------------------------ fpga
@needs_icarus
def test_fpga_names_corrupted_weight_rom(cnn, tmp_path):
    from edge_sdk.converters.fpga import probes

    _, model, x = cnn
    ir = model.ir
    p = probes.debug_plan(ir)
    prbs = probes.probes_of(ir, p)
    k = next(i for i, pr in enumerate(prbs) if pr.tensor == "conv2d1")
    p.stages[k].weights[CH, 4, C_IN] *= -1  # ROM words are built from these at elaboration
    x2 = x[:2]
    env = golden.run_all(ir, x2)
    dumps = probes.run_probes(probes.design(p), prbs, ir, x2, work_dir=tmp_path / "sim")
    comp = compare_dumps("fpga", ir, env, dumps)
    _check_flip(comp, "conv2d1", env["binarize0"])


@needs_icarus
def test_cli_fpga_clean_exit_0(cnn):
    path, _, x = cnn
    small = path.with_name("x2.npy")
    np.save(small, x[:2])
    r = run_cli("diff", path, "--target", "fpga", "--input", small, "--input-range", "0,15")
    assert r.returncode == 0, r.stderr + r.stdout
    # every stage's stream: 2 convs, 2 thresholds, the pool, the dense (the flatten moves no data)
    assert "fpga vs golden: equal on all 6 compared layer outputs" in r.stdout, r.stdout


@needs_gcc
@needs_icarus
def test_ternary_activations_on_both_targets(tmp_path):
    """Sign(0) = 0 ties: mask planes (Cortex-M) and 2-bit codes (FPGA) decode to the zeros.
    The FPGA runs its production design here (thresholds fused: accumulators unobservable)."""
    from edge_sdk.converters.cortexm import debug_dumps
    from edge_sdk.converters.fpga import probes

    path = tmp_path / "tie.onnx"
    onnx.save(zoo.tie_mlp(5), str(path))
    ir = edge_sdk.load(path, input_range=(0, 15)).ir
    x = np.random.default_rng(0).integers(0, 16, size=(4, 12)).astype(np.float32)
    env = golden.run_all(ir, x)
    assert (env["binarize1"] == 0).any()
    cm = compare_dumps("cortex-m", ir, env, debug_dumps.dump(ir, x, tmp_path / "cm"))
    fp = compare_dumps("fpga", ir, env, probes.dump(ir, x, fuse=True, work_dir=tmp_path / "f"))
    assert not cm.differs and not fp.differs, (cm.line(), fp.line())
    assert all(r.observed for r in cm.rows)
    seen = {r.site.layer for r in fp.rows if r.observed}
    assert seen == {"binarize0", "binarize1", "dense2"}, seen


# ------------------------------------------------------------------------ CLI: IR folder
def test_cli_ir_folder_against_its_onnx(tmp_path):
    """convert --target ir, flip one weight in the folder's .npy, diff it against the ONNX."""
    onnx_path = tmp_path / "mlp.onnx"
    onnx.save(zoo.mlp(2, act="where"), str(onnx_path))
    folder = tmp_path / "ir"
    assert run_cli("convert", onnx_path, "--target", "ir", "-o", folder,
                   "--input-range", "0,15").returncode == 0
    x = np.random.default_rng(5).integers(0, 16, size=(4, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ("diff", folder, "--source", onnx_path, "--target", "golden", "--input",
            tmp_path / "x.npy", "--input-range", "0,15")
    clean = run_cli(*args)
    assert clean.returncode == 0, clean.stderr + clean.stdout

    doc = json.loads((folder / "ir.json").read_text())
    dense1 = next(layer for layer in doc["layers"] if layer["name"] == "dense1")
    npy = folder / dense1["weights"]["sign"]["npy"]
    sign = np.load(npy)
    sign[3, 0] ^= np.uint32(1 << 5)  # row 3, column 5
    np.save(npy, sign)
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr + r.stdout
    first = r.stdout.splitlines()[0]
    assert "first difference at layer 'dense1' (dense" in first, first
    assert "channel 3 of sample 0" in first, first
    m = re.search(r"golden (-?\d+) vs onnxruntime (-?\d+)", first)
    assert m and abs(int(m[1]) - int(m[2])) == 2, first  # one ±1 weight times a ±1 input


def test_cli_bad_input_exit_2(cnn, tmp_path):
    path, _, _ = cnn
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 8, 8), np.float32))
    cases = [
        ("diff", path, "--target", "golden", "--input", wrong),
        ("diff", path, "--target", "golden", "--input", tmp_path / "missing.npy"),
        ("diff", path, "--target", "golden", "--input", path.with_name("x.npy"), "--atol", "-1"),
    ]
    folder = tmp_path / "ir"
    assert run_cli("convert", path, "--target", "ir", "-o", folder).returncode == 0
    cases.append(("diff", folder, "--target", "golden", "--input", path.with_name("x.npy")))
    other = tmp_path / "other.onnx"
    onnx.save(zoo.mlp(1), str(other))
    cases.append(("diff", folder, "--source", other, "--target", "golden", "--input",
                  path.with_name("x.npy")))
    for args in cases:
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "error:" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


# ------------------------------------------------------------------------ decoding, compare
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.integers(1, 6), st.booleans(), st.integers(0, 2**32 - 1))
def test_cortexm_bits_decode(channels, pixels, ternary, seed):
    """Bits packed per pixel over channels (the Storage layout) decode to the C-order tensor."""
    from edge_sdk.converters.cortexm.debug_dumps import decode
    from edge_sdk.converters.cortexm.layout import Storage

    rng = np.random.default_rng(seed)
    values = rng.choice([-1, 0, 1] if ternary else [-1, 1], size=(channels, pixels))
    cw = bitpack.n_words(channels)
    words = np.zeros(pixels * cw * (2 if ternary else 1), dtype=np.uint32)
    for c in range(channels):
        for p in range(pixels):
            if values[c, p] > 0:
                words[p * cw + c // 32] |= np.uint32(1 << (c % 32))
            if ternary and values[c, p] != 0:
                words[pixels * cw + p * cw + c // 32] |= np.uint32(1 << (c % 32))
    store = Storage("b0", "bits", channels * pixels, channels, pixels, ternary)
    got = decode(store, words, (channels * pixels,))
    np.testing.assert_array_equal(got, values.reshape(-1))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_compare_reports_first_element_in_c_order(n, size, seed):
    rng = np.random.default_rng(seed)
    want = rng.integers(-50, 50, size=(n, size))
    got = want.copy()
    flips = rng.random(want.shape) < 0.2
    got[flips] += 1
    m = compare_exact(got, want)
    if not flips.any():
        assert m is None
        return
    flat = int(np.flatnonzero(flips)[0])
    assert (m.sample, m.index) == (flat // size, (flat % size,))
    assert m.got == m.want + 1 and m.count == int(flips.sum())


def test_float_compare_tolerates_rounding_not_a_flip():
    rng = np.random.default_rng(6)
    acc = rng.integers(-288, 289, size=(2, 16)).astype(np.float32)
    a = np.float32(0.0123)
    want = acc * a
    # a sum of 288 terms in another order: off by a few ulps of the largest value
    got = want + np.float32(3) * np.spacing(np.abs(want).max(axis=1, keepdims=True))
    assert compare_float(got, want, k=288) is None
    got[1, 7] = (acc[1, 7] + 2) * a  # one flipped ±1 weight
    m = compare_float(got, want, k=288)
    assert m is not None and (m.sample, m.index) == (1, (7,))
