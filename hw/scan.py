"""Window scan: the address generator that walks a frame the way a folded engine reads it.

Loops, outermost first: output row, output column, group, kernel row i, kernel column j, word c.
An engine uses groups = neuron folds and scans every word of each tap (`inner_words`), so one
group's accumulation covers taps x words; a max-pool uses groups = words and reads one word per
tap. Coordinates are kept incrementally (adds of constants, no multipliers) so the scan is a few
small adders whatever the geometry; `tap_valid` is False on padded taps (which then contribute
nothing: ONNX pads a ±1 map with 0, and max-pool padding never wins).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .specs import WindowSpec


class WindowScan(wiring.Component):
    """Current read position and its flags; `advance` steps to the next one."""

    def __init__(self, height: int, width: int, words: int, window: WindowSpec, groups: int,
                 inner_words: bool):
        self.h, self.w, self.words = height, width, words
        self.window, self.groups, self.inner_words = window, groups, inner_words
        self.addr_width = ceil_log2(height * width * words)
        super().__init__({
            "advance": In(1),
            "addr": Out(self.addr_width),
            "tap_valid": Out(1),
            "first": Out(1),
            "last": Out(1),
            "group": Out(range(max(groups, 1))),
            "word": Out(range(max(words, 1))),
            "group_last": Out(1),
            "frame_last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        win = self.window
        kh, kw = win.kernel
        sy, sx = win.strides
        dy, dx = win.dilations
        pt, pl, pb, pr = win.pads
        oh, ow = win.out_hw
        cf = self.words
        row = self.w * cf  # words per frame row
        span = (self.h + pt + pb + kh * dy + sy + 2) * (self.w + pl + pr + kw * dx + sx + 2) * cf
        pos = signed(max(2, span.bit_length() + 1))
        coord = signed(max(2, (max(self.h, self.w) + max(win.pads) + max(kh * dy, kw * dx)
                               + max(sy, sx) + 2).bit_length() + 1))

        c = Signal(range(max(cf, 1)))
        j = Signal(range(max(kw, 1)))
        i = Signal(range(max(kh, 1)))
        g = Signal(range(max(self.groups, 1)))
        ox = Signal(range(max(ow, 1)))
        oy = Signal(range(max(oh, 1)))
        origin = -(pt * row + pl * cf)
        pw = Signal(pos, init=origin)  # word address of the current tap (pixel * cf)
        prow = Signal(pos, init=origin)  # ... of tap (i, 0) of the current window
        pwin = Signal(pos, init=origin)  # ... of tap (0, 0) of the current window
        pline = Signal(pos, init=origin)  # ... of tap (0, 0) of window (oy, 0)
        y = Signal(coord, init=-pt)
        x = Signal(coord, init=-pl)
        yb = Signal(coord, init=-pt)
        xb = Signal(coord, init=-pl)

        inner = self.inner_words and cf > 1
        c_last = (c == cf - 1) if inner else 1
        word = c if self.inner_words else g
        # first/last of a group come from a registered item counter, not from the loop
        # counters' compares: `last` gates every issue, so it must be a flip-flop output
        items = kh * kw * (cf if inner else 1)
        k = Signal(range(max(items, 1)))
        first = Signal(init=1)
        last = Signal(init=int(items == 1))
        if items > 1:
            with m.If(self.advance):
                m.d.sync += [first.eq(last), k.eq(Mux(last, 0, k + 1)),
                             last.eq(~last & (k == items - 2))]
        # "on the last value" flags of the outer counters, kept as registers for the same reason
        gl = Signal(init=int(self.groups == 1))
        xl = Signal(init=int(ow == 1))
        yl = Signal(init=int(oh == 1))
        m.d.comb += [
            self.addr.eq((pw + word)[:self.addr_width]),
            self.first.eq(first),
            self.last.eq(last),
            self.group.eq(g),
            self.word.eq(word),
            self.group_last.eq(gl),
            self.frame_last.eq(last & gl & xl & yl),
        ]
        if win.padded:
            m.d.comb += self.tap_valid.eq((y >= 0) & (y < self.h) & (x >= 0) & (x < self.w))
        else:
            m.d.comb += self.tap_valid.eq(1)

        def step_tap():
            with m.If(j != kw - 1):
                m.d.sync += [j.eq(j + 1), x.eq(x + dx), pw.eq(pw + dx * cf)]
            with m.Else():
                m.d.sync += [j.eq(0), x.eq(xb)]
                with m.If(i != kh - 1):
                    m.d.sync += [i.eq(i + 1), y.eq(y + dy), prow.eq(prow + dy * row),
                                 pw.eq(prow + dy * row)]
                with m.Else():
                    m.d.sync += [i.eq(0), y.eq(yb), prow.eq(pwin), pw.eq(pwin)]
                    step_group()

        def step_group():
            with m.If(~gl):
                m.d.sync += [g.eq(g + 1), gl.eq(g == self.groups - 2)]
            with m.Else():
                m.d.sync += [g.eq(0), gl.eq(self.groups == 1)]
                with m.If(~xl):
                    m.d.sync += [ox.eq(ox + 1), xl.eq(ox == ow - 2), xb.eq(xb + sx), x.eq(xb + sx),
                                 pwin.eq(pwin + sx * cf), prow.eq(pwin + sx * cf),
                                 pw.eq(pwin + sx * cf)]
                with m.Else():
                    m.d.sync += [ox.eq(0), xl.eq(ow == 1), xb.eq(-pl), x.eq(-pl)]
                    with m.If(~yl):
                        nxt = pline + sy * row
                        m.d.sync += [oy.eq(oy + 1), yl.eq(oy == oh - 2), yb.eq(yb + sy),
                                     y.eq(yb + sy),
                                     pline.eq(nxt), pwin.eq(nxt), prow.eq(nxt), pw.eq(nxt)]
                    with m.Else():
                        m.d.sync += [oy.eq(0), yl.eq(oh == 1), yb.eq(-pt), y.eq(-pt),
                                     pline.eq(origin),
                                     pwin.eq(origin), prow.eq(origin), pw.eq(origin)]

        with m.If(self.advance):
            if inner:
                with m.If(~c_last):
                    m.d.sync += c.eq(c + 1)
                with m.Else():
                    m.d.sync += c.eq(0)
                    step_tap()
            else:
                step_tap()
        return m
