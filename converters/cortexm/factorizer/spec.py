"""The sizes, levels and word types one generated factorizer decoder is built for.

Why a record: every kernel, the driver, the host runner and the QEMU runner must agree on the
same integer levels (T_int, P_int), LFSR start, iteration bound and C word types; deriving them
once from `edge_sdk.factorizer.fixed` (the specification) keeps them from drifting apart.
Word types are chosen from the worst-case bounds of the spec (`fixed.widths`): 32-bit words
wherever the bound fits, 64-bit only for the bundling divide when c * X can reach 2^32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_sdk.errors import EdgeError
from edge_sdk.factorizer import fixed, lfsr
from edge_sdk.factorizer.codebooks import Codebooks
from edge_sdk.factorizer.exhaustive import DEFAULT_LIMIT
from edge_sdk.factorizer.inputs import as_codebooks, choice

METHODS = ("published", "default")
QUERY_BITS = 16  # the C API takes uint16_t query entries (a network's non-negative outputs)


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder: codebook index table [F, M, B] (values < L) and the spec's settings."""

    method: str
    indices: np.ndarray  # int64 [F, M, B]
    L: int
    kind: str  # "linf" | "dot" (published only)
    A: int
    T: float
    max_iters: int
    seed: int
    qbits: int
    xbits: int

    @property
    def F(self) -> int:
        return int(self.indices.shape[0])

    @property
    def M(self) -> int:
        return int(self.indices.shape[1])

    @property
    def B(self) -> int:
        return int(self.indices.shape[2])

    @property
    def BL(self) -> int:
        return self.B * self.L

    @property
    def levels(self) -> tuple[int, int]:
        """(T_int, P_int) of spec step 5."""
        return fixed.levels(self.kind, self.B, self.qbits, self.T)

    @property
    def lfsr_start(self) -> int:
        return lfsr.start(self.seed)

    @property
    def index_dtype(self) -> str:
        """Flash index tables: one byte per hot position while L <= 256."""
        return "uint8" if self.L <= 256 else "uint16"

    @property
    def perm_dtype(self) -> str:
        return "uint8" if self.M <= 256 else "uint16"

    @property
    def act_max(self) -> int:
        """Largest activation value: a similarity (step 4's bound) or a drawn 1."""
        return max(1, (1 << self.qbits) * (self.B if self.kind == "dot" else 1))

    @property
    def bundle_dtype(self) -> str:
        """Word of step 6's divide c * X // S: 64 bits only when c * X can reach 2^32."""
        return "uint32" if self.M * self.act_max << self.xbits < 1 << 32 else "uint64"

    @property
    def init_dtype(self) -> str:
        """Flash estimates (<= X): 16 bits while X fits."""
        return "uint16" if self.xbits < 16 else "int32"

    @property
    def init_estimates(self) -> np.ndarray:
        """Step 2's estimates [F, B, L] (kept in flash: bundling falls back on them)."""
        return fixed.initial_estimates(Codebooks.from_indices(self.indices, self.L), self.xbits)


def _check_words(F: int, M: int, B: int, L: int, qbits: int, xbits: int) -> None:
    """Refuse sizes whose 32-bit words (query normalise, correlation, scores) could overflow."""
    w = fixed.widths(F, M, B, L, qbits, xbits)
    need = {
        "query normalisation": QUERY_BITS + qbits,  # q * Q in uint32
        "block sum": QUERY_BITS + int(L).bit_length(),
        "correlation": w.correlation + 1,  # int32
        "similarity": w.similarity + 1,
        "bundle counters": w.bundle,  # uint32 (only c * X may take 64 bits)
    }
    for what, bits in need.items():
        if bits > 32:
            raise EdgeError(
                f"cortex-m factorizer: {what} needs {bits}-bit words at F={F}, M={M}, B={B}, "
                f"L={L}, qbits={qbits}, xbits={xbits}; lower qbits/xbits"
            )


def decoder_spec(codebooks: Codebooks | Any, method: str = "published", *,
                 similarity: str = "linf", A: int | None = None, T: float | None = None,
                 max_iters: int | None = None, seed: int = 0, qbits: int = fixed.QBITS,
                 xbits: int = fixed.XBITS) -> DecoderSpec:
    """Validate the options exactly as `fixed.decode` does and fix every derived number.

    `codebooks`: `Codebooks` or dense one-hot [F, M, B, L] blocks (an index table alone
    does not say L: wrap it with `Codebooks.from_indices(table, L)`).
    """
    method = choice("method", method, METHODS)
    cb = codebooks if isinstance(codebooks, Codebooks) else as_codebooks(codebooks, (1, 0))
    if not cb.is_onehot:
        raise EdgeError("the cortex-m factorizer takes one-hot codebooks (index tables)")
    F, M, B, L = cb.shape
    st = fixed.settings(cb, similarity=similarity, A=A, T=T, max_iters=max_iters, seed=seed,
                        qbits=qbits, xbits=xbits)
    _check_words(F, M, B, L, st.qbits, st.xbits)
    kind, A, T, iters = st.kind, st.A, st.T, st.max_iters
    if method == "default":
        if M**F > DEFAULT_LIMIT:  # as fixed.decode_default; flat indices stay below 2^31
            raise EdgeError(f"cortex-m factorizer: exhaustive search over M^F = {M}^{F} "
                            f"products exceeds {DEFAULT_LIMIT:.3g}; use the published decoder")
        kind, A, T, iters = "dot", 0, 0.0, 1
    return DecoderSpec(method, np.asarray(cb.indices, dtype=np.int64), L, kind, A, T, iters,
                       st.seed, st.qbits, st.xbits)
