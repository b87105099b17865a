"""Shared fixtures: paths of the shipped examples, a CLI runner, reference comparisons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "edge_sdk.cli", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def assert_close_to_reference(y: np.ndarray, ref: np.ndarray, exact: bool) -> None:
    """Golden vs onnxruntime: bit-exact, or float32 rounding (rtol 1e-5) with equal argmax."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert y.dtype == ref.dtype, (y.dtype, ref.dtype)
    if exact:
        bad = np.argwhere(y != ref)
        assert bad.size == 0, f"{len(bad)} differences, first at {bad[0]}: {y[tuple(bad[0])]} vs {ref[tuple(bad[0])]}"
        return
    # rtol 1e-5; entries that cancel to ~0 are compared at the row's own rounding scale
    scale = np.abs(ref).max(axis=-1, keepdims=True) + 1e-30
    excess = np.abs(y - ref) - (1e-5 * np.abs(ref) + 1e-6 * scale)
    assert excess.max() <= 0, f"max abs error {np.abs(y - ref).max():.3g} beyond rtol 1e-5"
    if y.ndim == 2 and y.shape[1] > 1:
        # equal argmax, unless the top two scores of the reference are within rounding
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-5 * scale[:, 0]
        assert np.array_equal(y.argmax(1)[clear], ref.argmax(1)[clear])
