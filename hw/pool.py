"""Max-pool on value codes: OR on ±1 bits, max on ternary codes, signed max on integers.

Every value code is mapped to an unsigned code whose order is the value order (bipolar and
ternary codes already are; integers get their sign bit flipped), and channels that pool with
min (`select_min`, from a decreasing transform commuted past the pool) are complemented, so
one unsigned max per lane serves all cases. Padded taps never win: they are skipped, and the
running max starts at code 0, the smallest value.

The frame is scanned per output pixel, per memory word, over the window's taps; one output
beat = one word (`frame.lanes` channels), so cycles per frame = output pixels * words * taps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .framebuf import FrameBuffer
from .outq import OutputQueue
from .scan import WindowScan
from .specs import PoolSpec


def order_xor(spec: PoolSpec) -> list[int]:
    """Per memory word: the XOR that turns stored codes into order codes (and back)."""
    f = spec.frame
    vb = f.values.bits
    base = 1 << (vb - 1) if f.values.signed else 0
    sel = np.zeros(f.words * f.lanes, dtype=bool)
    if spec.select_min is not None:
        sel[:f.channels] = np.asarray(spec.select_min, dtype=bool)
    words = []
    for w in range(f.words):
        value = 0
        for lane in range(f.lanes):
            code = base ^ (((1 << vb) - 1) if sel[w * f.lanes + lane] else 0)
            value |= code << (lane * vb)
        words.append(value)
    return words


@dataclass(frozen=True)
class WindowFront:
    """What `window_front` wires up, for the datapath behind it: the frame buffer (`rd_data`
    holds the tap issued one cycle earlier), the window scan (its outputs are for the tap being
    issued now), the output queue (the datapath drives `w_data`/`w_en`), and the issue-cycle
    flags registered one cycle (aligned with `frame.rd_data`): `v1` a tap was issued,
    `first1`/`last1` it was the window's first/last, `tv1` it lies inside the map."""

    frame: FrameBuffer
    scan: WindowScan
    queue: OutputQueue
    v1: Signal
    first1: Signal
    last1: Signal
    tv1: Signal


def front_queue_depth(spec: PoolSpec, latency: int) -> int:
    """Output-queue depth for `window_front` when the datapath takes `latency` cycles from a
    window's last issue to its queue write: room for the results still in flight (a window
    completes at most every `taps` cycles) plus slack for the registered credit test
    (hw/outq.py), so back-to-back windows need not wait for credits; both pooling engines size
    their queue by this one rule."""
    return max(3, math.ceil((latency + 3) / spec.window.taps) + 2)


def window_front(m: Module, spec: PoolSpec, i: stream.Interface, o: stream.Interface,
                 out_width: int, queue_depth: int) -> WindowFront:
    """The front end every window-pooling engine shares (max-pool here, average pool in
    hw/avg_pool.py): the frame buffer fed from stream `i`, the window scan over it, and an
    output queue of `out_width`-bit words drained into stream `o`; a tap is issued when a frame
    is in and, on a window's last tap, the queue has a free slot for its result (a credit taken
    then), so the datapath never stalls. One place, so both engines keep the same handshake."""
    f = spec.frame
    m.submodules.frame = frame = FrameBuffer(f)
    m.submodules.scan = scan = WindowScan(f.height, f.width, f.words, spec.window,
                                          f.words, inner_words=False)
    m.submodules.queue = queue = OutputQueue(out_width, queue_depth)
    wiring.connect(m, wiring.flipped(i), frame.i)
    wiring.connect(m, queue.o, wiring.flipped(o))

    issue = Signal()
    m.d.comb += [
        issue.eq(frame.frame_valid & (~scan.last | queue.has_credit)),
        scan.advance.eq(issue),
        frame.rd_addr.eq(scan.addr),
        frame.release.eq(issue & scan.frame_last),
        queue.take_credit.eq(issue & scan.last),
    ]
    v1, first1, last1, tv1 = Signal(), Signal(), Signal(), Signal()
    m.d.sync += [v1.eq(issue), first1.eq(scan.first), last1.eq(scan.last),
                 tv1.eq(scan.tap_valid)]
    return WindowFront(frame, scan, queue, v1, first1, last1, tv1)


class MaxPoolEngine(wiring.Component):
    """Streams: `i` (producer beats into the frame buffer), `o` (one word of channels per beat)."""

    latency = 3  # issue -> queue write

    def __init__(self, spec: PoolSpec):
        self.spec = spec
        f = spec.frame
        self.queue_depth = front_queue_depth(spec, self.latency)
        super().__init__({
            "i": In(stream.Signature(f.producer_lanes * f.values.bits)),
            "o": Out(stream.Signature(f.lanes * f.values.bits)),
        })

    def elaborate(self, platform):
        m = Module()
        spec, f = self.spec, self.spec.frame
        vb, lanes = f.values.bits, f.lanes
        front = window_front(m, spec, self.i, self.o, lanes * vb, self.queue_depth)
        frame, queue = front.frame, front.queue
        v1, first1, last1, tv1 = front.v1, front.first1, front.last1, front.tv1
        word1 = Signal.like(front.scan.word)
        m.d.sync += word1.eq(front.scan.word)

        xors = order_xor(spec)
        if len(set(xors)) == 1:
            xor1 = xor2 = Const(xors[0], lanes * vb)
        else:
            table = Array(Const(x, lanes * vb) for x in xors)
            xor1 = table[word1]
        codes = frame.rd_data ^ xor1
        acc = [Signal(vb, name=f"max{k}") for k in range(lanes)]
        with m.If(v1):
            for k in range(lanes):
                cand = Mux(tv1, codes[k * vb:(k + 1) * vb], 0)
                m.d.sync += acc[k].eq(Mux(first1 | (cand > acc[k]), cand, acc[k]))
        done = Signal()
        word2 = Signal.like(word1)
        m.d.sync += [done.eq(v1 & last1), word2.eq(word1)]
        if len(set(xors)) != 1:
            xor2 = table[word2]
        out = Signal(lanes * vb)
        out_valid = Signal()
        m.d.sync += [out.eq(Cat(*acc) ^ xor2), out_valid.eq(done)]
        m.d.comb += [queue.w_data.eq(out), queue.w_en.eq(out_valid)]
        return m
