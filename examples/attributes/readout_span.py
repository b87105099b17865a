"""Which class-score patterns can a factorizer query head express at all?

Why this exists: issue #10 asks the query head to come within 3 points of the fully connected
head at a fraction of its bytes, and every training lever measured (examples/README.md) lifts
the FC head and leaves the query head near 50 %. This script measures the structural reason.

With the log-likelihood reading of a query (the limit the `--query-scale` knob approaches), the
score of class c is sum_b z[b, pos_b(c)], where z are the query head's D = B*L logits and
pos_b(c) the hot position of c's product vector in block b. That is z multiplied by the fixed
incidence matrix E [C, D] (E[c, b*L + pos_b(c)] = 1): whatever the network computes, its class
scores lie in the column span of E. An FC head can emit any class-score vector. For each block
geometry the script prints the rank of E and the share of a class-score pattern's variance
outside that span, for patterns that are additive over the attributes (a shape term + a fill
term + a position term: what one linear layer over attribute features gives the FC head) and
for arbitrary patterns. A share of 0.5 means half of the pattern cannot be expressed.

    python examples/attributes/readout_span.py
"""

from __future__ import annotations

import numpy as np
from data import F, M, all_classes
from train import CODEBOOK_SEED

from edge_sdk.factorizer import product_indices, random_sbc

GEOMETRIES = ((8, 16), (4, 32), (4, 64), (2, 128), (4, 128), (8, 64))
PATTERNS = 200


def incidence(B: int, L: int) -> np.ndarray:
    """E [C, D]: class c's hot positions under the example's fixed random codebooks."""
    cb = random_sbc(F, M, B, L, seed=CODEBOOK_SEED)
    classes = all_classes()
    pos = product_indices(cb.indices, classes, L)
    E = np.zeros((len(classes), B * L))
    for b in range(B):
        E[np.arange(len(classes)), b * L + pos[:, b]] = 1.0
    return E


def outside_share(basis: np.ndarray, patterns: np.ndarray) -> float:
    """Mean share of each centred pattern's squared norm outside span(basis)."""
    t = patterns - patterns.mean(axis=1, keepdims=True)
    rest = t - (t @ basis) @ basis.T
    return float(np.mean((rest**2).sum(axis=1) / (t**2).sum(axis=1)))


def main() -> None:
    rng = np.random.default_rng(0)
    classes = all_classes()
    additive = sum(rng.normal(size=(PATTERNS, M))[:, classes[:, f]] for f in range(F))
    arbitrary = rng.normal(size=(PATTERNS, len(classes)))
    print("| B | L | D | rank of E | additive patterns outside the span "
          "| arbitrary patterns outside |")
    print("|---|---|---|---|---|---|")
    for B, L in GEOMETRIES:
        E = incidence(B, L)
        u, s, _ = np.linalg.svd(E, full_matrices=False)
        basis = u[:, s > 1e-9 * s[0]]
        print(f"| {B} | {L} | {B * L} | {basis.shape[1]} | {outside_share(basis, additive):.3f} "
              f"| {outside_share(basis, arbitrary):.3f} |")


if __name__ == "__main__":
    main()
