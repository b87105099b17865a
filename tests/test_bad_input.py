"""Bad input: one line on stderr naming the file/node and the reason, exit 2, no output left."""

import numpy as np
import onnx
import pytest
import zoo
from conftest import run_cli
from zoo.bad import BAD_MODELS


def assert_clean_failure(proc, words: str, tmp_path, leftovers=()):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert words in lines[0].lower(), lines[0]
    for p in leftovers:
        assert not p.exists(), f"partial output {p} was left behind"
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not hidden, f"temporary files left: {hidden}"


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
@pytest.mark.parametrize("cmd", ["inspect", "run", "convert"])
def test_bad_models(tmp_path, name, cmd):
    make, words = BAD_MODELS[name]
    path = make(tmp_path)
    out_dir, out_npy = tmp_path / "out", tmp_path / "y.npy"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 64), np.float32))
    args = {
        "inspect": ["inspect", path],
        "run": ["run", path, "--input", x, "--output", out_npy],
        "convert": ["convert", path, "--target", "ir", "-o", out_dir],
    }[cmd]
    proc = run_cli(*args)
    assert_clean_failure(proc, words, tmp_path, [out_dir, out_npy])
    assert path.name in proc.stderr or name.startswith("external") or "node" in proc.stderr


def test_error_names_the_node(tmp_path):
    proc = run_cli("inspect", BAD_MODELS["softmax_in_chain"][0](tmp_path))
    assert "node '" in proc.stderr and "Softmax" in proc.stderr


@pytest.fixture
def model_path(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(zoo.mlp(0), p)
    return p


@pytest.mark.parametrize(
    "make_input,words",
    [
        (lambda: np.zeros((3, 63), np.float32), "shape"),
        (lambda: np.zeros((64,), np.float32), "shape"),
        (lambda: np.full((2, 64), 0.5, np.float32), "not an integer"),
        (lambda: np.full((2, 64), np.nan, np.float32), "nan"),
        (lambda: np.full((2, 64), 300, np.float32), "outside"),
        (lambda: np.array([["a"] * 64] * 2), "numeric"),
        (lambda: np.zeros((2, 64), np.complex64), "complex"),
    ],
    ids=["width", "no-batch", "fraction", "nan", "range", "strings", "complex"],
)
def test_bad_input_arrays(tmp_path, model_path, make_input, words):
    x = tmp_path / "x.npy"
    np.save(x, make_input())
    out = tmp_path / "y.npy"
    proc = run_cli("run", model_path, "--input", x, "--output", out)
    assert_clean_failure(proc, words, tmp_path, [out])
    assert "input" in proc.stderr


def test_missing_and_unreadable_input_files(tmp_path, model_path):
    out = tmp_path / "y.npy"
    proc = run_cli("run", model_path, "--input", tmp_path / "nope.npy", "--output", out)
    assert_clean_failure(proc, "no such", tmp_path, [out])
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    proc = run_cli("run", model_path, "--input", bad, "--output", out)
    assert_clean_failure(proc, "npy", tmp_path, [out])
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    proc = run_cli("run", model_path, "--input", pickled, "--output", out)
    assert_clean_failure(proc, "npy", tmp_path, [out])


def test_missing_model_file(tmp_path):
    proc = run_cli("inspect", tmp_path / "absent.onnx")
    assert_clean_failure(proc, "no such file", tmp_path)


def test_output_folder_not_replaced_on_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    bad = BAD_MODELS["float_weights"][0](tmp_path)
    proc = run_cli("convert", bad, "--target", "ir", "-o", out)
    assert proc.returncode == 2
    assert (out / "keep.txt").read_text() == "user data"


def test_unknown_board_is_a_clean_error(tmp_path, model_path):
    proc = run_cli("convert", model_path, "--target", "cortex-m", "--board", "pdp-11",
                   "-o", tmp_path / "o")
    assert_clean_failure(proc, "pdp-11", tmp_path, [tmp_path / "o"])


def test_simulate_needs_a_build_folder(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 64), np.float32))
    proc = run_cli("simulate", tmp_path, "--input", x, "--output", tmp_path / "y.npy")
    assert_clean_failure(proc, "not a build folder", tmp_path, [tmp_path / "y.npy"])
