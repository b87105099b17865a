"""Synthetic attribute images: F = 3 attributes (shape, pattern, position), M = 8 values each.

Why synthetic: the factorizer head only pays off when classes are combinations of attributes
(C = M^F = 512 here), and a data set whose attributes are known by construction needs no
download and no labelling. Each image is 16x16 with integer grey levels 0..15 (so the first
layer of the network takes small integer inputs, like the digits examples):

- shape (8): square, disk, triangle up, triangle down, diamond, plus, wide bar, tall bar,
  each within a 7x7 box;
- pattern (8): how the shape is filled: solid, horizontal stripes, vertical stripes, checker,
  left-to-right ramp, top-to-bottom ramp, bright centre, dim solid;
- position (8): the 3x3 grid of centres (4, 8, 12) without the middle one.

Not trivial on purpose: the centre is jittered by up to one pixel in each direction, the
foreground brightness varies per image (11..15), the background has random dim pixels and
every pixel gets +-1 noise. The splits are balanced (every class the same number of times) and
deterministic: `make_split` is a pure function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

F = 3
M = 8
SIZE = 16
MAX_LEVEL = 15
BOX = 7
TRAIN_SEED = 1
TEST_SEED = 2
TRAIN_PER_CLASS = 16
TEST_PER_CLASS = 1
ATTRIBUTES = ("shape", "pattern", "position")
SHAPES = ("square", "disk", "triangle_up", "triangle_down", "diamond", "plus", "wide_bar",
          "tall_bar")
PATTERNS = ("solid", "h_stripes", "v_stripes", "checker", "ramp_x", "ramp_y", "centre",
            "dim")
CENTRES = tuple((r, c) for r in (4, 8, 12) for c in (4, 8, 12) if (r, c) != (8, 8))


@dataclass(frozen=True)
class Split:
    """Images x [N, 1, 16, 16] float32 (integers 0..15) and attributes y [N, F] int64."""

    x: np.ndarray
    y: np.ndarray

    @property
    def classes(self) -> np.ndarray:
        """Flat class index (shape, pattern, position) -> shape * M^2 + pattern * M + position,
        the class the fully connected head predicts."""
        return np.ravel_multi_index(tuple(self.y.T), (M,) * F)


def _masks() -> np.ndarray:
    """[M, 7, 7] boolean shape masks; mostly filled so every pattern stays visible."""
    r, c = np.mgrid[-3:4, -3:4]
    out = [
        np.ones((BOX, BOX), bool),
        r * r + c * c <= 10,
        np.abs(c) <= (r + 3) / 2,
        np.abs(c) <= (3 - r) / 2,
        np.abs(r) + np.abs(c) <= 3,
        (np.abs(r) <= 1) | (np.abs(c) <= 1),
        np.abs(r) <= 1.5,
        np.abs(c) <= 1.5,
    ]
    return np.stack(out)


def _patterns() -> np.ndarray:
    """[M, 7, 7] fill intensities in 0..1 (multiplied by the image's brightness)."""
    r, c = np.mgrid[0:BOX, 0:BOX]
    ones = np.ones((BOX, BOX))
    dist = np.maximum(np.abs(r - 3), np.abs(c - 3))
    out = [
        ones,
        np.where(r % 2 == 0, 1.0, 0.25),
        np.where(c % 2 == 0, 1.0, 0.25),
        np.where((r + c) % 2 == 0, 1.0, 0.25),
        0.3 + 0.7 * c / (BOX - 1),
        0.3 + 0.7 * r / (BOX - 1),
        1.0 - 0.22 * dist,
        0.5 * ones,
    ]
    return np.stack(out)


MASKS = _masks()
PATTERN_FILLS = _patterns()


def render(attrs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Images [N, 1, 16, 16] for attribute rows [N, F]; `rng` supplies jitter and noise."""
    attrs = np.asarray(attrs, dtype=np.int64)
    n = len(attrs)
    img = np.where(rng.random((n, SIZE, SIZE)) < 0.15,
                   rng.integers(1, 4, size=(n, SIZE, SIZE)), 0).astype(np.float64)
    bright = rng.integers(11, MAX_LEVEL + 1, size=n)
    jitter = rng.integers(-1, 2, size=(n, 2))
    half = BOX // 2
    for i, (shape, pattern, pos) in enumerate(attrs):
        r0 = CENTRES[pos][0] + jitter[i, 0] - half
        c0 = CENTRES[pos][1] + jitter[i, 1] - half
        fill = np.where(MASKS[shape], np.rint(bright[i] * PATTERN_FILLS[pattern]), -1.0)
        # paste the box, clipped at the image border
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + BOX, SIZE), min(c0 + BOX, SIZE)
        patch = fill[rs - r0:re - r0, cs - c0:ce - c0]
        region = img[i, rs:re, cs:ce]
        img[i, rs:re, cs:ce] = np.where(patch >= 0, patch, region)
    img += rng.integers(-1, 2, size=img.shape)
    return np.clip(img, 0, MAX_LEVEL).astype(np.float32)[:, None]


def all_classes() -> np.ndarray:
    """Every attribute combination [M^F, F], in flat-class order."""
    return np.stack(np.unravel_index(np.arange(M**F), (M,) * F), axis=1).astype(np.int64)


def make_split(per_class: int, seed: int) -> Split:
    """`per_class` images of every class, shuffled; a pure function of (per_class, seed)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(all_classes(), per_class, axis=0)
    y = y[rng.permutation(len(y))]
    return Split(render(y, rng), y)


def train_split() -> Split:
    return make_split(TRAIN_PER_CLASS, TRAIN_SEED)


def test_split() -> Split:
    return make_split(TEST_PER_CLASS, TEST_SEED)


def ascii_image(img: np.ndarray) -> str:
    """One image as text (grey level as a hex digit), for eyeballing the data."""
    return "\n".join("".join(f"{int(v):x}" if v else "." for v in row) for row in img[0])


if __name__ == "__main__":
    s = test_split()
    for k in range(3):
        names = [kind[int(v)] for kind, v in zip((SHAPES, PATTERNS, range(M)), s.y[k],
                                                 strict=True)]
        print(dict(zip(ATTRIBUTES, names, strict=True)))
        print(ascii_image(s.x[k]))
