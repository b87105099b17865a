"""Cortex-M library build (`convert --target cortex-m --library`), end to end with real tools.

The example MLP is converted once through the CLI. Its C is compiled for the host with gcc
(`host.py`) and must give the golden model's int32 scores and float32 outputs bit for bit; the
example NUCLEO-F446RE firmware (examples/nucleo_library) is configured and built with CMake and
arm-none-eabi-gcc and must link at the board's flash address with the board's linker script.
The float output ops are also checked against `golden.float_ops` on random op chains.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES, run_cli

import edge_sdk
from edge_sdk import golden
from edge_sdk.converters.cortexm import float_output, toolchain
from edge_sdk.converters.cortexm.boards import BOARDS
from edge_sdk.converters.cortexm.host import BATCH_DRIVER, compile_shared
from edge_sdk.ir import layers as L

MODEL = EXAMPLES / "mlp_digits.onnx"
EXAMPLE = EXAMPLES / "nucleo_library"
BOARD = BOARDS["nucleo-f446re"]
LIBRARY = ("CMakeLists.txt", "README.md", "edge_kernels.c", "edge_kernels.h", "model.c",
           "model.h")
EDGE_SDK_RECORD = ("edge-sdk.json", "ir", "report.json")
MAIN = re.compile(r"\bmain\s*\(")

OUTPUT_DRIVER = """\
#include <stdint.h>
#include "model.h"

void edge_host_output_batch(int n, const int32_t *scores, float *y) {
    int i;
    for (i = 0; i < n; ++i) {
        edge_model_output(scores + (long)i * EDGE_OUT_SIZE, y + (long)i * EDGE_OUT_SIZE);
    }
}
"""


def convert_library(out: Path, *extra: str) -> Path:
    proc = run_cli("convert", MODEL, "--target", "cortex-m", "--library", *extra, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    return convert_library(tmp_path_factory.mktemp("lib") / "mlp", "--board", "nucleo-f446re")


@pytest.fixture(scope="module")
def ir():
    return edge_sdk.load(MODEL).ir


def defines(header: str) -> dict[str, str]:
    return dict(re.findall(r"^#define (\w+) (.+?)(?: /\*.*\*/)?$", header, re.MULTILINE))


# ---------------------------------------------------------------------------- the folder
def test_folder_holds_the_library_and_no_firmware(lib):
    assert sorted(p.name for p in lib.iterdir()) == sorted(LIBRARY + EDGE_SDK_RECORD)
    for name in ("model.c", "edge_kernels.c", "model.h", "edge_kernels.h"):
        assert not MAIN.search((lib / name).read_text()), f"{name} defines or calls main"


def test_library_files_are_byte_identical_across_conversions(lib, tmp_path):
    again = convert_library(tmp_path / "again", "--board", "nucleo-f446re")
    for name in LIBRARY:
        assert (again / name).read_bytes() == (lib / name).read_bytes(), name


def test_header_states_the_contract(lib, ir):
    header = (lib / "model.h").read_text()
    d = defines(header)
    inp = ir.layers[0]
    assert isinstance(inp, L.Input)
    scores = ir.producer(ir.outputs[0])
    out_info = ir.infos()[scores.inputs[0]]
    assert d["EDGE_IN_T"] == "int16_t"  # [-255, 255] does not fit int8
    assert (int(d["EDGE_IN_MIN"].strip("()")), int(d["EDGE_IN_MAX"].strip("()"))) == \
        (inp.lo, inp.hi)
    assert d["EDGE_IN_SHAPE"] == "{" + ", ".join(map(str, inp.shape)) + "}"
    assert d["EDGE_IN_SIZE"] == str(int(np.prod(inp.shape)))
    assert float(d["EDGE_IN_SCALE"]) == inp.scale
    assert d["EDGE_IN_ZERO_POINT"] == f"({inp.zero_point})"
    assert d["EDGE_OUT_SHAPE"] == "{" + ", ".join(map(str, out_info.shape)) + "}"
    for word in ("C order", "Quantisation", "edge_model_output", "not reentrant"):
        assert word in header
    # The MLP ends in a per-class Mul and Add: the header must not promise argmax of scores.
    assert "not of the largest score" in header
    assert int(d["EDGE_ARENA_BYTES"]) > 0 and int(d["EDGE_WEIGHT_BYTES"]) > 0


# ---------------------------------------------------------------------------- host run
def test_host_build_equals_golden(lib, ir, tmp_path):
    files = {p.name: p.read_text() for p in lib.iterdir() if p.suffix in (".c", ".h")}
    so = compile_shared({**files, "edge_host_batch.c": BATCH_DRIVER,
                         "edge_host_output.c": OUTPUT_DRIVER}, tmp_path / "host")
    ptr = ctypes.c_void_p
    so.edge_host_run_batch.argtypes = [ctypes.c_int, ptr, ptr]
    so.edge_host_output_batch.argtypes = [ctypes.c_int, ptr, ptr]
    so.edge_host_output_batch.restype = None
    x = np.load(EXAMPLES / "digits_mlp_x.npy")
    rng = np.random.default_rng(12)
    extremes = rng.choice([-255, 255], size=(8, x.shape[1])).astype(np.float32)
    x = np.concatenate([x, extremes])
    q = np.ascontiguousarray(golden.quantise_input(ir.layers[0], x).astype(np.int16))
    env = golden.run_all(ir, x)
    ref_scores = env[ir.producer(ir.outputs[0]).inputs[0]]
    n, n_out = len(x), ref_scores.shape[1]
    scores = np.zeros((n, n_out), np.int32)
    assert so.edge_host_run_batch(n, q.ctypes.data, scores.ctypes.data) == 0
    np.testing.assert_array_equal(scores, ref_scores)
    y = np.zeros((n, n_out), np.float32)
    so.edge_host_output_batch(n, scores.ctypes.data, y.ctypes.data)
    ref = golden.run(ir, x)
    np.testing.assert_array_equal(y.view(np.uint32), ref.view(np.uint32))


def _random_ops(rng: np.random.Generator, channels: int) -> list[L.FloatOp]:
    ops: list[L.FloatOp] = []
    for _ in range(rng.integers(1, 5)):
        size = channels if rng.random() < 0.7 else 1
        values = (rng.uniform(0.01, 3.0, size) * rng.choice([-1, 1], size)).astype(np.float32)
        kind = rng.choice(["mul", "add", "div", "bn"])
        if kind == "mul":
            ops.append(L.Mul(values))
        elif kind == "add":
            ops.append(L.Add(values))
        elif kind == "div":
            ops.append(L.Div(values))
        else:
            ops.append(L.BatchNorm(gamma=values, beta=rng.normal(size=channels).astype(np.float32),
                                   mean=rng.normal(size=channels).astype(np.float32) * 50,
                                   var=rng.uniform(0.1, 9, channels).astype(np.float32),
                                   eps=float(rng.choice([1e-5, 1e-3]))))
    return ops


def test_output_ops_equal_golden_float_ops(tmp_path):
    """Random chains of the Scores ops, per channel and shared, 1-D and channels-first maps;
    a final Softmax is left to the caller, one in the middle means no function."""
    rng = np.random.default_rng(3)
    cases = []
    for k in range(24):
        shape = (10,) if k % 2 else (4, 3, 2)
        ops = _random_ops(rng, shape[0])
        if k % 6 == 5:
            ops.append(L.Softmax(beta=1.0))
        cases.append((f"edge_out_{k}", shape, ops))
    functions = [(name, shape, ops, float_output.c_function(ops, shape, name))
                 for name, shape, ops in cases]
    mid = float_output.c_function([L.Softmax(1.0), L.Mul(np.ones(10, np.float32))], (10,))
    assert not mid.available
    source = "#include <stdint.h>\n\n" + "\n".join(f.source for *_, f in functions)
    so = compile_shared({"ops.c": source}, tmp_path / "ops")
    for name, shape, ops, fn in functions:
        size = int(np.prod(shape))
        scores = rng.integers(-(2**30), 2**30, size=(64, size)).astype(np.int32)
        scores[0], scores[1] = -(2**30), 2**30 - 1
        y = np.zeros_like(scores, dtype=np.float32)
        fn_c = getattr(so, name)
        fn_c.argtypes, fn_c.restype = [ctypes.c_void_p, ctypes.c_void_p], None
        for i in range(len(scores)):
            fn_c(scores[i].ctypes.data, y[i].ctypes.data)
        expect_ops = ops[:-1] if fn.softmax_beta is not None else ops
        with np.errstate(over="ignore"):
            ref = golden.float_ops(scores.reshape(64, *shape).astype(np.int64), expect_ops)
        np.testing.assert_array_equal(y.view(np.uint32), ref.reshape(64, -1).view(np.uint32),
                                      err_msg=name)


def test_sample_is_the_digit_it_claims(ir):
    """examples/nucleo_library/sample.c is test image 0 and the model classifies it right,
    so the board prints its label and exits 0."""
    text = (EXAMPLE / "sample.c").read_text()
    body = text[text.index("edge_sample[EDGE_IN_SIZE] = {"):]
    values = [int(v) for v in re.findall(r"-?\d+", body[body.index("{"):body.index("}")])]
    label = int(re.search(r"edge_sample_label = (\d+)u;", text).group(1))
    x = np.load(EXAMPLES / "digits_mlp_x.npy")[0]
    np.testing.assert_array_equal(np.array(values, np.float32), x)
    assert label == int(np.load(EXAMPLES / "digits_y.npy")[0])
    assert int(golden.run(ir, x[None]).argmax()) == label


# ---------------------------------------------------------------------------- the board build
def _tool_missing() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake not installed (Debian: cmake)"
    if shutil.which("arm-none-eabi-gcc") is None:
        return "arm-none-eabi-gcc not installed (Debian: gcc-arm-none-eabi libnewlib-arm-none-eabi)"
    return None


@pytest.mark.skipif(_tool_missing() is not None, reason=str(_tool_missing()))
def test_nucleo_example_builds_with_cmake(lib, tmp_path):
    build = tmp_path / "build"

    def run(*cmd: str | Path) -> str:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    run("cmake", "-S", EXAMPLE, "-B", build,
        f"-DCMAKE_TOOLCHAIN_FILE={EXAMPLE / 'arm-none-eabi.cmake'}", f"-DEDGE_MODEL_DIR={lib}")
    run("cmake", "--build", build)
    elf = build / "nucleo_library.elf"
    size = run(toolchain.find_tool("arm-none-eabi-size"), elf).splitlines()
    text, data, bss = (int(v) for v in size[-1].split()[:3])
    report = json.loads((lib / "report.json").read_text())
    assert text + data > report["weight_bytes"]
    assert bss >= report["arena_bytes"]

    image = toolchain.read_elf(elf)
    assert image.symbol("edge_vectors") == BOARD.flash_origin  # the board's linker script
    assert BOARD.flash_origin <= image.entry < BOARD.flash_origin + BOARD.flash_bytes
    for name in ("main", "edge_model_run", "edge_model_output", "Reset_Handler"):
        image.symbol(name)
    nm = run(toolchain.find_tool("arm-none-eabi-nm"), "--defined-only", build / "edge_model" /
             "libedge_model.a")
    defined = {line.split()[-1] for line in nm.splitlines() if len(line.split()) == 3}
    assert "edge_model_run" in defined and "main" not in defined

    # The library is compiled with edge-sdk's flags, the CPU flags are the board's.
    flags = (build / "edge_model" / "CMakeFiles" / "edge_model.dir" / "flags.make").read_text()
    c_flags = re.search(r"^C_FLAGS = (.*)$", flags, re.MULTILINE).group(1).split()
    for flag in (*toolchain.COMMON_CFLAGS, *BOARD.gcc_flags):
        assert flag in c_flags, flag
    cpu = re.search(r'EDGE_CPU_FLAGS "([^"]*)"', (EXAMPLE / "arm-none-eabi.cmake").read_text())
    assert tuple(cpu.group(1).split()) == BOARD.gcc_flags


# ---------------------------------------------------------------------------- the CLI
def test_cli_refuses_firmware_steps_on_a_library(lib, tmp_path):
    for args in (("simulate", lib, "--input", EXAMPLES / "digits_mlp_x.npy", "--output",
                  tmp_path / "y.npy"), ("build", lib), ("flash", lib)):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "library build" in lines[0], proc.stderr
    assert not (tmp_path / "y.npy").exists()
    proc = run_cli("report", lib)
    assert proc.returncode == 0, proc.stderr
    assert "C library" in proc.stdout


def test_library_needs_the_cortex_m_target(tmp_path):
    proc = run_cli("convert", MODEL, "--target", "fpga", "--library", "-o", tmp_path / "f")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--target cortex-m" in proc.stderr
    assert not (tmp_path / "f").exists()
