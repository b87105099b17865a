"""Layer-by-layer comparison results: the first differing layer, channel and element, and a table.

A `Comparison` is one pair of executors (golden vs the source's executor, or a target vs
golden) compared tensor by tensor. Each `Row` is one IR layer output: integer and ±1 tensors
must be equal exactly; a float tensor (the source's float ops applied to an accumulator)
may differ by float32 rounding of a sum of `k` terms, so its allowance is
`atol + (k + 8) * eps32 * max|reference|` per sample (a flipped weight moves a value by at
least 2 / k of that maximum, orders of magnitude more for any k below a few thousand).
"Layer order" is the IR's: the first differing row is the earliest layer of the graph that
differs for any sample, which is where an error entered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class Site:
    """What a row compares: the output of IR layer `layer` (position `order` in the graph)."""

    order: int
    layer: str
    kind: str
    source: str = ""  # the source node(s) the layer came from
    detail: str = ""  # e.g. which ONNX tensor, and whether float ops were applied
    ops: int = 0  # float ops applied to the layer's output before comparing (0: none)

    @property
    def key(self) -> tuple[int, int, str, str]:
        return (self.order, self.ops, self.layer, self.detail)

    def describe(self) -> str:
        where = f"{self.kind}, from '{self.source}'" if self.source else self.kind
        return f"layer '{self.layer}' ({where}{'; ' + self.detail if self.detail else ''})"


@dataclass(frozen=True)
class Mismatch:
    """The first differing element (C order within the first differing sample) and a count."""

    sample: int
    index: tuple[int, ...]  # without the batch dimension
    got: float
    want: float
    count: int
    total: int

    def where(self) -> str:
        """channel and element, as a user reads them."""
        if not self.index:
            return f"sample {self.sample}"
        text = f"channel {self.index[0]}"
        if len(self.index) > 1:
            text += f", element ({', '.join(map(str, self.index[1:]))})"
        return f"{text} of sample {self.sample}"


@dataclass
class Row:
    site: Site
    shape: tuple[int, ...]
    exact: bool
    mismatch: Mismatch | None = None
    observed: bool = True  # False: the executor under test does not keep this tensor


@dataclass
class Comparison:
    """`got` (e.g. "cortex-m") compared with `want` (e.g. "golden"), row by row."""

    got: str
    want: str
    samples: int
    rows: list[Row] = field(default_factory=list)
    skipped: str = ""  # why the comparison could not run ("" if it ran)

    @property
    def name(self) -> str:
        return f"{self.got} vs {self.want}"

    @property
    def first(self) -> Row | None:
        bad = [r for r in self.rows if r.mismatch is not None]
        return min(bad, key=lambda r: r.site.key) if bad else None

    @property
    def differs(self) -> bool:
        return self.first is not None

    def line(self) -> str:
        """The one-line verdict."""
        if self.skipped:
            return f"{self.name}: not compared ({self.skipped})"
        row = self.first
        compared = sum(r.observed for r in self.rows)
        if row is None:
            return (f"{self.name}: equal on all {compared} compared layer outputs, "
                    f"{self.samples} sample(s)")
        m = row.mismatch
        assert m is not None
        return (f"{self.name}: first difference at {row.site.describe()}, {m.where()}: "
                f"{self.got} {_fmt(m.got)} vs {self.want} {_fmt(m.want)} ({m.count} of "
                f"{m.total} values differ)")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(np.float32(v)))


def _first(bad: np.ndarray, got: np.ndarray, want: np.ndarray) -> Mismatch | None:
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    return Mismatch(idx[0], idx[1:], got[idx].item(), want[idx].item(), int(bad.sum()),
                    int(bad.size))


def compare_exact(got: np.ndarray, want: np.ndarray) -> Mismatch | None:
    """Integer / ±1 tensors: every element equal (compared as exact float64 or int64)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise ValueError(f"shape {got.shape} vs {want.shape}")
    if np.issubdtype(got.dtype, np.floating) or np.issubdtype(want.dtype, np.floating):
        g, w = got.astype(np.float64), want.astype(np.float64)
    else:
        g, w = got.astype(np.int64), want.astype(np.int64)
    return _first(g != w, g, w)


def compare_float(got: np.ndarray, want: np.ndarray, k: int, atol: float = 0.0
                  ) -> Mismatch | None:
    """Float tensors: equal to float32 rounding of a k-term sum (see the module docstring)."""
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    if g.shape != w.shape:
        raise ValueError(f"shape {g.shape} vs {w.shape}")
    axes = tuple(range(1, w.ndim))
    scale = np.abs(w).max(axis=axes, keepdims=True) if axes else np.abs(w)
    allowed = atol + (k + 8) * EPS32 * scale
    bad = ~(np.abs(g - w) <= allowed)  # NaN counts as a difference
    return _first(bad, g, w)


def table(comparisons: list[Comparison]) -> str:
    """One line per compared layer output, one column per comparison."""
    runs = [c for c in comparisons if not c.skipped]
    sites: dict[tuple, tuple[Site, tuple[int, ...]]] = {}
    for c in runs:
        for r in c.rows:
            sites.setdefault(r.site.key, (r.site, r.shape))
    head = ["layer", "kind", "shape", *(c.name for c in runs)]
    cells = [head]
    for key in sorted(sites):
        site, shape = sites[key]
        name = site.layer + (f" [{site.detail}]" if site.detail else "")
        line = [name, site.kind, "x".join(map(str, shape)) or "1"]
        for c in runs:
            row = next((r for r in c.rows if r.site.key == key), None)
            if row is None or not row.observed:
                line.append("-")
            elif row.mismatch is None:
                line.append("equal" if row.exact else "equal (float32)")
            else:
                line.append(f"{row.mismatch.count} differ")
        cells.append(line)
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    out = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
