"""Window geometry shared by the conv and max-pool kernels: fixed per layer, all ints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A sliding window over a [C][H][W] input producing [O][OH][OW] (O = C for pools).

    pt/pl are the top/left pads; bottom/right pads only show up in oh/ow.
    """

    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    dh: int
    dw: int
    oh: int
    ow: int

    @property
    def cw(self) -> int:
        """Words per pixel of a packed input (channels padded to a multiple of 32)."""
        return (self.c + 31) // 32

    @property
    def bounded(self) -> bool:
        """True when some tap falls in the padding, so kernels must test tap bounds."""
        last_h = (self.oh - 1) * self.sh - self.pt + (self.kh - 1) * self.dh
        last_w = (self.ow - 1) * self.sw - self.pl + (self.kw - 1) * self.dw
        return self.pt > 0 or self.pl > 0 or last_h >= self.h or last_w >= self.w
