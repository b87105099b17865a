"""The fixed-point `published` factorizer decoder as an Amaranth block (bit-exact with fixed.py).

Why this schedule: every step of `edge_sdk.factorizer.fixed` is integer arithmetic, so the block
runs the same loop sequentially over small RAMs, and the results are equal by construction:
- unbinding (step 3) is the circular correlation computed only over the nonzero estimate
  entries: a block's nonzero (j, x[j]) pairs are compacted into a list first, then each output
  u[l] = (sum u[(j + l) mod L] * x[j]) >> xbits takes one multiply-add per listed pair; a
  converged estimate is one-hot, so unbinding is then index arithmetic (modular subtraction);
- similarity (step 4) reads `lanes` codevectors' hot entries per cycle from replicated read
  ports, the linf exclusion from the per-block top two values recorded while u was written;
- activation (step 5) needs only max(sim) and its lowest index, kept while similarities are
  written, plus the LFSR draw (lfsr.py, Fisher-Yates over a permutation RAM, 32-cycle modulo);
- bundling (step 6) adds `lanes` activations per cycle into one counter bank per lane (no
  collisions between lanes), and normalisation divides only entries strictly between 0 and
  the block mass (a sequential fraction divider); the initial estimate (step 2) is the same
  bundling with every activation 1, also used when a bundle has no mass.
Streams: `i` takes B*L raw query entries (block-major), `o` gives F indices (index_bits each,
factor 0 lowest) and the iteration count above them in one beat.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import Array
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edge_sdk.factorizer import lfsr

from .factorizer_query import QueryNormaliser
from .factorizer_spec import QUERY_BITS, FactorizerSpec
from .factorizer_units import FractionDivider, Modulo, lfsr_next

QN, UA, UB = 0, 1, 2
THR, PULL, DRAW, INIT = 0, 1, 2, 3
DRAIN = 2  # cycles from issuing a read to its write-back in the pipelines below


class PublishedFactorizer(wiring.Component):
    def __init__(self, spec: FactorizerSpec):
        if spec.method != "published":
            raise ValueError("PublishedFactorizer takes a published spec")
        self.spec = spec
        super().__init__({"i": In(stream.Signature(QUERY_BITS)),
                          "o": Out(stream.Signature(spec.out_bits))})

    def elaborate(self, platform):
        m = Module()
        s = self.spec
        F, M, B, L, P = s.F, s.M, s.B, s.L, s.lanes
        BL, G = B * L, s.groups
        Q, X = 1 << s.qbits, 1 << s.xbits
        w = s.widths
        qw, xw, sw, cw = w.query, w.estimate, w.similarity, w.bundle
        pb = s.pos_bits

        # ---- memories
        m.submodules.intake = intake = QueryNormaliser(s)
        wiring.connect(m, wiring.flipped(self.i), intake.i)
        qn = Memory(shape=qw, depth=BL, init=[])
        ua = Memory(shape=qw, depth=BL, init=[])
        ub = Memory(shape=qw, depth=BL, init=[])
        xm = Memory(shape=xw, depth=F * BL, init=[])
        nz = Memory(shape=pb + xw, depth=L, init=[])
        simm = Memory(shape=P * sw, depth=G, init=[])
        rom = Memory(shape=P * B * pb, depth=F * G, init=s.rom_words())
        perm = Memory(shape=s.index_bits, depth=M, init=[])
        banks = [Memory(shape=cw, depth=BL, init=[]) for _ in range(P)]
        for name, mem in [("qn", qn), ("ua", ua), ("ub", ub), ("x", xm), ("nz", nz),
                          ("sim", simm), ("rom", rom), ("perm", perm)]:
            m.submodules[name] = mem
        for p, mem in enumerate(banks):
            m.submodules[f"count{p}"] = mem
        qn_w, qn_r = qn.write_port(), qn.read_port()
        ua_w, ub_w = ua.write_port(), ub.write_port()
        ua_r = [ua.read_port() for _ in range(P)]
        ub_r = [ub.read_port() for _ in range(P)]
        x_w, x_r = xm.write_port(), xm.read_port()
        nz_w, nz_r = nz.write_port(), nz.read_port()
        sim_w, sim_r = simm.write_port(), simm.read_port()
        rom_r = rom.read_port()
        perm_w, perm_a, perm_b = perm.write_port(), perm.read_port(), perm.read_port()
        cnt_w = [mem.write_port() for mem in banks]
        cnt_r = [mem.read_port(transparent_for=(wp,)) for mem, wp in zip(banks, cnt_w,
                                                                          strict=True)]
        m.submodules.div = div = FractionDivider(cw, s.xbits)
        m.submodules.mod = mod = Modulo(32, s.index_bits + 1)

        m.d.comb += [qn_w.addr.eq(intake.w_addr), qn_w.data.eq(intake.w_data),
                     qn_w.en.eq(intake.w_en)]

        # ---- state
        f = Signal(range(F))
        g = Signal(range(F))
        it = Signal(range(s.max_iters + 1))
        conv = Signal()
        initialising = Signal()
        cur = Signal(2)
        dst = Signal(2)
        m.d.comb += dst.eq(Mux(cur == UA, UB, UA))
        answers = Array(Signal(s.index_bits, name=f"answer{k}") for k in range(F))
        top1 = Array(Signal(qw, name=f"top1_{k}") for k in range(B))
        top2 = Array(Signal(qw, name=f"top2_{k}") for k in range(B))
        blk = Signal(range(B))
        j = Signal(range(L))
        lpos = Signal(range(L))
        k = Signal(range(L))
        ncnt = Signal(range(L + 1))
        grp = Signal(range(G))
        mode = Signal(2)
        mass = Signal(cw)
        best = Signal(sw)
        best_idx = Signal(s.index_bits)
        state = Signal(32)
        drawn = Signal(M)
        dj = Signal(range(M + 1))
        rr = Signal(s.index_bits + 1)
        held = Signal(s.index_bits)
        addr = Signal(range(BL + 1))
        drain = Signal(range(DRAIN + 1))

        # ---- compaction pipeline: x[g, blk, j] -> nonzero list
        cv1 = Signal()
        cj1 = Signal(range(L))
        m.d.comb += x_r.addr.eq(g * BL + blk * L + j)
        m.d.sync += cv1.eq(0)
        keep = (x_r.data != 0) | ((cj1 == L - 1) & (ncnt == 0))
        with m.If(cv1 & keep):
            m.d.comb += [nz_w.en.eq(1), nz_w.addr.eq(ncnt), nz_w.data.eq(Cat(cj1, x_r.data))]
            m.d.sync += ncnt.eq(ncnt + 1)

        # ---- correlation pipeline: (l, k) -> u_src read -> multiply-accumulate -> u_dst
        av1, af1, al1 = Signal(), Signal(), Signal()
        ap1 = Signal(range(L))
        av2, af2, al2 = Signal(), Signal(), Signal()
        ap2 = Signal(range(L))
        xv2 = Signal(xw)
        acc = Signal(w.correlation + 1)
        m.d.comb += nz_r.addr.eq(k)
        m.d.sync += [av1.eq(0), av2.eq(av1), af2.eq(af1), al2.eq(al1), ap2.eq(ap1),
                     xv2.eq(nz_r.data[pb:])]
        jsum = Signal(pb + 1)
        m.d.comb += jsum.eq(nz_r.data[:pb] + ap1)
        corr_addr = Signal(range(BL))
        m.d.comb += corr_addr.eq(blk * L + Mux(jsum >= L, jsum - L, jsum))
        src = Signal(qw)
        m.d.comb += src.eq(Mux(cur == QN, qn_r.data, Mux(cur == UA, ua_r[0].data, ub_r[0].data)))
        nacc = Signal(w.correlation + 1)
        m.d.comb += nacc.eq(Mux(af2, 0, acc) + src * xv2)
        y = Signal(qw)
        m.d.comb += y.eq(nacc >> s.xbits)
        with m.If(av2):
            m.d.sync += acc.eq(nacc)
            with m.If(al2):
                for port, code in ((ua_w, UA), (ub_w, UB)):
                    m.d.comb += [port.addr.eq(blk * L + ap2), port.data.eq(y),
                                 port.en.eq(dst == code)]
                with m.If(y > top1[blk]):
                    m.d.sync += [top1[blk].eq(y), top2[blk].eq(top1[blk])]
                with m.Elif(y > top2[blk]):
                    m.d.sync += top2[blk].eq(y)

        # ---- similarity pipeline: (grp, blk) -> ROM -> u hot entries -> per-lane score
        sv1, sf1, sl1 = Signal(), Signal(), Signal()
        sb1 = Signal(range(B))
        sg1 = Signal(range(G))
        sv2, sf2, sl2 = Signal(), Signal(), Signal()
        sb2 = Signal(range(B))
        sg2 = Signal(range(G))
        m.d.sync += [sv1.eq(0), sv2.eq(sv1), sf2.eq(sf1), sl2.eq(sl1), sb2.eq(sb1), sg2.eq(sg1)]
        m.d.comb += rom_r.addr.eq(f * G + grp)

        def hot_pos(p, b_sig):
            return rom_r.data.word_select(p * B + b_sig, pb) if B > 1 else \
                rom_r.data[p * pb:(p + 1) * pb]

        for p in range(P):
            a_sim = sb1 * L + hot_pos(p, sb1)
            a_any = Mux(sv1, a_sim, corr_addr) if p == 0 else a_sim
            m.d.comb += [ua_r[p].addr.eq(a_any), ub_r[p].addr.eq(a_any)]
        m.d.comb += qn_r.addr.eq(corr_addr)
        lane_acc = [Signal(sw, name=f"lane_acc{p}") for p in range(P)]
        sims = []
        chain_best, chain_idx = best, best_idx
        for p in range(P):
            hot = Signal(qw, name=f"hot{p}")
            m.d.comb += hot.eq(Mux(cur == UA, ua_r[p].data, ub_r[p].data))
            prev = Mux(sf2, 0, lane_acc[p])
            nv = Signal(sw, name=f"score{p}")
            if s.kind == "dot":
                m.d.comb += nv.eq(prev + hot)
            else:
                t1, t2 = top1[sb2], top2[sb2]
                excl = Mux(hot == t1, t2, t1)
                miss = Mux(Q - hot > excl, Q - hot, excl)
                m.d.comb += nv.eq(Mux(miss > prev, miss, prev))
            with m.If(sv2):
                m.d.sync += lane_acc[p].eq(nv)
            sim = Signal(sw, name=f"sim{p}")
            m.d.comb += sim.eq(nv if s.kind == "dot" else Q - nv)
            sims.append(sim)
            midx = sg2 * P + p
            better = (midx < M) & (sim > chain_best)
            nb, ni = Signal(sw, name=f"best{p}"), Signal(s.index_bits, name=f"best_idx{p}")
            m.d.comb += [nb.eq(Mux(better, sim, chain_best)),
                         ni.eq(Mux(better, midx, chain_idx))]
            chain_best, chain_idx = nb, ni
        with m.If(sv2 & sl2):
            m.d.comb += [sim_w.en.eq(1), sim_w.addr.eq(sg2), sim_w.data.eq(Cat(*sims))]
            m.d.sync += [best.eq(chain_best), best_idx.eq(chain_idx)]

        # ---- bundling pipeline: (grp, blk) -> ROM + sims -> counter read -> add -> write
        bv1, bf1 = Signal(), Signal()
        bb1 = Signal(range(B))
        bg1 = Signal(range(G))
        bv2 = Signal()
        m.d.sync += [bv1.eq(0), bv2.eq(bv1)]
        m.d.comb += sim_r.addr.eq(grp)
        none_above = best < s.t_int
        acts = []
        for p in range(P):
            mi = bg1 * P + p
            sim_p = sim_r.data[p * sw:(p + 1) * sw]
            if s.t_int > 0:
                thr = Mux(none_above | (sim_p >= s.t_int), sim_p, 0)
            else:
                thr = sim_p
            draw = Const(1) if s.A >= M else drawn.bit_select(mi, 1)
            act = Signal(sw, name=f"act{p}")
            with m.Switch(mode):
                with m.Case(THR):
                    m.d.comb += act.eq(thr)
                with m.Case(PULL):
                    m.d.comb += act.eq(Mux(mi == best_idx, best, 0))
                with m.Case(DRAW):
                    m.d.comb += act.eq(draw)
                with m.Case(INIT):
                    m.d.comb += act.eq(1)
            valid_act = Signal(sw, name=f"vact{p}")
            m.d.comb += valid_act.eq(Mux(mi < M, act, 0))
            acts.append(valid_act)
            a_bun = Signal(range(BL), name=f"bun_addr{p}")
            m.d.comb += a_bun.eq(bb1 * L + hot_pos(p, bb1))
            a2 = Signal(range(BL), name=f"bun_addr2_{p}")
            act2 = Signal(sw, name=f"act2_{p}")
            m.d.sync += [a2.eq(a_bun), act2.eq(valid_act)]
            with m.If(bv1):
                m.d.comb += cnt_r[p].addr.eq(a_bun)
            with m.Else():
                m.d.comb += cnt_r[p].addr.eq(addr)
            with m.If(bv2):
                m.d.comb += [cnt_w[p].en.eq(1), cnt_w[p].addr.eq(a2),
                             cnt_w[p].data.eq(cnt_r[p].data + act2)]
        with m.If(bv1 & bf1):
            m.d.sync += mass.eq(mass + sum(acts))

        # ---- normalisation: counters -> estimates of factor f (and clear the counters)
        csum = Signal(cw + P)
        m.d.comb += csum.eq(sum(r.data for r in cnt_r))
        m.d.comb += [x_w.addr.eq(f * BL + addr), perm_a.addr.eq(dj), perm_b.addr.eq(dj + mod.r)]

        def next_entry():
            with m.If(addr == BL - 1):
                m.next = "NEXT_FACTOR"
            with m.Else():
                m.d.sync += addr.eq(addr + 1)
                m.next = "N_READ"

        def begin_factor():
            m.d.sync += [g.eq(Mux(f == 0, 1, 0)), cur.eq(QN), blk.eq(0), j.eq(0), ncnt.eq(0)]

        with m.FSM():
            with m.State("BOOT"):  # one state change after reset: HDL simulators evaluate
                m.next = "LOAD"    # the state decoders only when the state changes
            with m.State("LOAD"):
                m.d.comb += intake.go.eq(1)
                with m.If(intake.done):
                    m.d.sync += [state.eq(lfsr.start(s.seed)), dj.eq(0)]
                    m.next = "PERM"
            with m.State("PERM"):
                m.d.comb += [perm_w.en.eq(1), perm_w.addr.eq(dj), perm_w.data.eq(dj)]
                m.d.sync += dj.eq(dj + 1)
                with m.If(dj == M - 1):
                    m.d.sync += [f.eq(0), initialising.eq(1), mode.eq(INIT)]
                    m.next = "BUNDLE_START"
            with m.State("FACTOR"):
                begin_factor()
                m.next = "COMPACT"
            with m.State("COMPACT"):
                m.d.sync += [cv1.eq(1), cj1.eq(j), j.eq(j + 1)]
                with m.If(j == 0):
                    m.d.sync += [top1[blk].eq(0), top2[blk].eq(0)]
                with m.If(j == L - 1):
                    m.d.sync += j.eq(0)
                    m.next = "COMPACT_END"
            with m.State("COMPACT_END"):
                m.d.sync += [k.eq(0), lpos.eq(0)]
                m.next = "ACC"
            with m.State("ACC"):
                last_k = k == ncnt - 1
                m.d.sync += [av1.eq(1), af1.eq(k == 0), al1.eq(last_k), ap1.eq(lpos)]
                with m.If(last_k):
                    m.d.sync += [k.eq(0), lpos.eq(lpos + 1)]
                    with m.If(lpos == L - 1):
                        m.d.sync += drain.eq(0)
                        m.next = "ACC_DRAIN"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            with m.State("ACC_DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN):
                    m.d.sync += [ncnt.eq(0), j.eq(0)]
                    with m.If(blk == B - 1):
                        m.d.sync += [blk.eq(0), cur.eq(dst)]
                        nxt = Mux(g + 1 == f, g + 2, g + 1)
                        with m.If(nxt >= F):
                            m.d.sync += [grp.eq(0), blk.eq(0), best.eq(0), best_idx.eq(0)]
                            m.next = "SIM"
                        with m.Else():
                            m.d.sync += g.eq(nxt)
                            m.next = "COMPACT"
                    with m.Else():
                        m.d.sync += blk.eq(blk + 1)
                        m.next = "COMPACT"
            with m.State("SIM"):
                m.d.sync += [sv1.eq(1), sf1.eq(blk == 0), sl1.eq(blk == B - 1), sb1.eq(blk),
                             sg1.eq(grp), blk.eq(blk + 1)]
                with m.If(blk == B - 1):
                    m.d.sync += [blk.eq(0), grp.eq(grp + 1)]
                    with m.If(grp == G - 1):
                        m.d.sync += [grp.eq(0), drain.eq(0)]
                        m.next = "SIM_DRAIN"
            with m.State("SIM_DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                low = best <= s.t_int
                pull = (best >= s.p_int) & ~low
                m.d.sync += answers[f].eq(best_idx)
                m.next = "BUNDLE_START"
                with m.If(low & (1 if s.A > 0 else 0)):
                    m.d.sync += [mode.eq(DRAW), conv.eq(0), dj.eq(0), drawn.eq(0)]
                    if s.A < M:
                        m.next = "DRAW"
                with m.Elif(pull):
                    m.d.sync += mode.eq(PULL)
                with m.Else():
                    m.d.sync += [mode.eq(THR), conv.eq(0)]
            with m.State("DRAW"):
                nxt_state = lfsr_next(state)
                m.d.sync += state.eq(nxt_state)
                m.d.comb += [mod.start.eq(1), mod.a.eq(nxt_state), mod.d.eq(M - dj)]
                m.next = "DRAW_MOD"
            with m.State("DRAW_MOD"), m.If(mod.done):  # perm reads of j, j + r issued now
                m.d.sync += rr.eq(mod.r)
                m.next = "DRAW_SWAP"
            with m.State("DRAW_SWAP"):
                m.d.comb += [perm_w.en.eq(1), perm_w.addr.eq(dj), perm_w.data.eq(perm_b.data)]
                m.d.sync += [held.eq(perm_a.data),
                             drawn.eq(drawn | (Const(1, M) << perm_b.data))]
                m.next = "DRAW_SWAP2"
            with m.State("DRAW_SWAP2"):
                m.d.comb += [perm_w.en.eq(1), perm_w.addr.eq(dj + rr), perm_w.data.eq(held)]
                m.d.sync += dj.eq(dj + 1)
                with m.If(dj == s.A - 1):
                    m.next = "BUNDLE_START"
                with m.Else():
                    m.next = "DRAW"
            with m.State("BUNDLE_START"):
                m.d.sync += [grp.eq(0), blk.eq(0), mass.eq(0)]
                m.next = "BUNDLE"
            with m.State("BUNDLE"):
                m.d.sync += [bv1.eq(1), bf1.eq(blk == 0), bb1.eq(blk), bg1.eq(grp),
                             blk.eq(blk + 1)]
                with m.If(blk == B - 1):
                    m.d.sync += [blk.eq(0), grp.eq(grp + 1)]
                    with m.If(grp == G - 1):
                        m.d.sync += [grp.eq(0), drain.eq(0)]
                        m.next = "BUNDLE_DRAIN"
            with m.State("BUNDLE_DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN):
                    with m.If(mass == 0):
                        m.d.sync += mode.eq(INIT)
                        m.next = "BUNDLE_START"
                    with m.Else():
                        m.d.sync += addr.eq(0)
                        m.next = "N_READ"
            with m.State("N_READ"):
                m.next = "N_DATA"
            with m.State("N_DATA"):
                for p in range(P):
                    m.d.comb += [cnt_w[p].en.eq(1), cnt_w[p].addr.eq(addr), cnt_w[p].data.eq(0)]
                with m.If((csum == 0) | (csum == mass)):
                    m.d.comb += [x_w.en.eq(1), x_w.data.eq(Mux(csum == 0, 0, X))]
                    next_entry()
                with m.Else():
                    m.d.comb += [div.start.eq(1), div.n.eq(csum), div.d.eq(mass)]
                    m.next = "N_DIV"
            with m.State("N_DIV"), m.If(div.done):
                m.d.comb += [x_w.en.eq(1), x_w.data.eq(div.q)]
                next_entry()
            with m.State("NEXT_FACTOR"):
                with m.If(initialising):
                    with m.If(f == F - 1):
                        m.d.sync += [initialising.eq(0), f.eq(0), it.eq(1), conv.eq(1)]
                        m.next = "FACTOR"
                    with m.Else():
                        m.d.sync += [f.eq(f + 1), mode.eq(INIT)]
                        m.next = "BUNDLE_START"
                with m.Elif(f == F - 1):
                    m.next = "ITER_END"
                with m.Else():
                    m.d.sync += f.eq(f + 1)
                    m.next = "FACTOR"
            with m.State("ITER_END"):
                with m.If(conv | (it == s.max_iters)):
                    m.next = "OUT"
                with m.Else():
                    m.d.sync += [it.eq(it + 1), f.eq(0), conv.eq(1)]
                    m.next = "FACTOR"
            with m.State("OUT"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(Cat(*[answers[q] for q in range(F)], it))]
                with m.If(self.o.ready):
                    m.next = "LOAD"
        return m
