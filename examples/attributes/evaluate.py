"""Evaluate the two attribute heads with the SDK and write `results.json`.

What is measured, all on the committed test split (test_x.npy / test_y.npy):

- factorizer model: `edge-sdk run` (float "default" decoder), `edge-sdk run --fixed-point` (the
  integer decoder the targets implement) and exhaustive search over all M^F products of the same
  queries (the queries are what onnxruntime computes for the network before the node);
- FC model: `edge-sdk run --check` (golden model vs onnxruntime) and its accuracy;
- parameter bytes of each head: the query head's +-1 weights (1 bit each) plus the codebooks'
  one-hot index table (log2(L) bits per entry) vs the FC head's +-1 weights, and the float32
  BatchNorm parameters of each head's last BatchNorm (scale and offset per output) separately.

Accuracy is exact match of all three attributes (the class). The JSON holds the predicted
indices' digests too, so a test can require the very same answers, not only the same count.

Run: `python examples/attributes/evaluate.py` after train.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
QUERY_ONNX = "attributes_factorizer.onnx"
FC_ONNX = "attributes_fc.onnx"
M_VALUES = 8


def edge_sdk(*args: str | Path) -> subprocess.CompletedProcess:
    """The CLI as a user runs it (the same interpreter's entry point)."""
    cmd = [sys.executable, "-m", "edge_sdk.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()[:16]


def run_model(model: Path, x: Path, *flags: str) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "y.npz"
        proc = edge_sdk("run", model, "--input", x, "--output", out, *flags)
        if proc.returncode != 0:
            raise SystemExit(f"edge-sdk run {model.name} {' '.join(flags)} failed: "
                             f"{proc.stderr.strip()}")
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def head_bytes(path: Path) -> dict[str, int]:
    """Bytes of the head: every Gemm after the convolutional backbone, its +-1 weights at 1 bit
    each, and the BatchNorm after each (float32 scale and offset per output, counted apart:
    a target folds them into thresholds or a score scale)."""
    m = onnx.load(path)
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    bits = bn = 0
    for node in m.graph.node:
        if node.op_type != "Gemm":
            continue
        w = inits[node.input[1]]  # [out, in] (transB = 1, as torch exports nn.Linear)
        if not set(np.unique(w)) <= {-1.0, 1.0}:
            raise SystemExit(f"{path.name}: {node.name} weights are not +-1")
        bits += w.size
        bn += 2 * w.shape[0] * 4
    return {"weights": bits // 8, "batchnorm_float32": bn}


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred == truth).all(axis=1).mean()) if pred.ndim == 2 else \
        float((pred == truth).mean())


def evaluate(folder: Path = HERE) -> dict:
    """Every figure of results.json for the models and test split in `folder`."""
    from edge_sdk import load
    from edge_sdk.factorizer import decode

    query_onnx, fc_onnx = folder / QUERY_ONNX, folder / FC_ONNX
    x_path = folder / "test_x.npy"
    x, y = np.load(x_path), np.load(folder / "test_y.npy")
    classes = np.ravel_multi_index(tuple(y.T), (M_VALUES,) * y.shape[1])

    flt = run_model(query_onnx, x_path)
    fix = run_model(query_onnx, x_path, "--fixed-point")
    fm = load(query_onnx)
    queries = fm.queries(x)
    exh, _ = decode(queries.astype(np.float64), fm.head.codebooks, "exhaustive")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.npy"
        proc = edge_sdk("run", fc_onnx, "--input", x_path, "--output", out, "--check")
        check_ok = proc.returncode == 0
        scores = np.load(out)

    f, m, b, length = fm.head.shape
    table = (f * m * b * int(np.ceil(np.log2(length))) + 7) // 8
    qb, fb = head_bytes(query_onnx), head_bytes(fc_onnx)
    return {
        "test_images": len(x),
        "F": f, "M": m, "B": b, "L": length, "classes": m**f,
        "factorizer": {
            "float_default": accuracy(flt["attributes"], y),
            "fixed_point_default": accuracy(fix["attributes"], y),
            "exhaustive": accuracy(exh, y),
            "float_equals_exhaustive": bool(np.array_equal(flt["attributes"], exh)),
            "fixed_equals_float": bool(np.array_equal(fix["attributes"], flt["attributes"])),
            "per_attribute": [float((flt["attributes"][:, i] == y[:, i]).mean())
                              for i in range(f)],
            "digest_float": digest(flt["attributes"]),
            "digest_fixed": digest(fix["attributes"]),
            "mean_iterations_float": float(flt["iterations"].mean()),
            "head_weight_bytes": qb["weights"], "codebook_table_bytes": table,
            "head_bytes": qb["weights"] + table, "head_batchnorm_bytes": qb["batchnorm_float32"],
        },
        "fc": {
            "accuracy": accuracy(scores.argmax(1), classes),
            "per_attribute": [float((np.stack(np.unravel_index(scores.argmax(1), (m,) * f), 1)
                                     [:, i] == y[:, i]).mean()) for i in range(f)],
            "check_vs_onnxruntime": "pass" if check_ok else proc.stdout + proc.stderr,
            "digest": digest(scores.argmax(1)),
            "head_bytes": fb["weights"], "head_batchnorm_bytes": fb["batchnorm_float32"],
        },
    }


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    res = evaluate(folder)
    (folder / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
