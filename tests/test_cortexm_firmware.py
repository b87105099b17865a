"""Cortex-M firmware, build, QEMU and unicorn: a hand-written model stands in for generated code.

The model is an integer function of the input with loops, a data-dependent loop (so instruction
counts vary per sample), a .data table (start-up copy / segment loading), a .bss arena and an
exact float round trip (FPU enabled on the M4, soft-float on the M3); it is compiled for int8
and int16 inputs. Everything runs against the real toolchain; the tests skip
only when arm-none-eabi-gcc or qemu-system-arm is not installed.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_sdk.converters.cortexm import icount, qemu, toolchain
from edge_sdk.converters.cortexm.boards import BOARDS, get_board
from edge_sdk.converters.cortexm.makefile import write_makefile
from edge_sdk.errors import EdgeError

_MISSING = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not installed (Debian: gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm)",
)

QEMU_BOARDS = ("qemu-mps2-an386", "qemu-mps2-an385", "qemu-mps2-an500")
IN_SIZE = 24  # not a multiple of 4: tails in every loop
OUT_SIZE = 5
BIAS = [3, -1, 4, 1, -5]

MODEL_H = """\
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define EDGE_IN_T {in_t}
#define EDGE_IN_SIZE {in_size}
#define EDGE_OUT_SIZE {out_size}
#define EDGE_ARENA_BYTES {arena}
#define EDGE_WEIGHT_BYTES 0
#define EDGE_TEST_MODE {mode} /* 0 normal, 1 returns an error, 2 faults, 3 never returns */
int edge_model_run(const EDGE_IN_T *in, int32_t *out);
#endif
"""

MODEL_C = """\
#include "model.h"

/* Not const: lands in .data, so the start-up copy (QEMU) and segment loading (unicorn) run. */
int32_t edge_test_bias[EDGE_OUT_SIZE] = {{{bias}}};
static int32_t arena[EDGE_OUT_SIZE];

int edge_model_run(const EDGE_IN_T *in, int32_t *out)
{{
#if EDGE_TEST_MODE == 1
    if (in[0] < 0) {{
        return 3;
    }}
#elif EDGE_TEST_MODE == 2
    __builtin_trap();
#elif EDGE_TEST_MODE == 3
    for (volatile int spin = 1; spin;) {{
    }}
#endif
    for (int j = 0; j < EDGE_OUT_SIZE; j++) {{
        int32_t acc = edge_test_bias[j];
        for (int i = 0; i < EDGE_IN_SIZE; i++) {{
            acc += (int32_t)in[i] * (((i * 7 + j * 13) % 11) - 5);
        }}
        /* Exact round trip (|acc| < 2^24) through float: VFP instructions on the M4, which
         * fault unless start-up enabled the FPU; libgcc soft-float calls on the M3. */
        volatile float as_float = (float)acc;
        arena[j] = (int32_t)as_float;
    }}
    uint32_t bits = (uint32_t)arena[0];
    int32_t steps = 0;
    while (bits != 0u) {{ /* data-dependent trip count */
        bits &= bits - 1u;
        steps++;
    }}
    for (int j = 0; j < EDGE_OUT_SIZE - 1; j++) {{
        out[j] = arena[j];
    }}
    out[EDGE_OUT_SIZE - 1] = steps;
    return 0;
}}
"""


def write_model(folder: Path, dtype: type, mode: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    in_t = {np.int8: "int8_t", np.int16: "int16_t"}[dtype]
    (folder / "model.h").write_text(
        MODEL_H.format(in_t=in_t, in_size=IN_SIZE, out_size=OUT_SIZE, arena=4 * OUT_SIZE, mode=mode)
    )
    (folder / "model.c").write_text(MODEL_C.format(bias=", ".join(map(str, BIAS))))
    return folder


def reference(x: np.ndarray) -> np.ndarray:
    i = np.arange(IN_SIZE)[None, :]
    j = np.arange(OUT_SIZE)[:, None]
    w = (i * 7 + j * 13) % 11 - 5
    acc = np.asarray(BIAS, dtype=np.int64) + x.astype(np.int64) @ w.T
    out = acc.astype(np.int32)
    bits = out[:, 0].astype(np.uint32)
    out[:, -1] = [int(b).bit_count() for b in bits]
    return out


def sample_inputs(dtype: type, n: int = 12, seed: int = 0) -> np.ndarray:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    x = rng.integers(info.min, info.max, size=(n, IN_SIZE), endpoint=True).astype(dtype)
    extremes = (info.min, info.max, 0)
    x[: len(extremes)] = np.array(extremes[:n], dtype=dtype)[:, None]
    return x


@pytest.fixture(scope="module")
def elves(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, type], Path]:
    """ELFs for the QEMU boards and both input types, built once for the module."""
    out: dict[tuple[str, type], Path] = {}
    for dtype in (np.int8, np.int16):
        src = write_model(tmp_path_factory.mktemp(f"model_{np.dtype(dtype).name}"), dtype)
        for board in QEMU_BOARDS:
            out[board, dtype] = toolchain.build(src, board, src / f"{board}.elf")
    return out


@pytest.mark.parametrize("board", QEMU_BOARDS)
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_qemu_matches_numpy_and_unicorn(elves, board: str, dtype: type) -> None:
    x = sample_inputs(dtype)
    got = qemu.run(elves[board, dtype], board, x, OUT_SIZE, timeout=30)
    assert got.dtype == np.int32 and got.shape == (len(x), OUT_SIZE)
    np.testing.assert_array_equal(got, reference(x))

    emulator = icount.Emulator(elves[board, dtype], board)
    first = emulator.run(x)
    second = icount.count_instructions(elves[board, dtype], board, x, OUT_SIZE)
    np.testing.assert_array_equal(first.outputs, got)
    np.testing.assert_array_equal(second.outputs, got)
    np.testing.assert_array_equal(first.instructions, second.instructions)  # deterministic
    assert (first.instructions > 8 * IN_SIZE * (OUT_SIZE - 1)).all()
    # The popcount loop runs once per set bit of out[:, 0]: counts must follow the data.
    assert len(set(first.instructions.tolist())) > 1
    # Block counting equals the slow per-instruction hook exactly.
    slow = emulator.run(x[:3], count_mode="code")
    np.testing.assert_array_equal(slow.instructions, first.instructions[:3])
    # Any byte order is accepted; the target's little-endian is what reaches the firmware.
    swapped = emulator.run(x.astype(x.dtype.newbyteorder(">")))
    np.testing.assert_array_equal(swapped.outputs, got)


def test_zero_samples(elves) -> None:
    x = np.zeros((0, IN_SIZE), dtype=np.int8)
    assert qemu.run(elves["qemu-mps2-an386", np.int8], "qemu-mps2-an386", x, OUT_SIZE).shape == (
        0,
        OUT_SIZE,
    )


def test_build_is_deterministic_and_makefile_matches(tmp_path: Path) -> None:
    src = write_model(tmp_path / "model", np.int8)
    board = "qemu-mps2-an386"
    first = toolchain.build(src, board, tmp_path / "a" / "first.elf")
    second = toolchain.build(src, board, tmp_path / "b" / "second.elf", jobs=1)
    assert filecmp.cmp(first, second, shallow=False)

    sizes = toolchain.size(first)
    assert sizes["text"] > 0 and sizes["data"] >= 4 * OUT_SIZE  # edge_test_bias
    assert sizes["bss"] >= 4 * OUT_SIZE and sizes["stack"] == 64 * 1024

    makefile = write_makefile(src, board, toolchain.model_sources(src))
    assert "-mcpu=cortex-m4" in makefile.read_text()
    proc = subprocess.run(["make", "-C", str(src)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert filecmp.cmp(first, src / "model.elf", shallow=False)

    x = sample_inputs(np.int8, n=4)  # `make run`: the QEMU path a user takes without Python
    x.tofile(src / "edge_in.bin")
    proc = subprocess.run(["make", "-C", str(src), "run"], capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = np.fromfile(src / "edge_out.bin", dtype="<i4").reshape(len(x), OUT_SIZE)
    np.testing.assert_array_equal(outputs, reference(x))


@pytest.mark.parametrize("board_name", ["nucleo-f446re", "nucleo-f746zg"])
def test_nucleo_firmware_links(tmp_path: Path, board_name: str) -> None:
    src = write_model(tmp_path / "model", np.int16)
    # Compiled-in samples replace the weak defaults of firmware/common/inputs_default.c.
    (src / "edge_inputs.c").write_text(
        '#include "model.h"\n'
        "const EDGE_IN_T edge_test_inputs[2 * EDGE_IN_SIZE] = {1, 2, 3};\n"
        "const uint32_t edge_test_samples = 2u;\n"
    )
    board = get_board(board_name)
    elf = toolchain.build(src, board, tmp_path / "nucleo.elf")
    fpu = {"cortex-m4": "VFPv4-D16", "cortex-m7": "FPv5/FP-D16"}[board.cpu]
    attributes = subprocess.run(["arm-none-eabi-readelf", "-A", str(elf)], capture_output=True,
                                text=True, check=True).stdout
    assert f"Tag_FP_arch: {fpu}" in attributes  # the board's own CPU flags were used
    image = toolchain.read_elf(elf)
    assert board.flash_origin <= image.entry < board.flash_origin + board.flash_bytes
    assert image.symbols["_estack"] == board.ram_origin + board.ram_bytes
    sizes = toolchain.size(elf)
    assert sizes["text"] + sizes["data"] <= board.flash_bytes
    # The model is plain computation: unicorn runs it from the Nucleo ELF as well.
    x = sample_inputs(np.int16, n=3)
    np.testing.assert_array_equal(icount.count_instructions(elf, board, x).outputs, reference(x))
    with pytest.raises(EdgeError, match="cannot run under QEMU"):
        qemu.run(elf, board, x, OUT_SIZE)

    # An arena larger than the board's RAM fails at link time, saying so.
    model_c = (src / "model.c").read_text()
    big = f"static int32_t arena[EDGE_OUT_SIZE + {board.ram_bytes // 4}];"
    (src / "model.c").write_text(model_c.replace("static int32_t arena[EDGE_OUT_SIZE];", big))
    with pytest.raises(EdgeError) as exc:
        toolchain.build(src, board, tmp_path / "too_big.elf")
    assert "overflowed" in one_line_error(exc)


def test_makefile_for_nucleo_has_flash_rule(tmp_path: Path) -> None:
    src = write_model(tmp_path / "model", np.int8)
    text = write_makefile(src, "nucleo-f446re", ["model.c"]).read_text()
    assert "pyocd flash -t stm32f446retx" in text
    assert (src / "firmware" / "nucleo-f446re" / "stm32f446re.ld").is_file()


def one_line_error(excinfo: pytest.ExceptionInfo[EdgeError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


def test_errors_are_one_line(tmp_path: Path, elves, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EdgeError) as exc:
        get_board("stm32-nope")
    message = one_line_error(exc)
    assert all(name in message for name in BOARDS)

    with pytest.raises(EdgeError) as exc:
        toolchain.build(tmp_path / "missing", "qemu-mps2-an386", tmp_path / "x.elf")
    assert "not found" in one_line_error(exc)

    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgeError) as exc:
        toolchain.build(tmp_path / "empty", "qemu-mps2-an386", tmp_path / "x.elf")
    assert "model.h" in one_line_error(exc)

    broken = write_model(tmp_path / "broken", np.int8)
    (broken / "model.c").write_text('#include "model.h"\nint edge_model_run(void) { return; }\n')
    with pytest.raises(EdgeError) as exc:
        toolchain.build(broken, "qemu-mps2-an386", tmp_path / "x.elf")
    assert "compile failed" in one_line_error(exc)

    x = sample_inputs(np.int8, n=2)
    with pytest.raises(EdgeError) as exc:
        qemu.run(tmp_path / "missing.elf", "qemu-mps2-an386", x, OUT_SIZE)
    assert "missing.elf" in one_line_error(exc)

    with pytest.raises(EdgeError) as exc:
        icount.count_instructions(tmp_path / "missing.elf", "qemu-mps2-an386", x)
    one_line_error(exc)

    elf = elves["qemu-mps2-an386", np.int8]
    with pytest.raises(EdgeError) as exc:  # int16 samples for an int8 model
        qemu.run(elf, "qemu-mps2-an386", x.astype(np.int16), OUT_SIZE)
    assert "expects int8" in one_line_error(exc)
    with pytest.raises(EdgeError) as exc:
        icount.count_instructions(elf, "qemu-mps2-an386", x[:, :-1])
    one_line_error(exc)
    with pytest.raises(EdgeError) as exc:  # an M4 (FPU) image on the wrong memory map
        icount.Emulator(elf, "nucleo-f446re")
    assert "outside board" in one_line_error(exc)

    monkeypatch.setenv("PATH", str(tmp_path))  # no toolchain at all
    with pytest.raises(EdgeError) as exc:
        toolchain.build(tmp_path / "broken", "qemu-mps2-an386", tmp_path / "x.elf")
    assert "arm-none-eabi-gcc not found" in one_line_error(exc)
    with pytest.raises(EdgeError) as exc:
        qemu.run(elf, "qemu-mps2-an386", x, OUT_SIZE)
    assert "qemu-system-arm not found" in one_line_error(exc)


@pytest.mark.parametrize(
    ("mode", "qemu_error", "unicorn_error"),
    [
        (1, "exit status 7 (edge_model_run returned an error)", "returned 3"),
        (2, "exit status 8 (CPU fault", "stopped at pc="),
        (3, "timed out", "did not return"),
    ],
)
def test_model_failures(tmp_path: Path, mode: int, qemu_error: str, unicorn_error: str) -> None:
    src = write_model(tmp_path / "model", np.int8, mode=mode)
    elf = toolchain.build(src, "qemu-mps2-an386", tmp_path / "model.elf")
    x = sample_inputs(np.int8, n=2)  # row 0 is all -128: mode 1 rejects it
    with pytest.raises(EdgeError) as exc:
        qemu.run(elf, "qemu-mps2-an386", x, OUT_SIZE, timeout=1.5)
    assert qemu_error in one_line_error(exc)
    with pytest.raises(EdgeError) as exc:
        icount.count_instructions(elf, "qemu-mps2-an386", x, timeout=0.5)
    assert unicorn_error in one_line_error(exc)
