"""How two outputs of the same model agree: bit-exact, float32 rounding, or not at all.

Float post-ops folded into a GEMM by the source (per-row weight scales, biases) are summed in
the source runtime's own order, so its last float bits can differ from the golden model's by a
rounding step; the integer parts (every threshold, every score before its float op) are exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RTOL = 1e-5


@dataclass(frozen=True)
class Agreement:
    exact: bool
    within_rounding: bool
    max_abs_err: float
    argmax_equal: bool
    count: int

    @property
    def ok(self) -> bool:
        return self.exact or (self.within_rounding and self.argmax_equal)

    def describe(self) -> str:
        if self.exact:
            return f"bit-exact on {self.count} samples"
        if self.ok:
            return (f"equal to float32 rounding on {self.count} samples (max abs error "
                    f"{self.max_abs_err:.3g}, rtol {RTOL:g}), same argmax")
        return (f"MISMATCH on {self.count} samples: max abs error {self.max_abs_err:.3g}, "
                f"argmax {'equal' if self.argmax_equal else 'differs'}")


def agreement(y: np.ndarray, ref: np.ndarray) -> Agreement:
    y = np.asarray(y)
    ref = np.asarray(ref)
    if y.shape != ref.shape:
        return Agreement(False, False, float("inf"), False, len(ref))
    exact = bool(np.array_equal(y, ref))
    diff = np.abs(y.astype(np.float64) - ref.astype(np.float64))
    scale = np.abs(ref).max(axis=-1, keepdims=True) if ref.ndim else np.abs(ref)
    within = bool(np.all(diff <= RTOL * np.abs(ref) + 1e-6 * scale))
    if ref.ndim == 2 and ref.shape[1] > 1:
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > RTOL * scale[:, 0]
        argmax_equal = bool(np.array_equal(y.argmax(1)[clear], ref.argmax(1)[clear]))
    else:
        argmax_equal = True
    return Agreement(exact, within, float(diff.max(initial=0.0)), argmax_equal, len(ref))
