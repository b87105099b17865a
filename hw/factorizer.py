"""The fixed-point `published` factorizer decoder as an Amaranth block (bit-exact with fixed.py).

Why this schedule: every step of `edge_sdk.factorizer.fixed` is integer arithmetic, so the block
runs the same loop sequentially over small RAMs, and the results are equal by construction:
- unbinding (step 3) is the circular correlation computed only over the nonzero estimate
  entries: estimates are stored as per-block lists of nonzero (j, x[j]) pairs (written when
  they are normalised), and `corr_lanes` outputs u[l..l+C) = (sum u[(j + l) mod L] * x[j])
  >> xbits advance by one listed pair per cycle, reading two aligned words of u; a converged
  estimate is one-hot, so unbinding is then index arithmetic (modular subtraction);
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
        C = s.corr_lanes
        cb_bits = C.bit_length() - 1  # log2 C
        pb_l = L.bit_length() - 1  # log2 L

        # ---- memories (u is stored C entries per word: the correlation makes C per cycle)
        m.submodules.intake = intake = QueryNormaliser(s)
        wiring.connect(m, wiring.flipped(self.i), intake.i)
        rows = BL // C
        qn = Memory(shape=C * qw, depth=rows, init=[])
        ua = Memory(shape=C * qw, depth=rows, init=[])
        ub = Memory(shape=C * qw, depth=rows, init=[])
        nzm = Memory(shape=pb + xw, depth=F * BL, init=[])  # per (factor, block): (j, x[j])
        simm = Memory(shape=P * sw, depth=G, init=[])
        rom = Memory(shape=P * B * pb, depth=F * G, init=s.rom_words())
        perm = Memory(shape=s.index_bits, depth=M, init=[])
        banks = [Memory(shape=cw, depth=BL, init=[]) for _ in range(P)]
        for name, mem in [("qn", qn), ("ua", ua), ("ub", ub), ("nz", nzm),
                          ("sim", simm), ("rom", rom), ("perm", perm)]:
            m.submodules[name] = mem
        for p, mem in enumerate(banks):
            m.submodules[f"count{p}"] = mem
        wide = 2 if C > 1 else 1  # a window of C entries spans two words unless C == 1
        nports = max(wide, P)
        qn_w = qn.write_port(granularity=qw)
        qn_r = [qn.read_port() for _ in range(wide)]
        ua_w, ub_w = ua.write_port(), ub.write_port()
        ua_r = [ua.read_port() for _ in range(nports)]
        ub_r = [ub.read_port() for _ in range(nports)]
        nz_w, nz_r = nzm.write_port(), nzm.read_port()
        sim_w, sim_r = simm.write_port(), simm.read_port()
        rom_r = rom.read_port()
        perm_w, perm_a, perm_b = perm.write_port(), perm.read_port(), perm.read_port()
        cnt_w = [mem.write_port() for mem in banks]
        cnt_r = [mem.read_port(transparent_for=(wp,)) for mem, wp in zip(banks, cnt_w,
                                                                          strict=True)]
        m.submodules.div = div = FractionDivider(cw, s.xbits, per_cycle=1)
        m.submodules.mod = mod = Modulo(32, s.index_bits + 1)

        lane_in = intake.w_addr[:cb_bits] if cb_bits else 0
        m.d.comb += [qn_w.addr.eq(intake.w_addr >> cb_bits),
                     qn_w.data.eq(intake.w_data.replicate(C)),
                     qn_w.en.eq(Mux(intake.w_en, Const(1, C) << lane_in, 0))]

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
        nzc = Array(Signal(range(L + 1), name=f"nzc{k}") for k in range(F * B))
        blk = Signal(range(B))
        step = Signal(range(L // C))
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

        # ---- correlation pipeline: (step, k) -> nz list -> u_src words -> C multiply-adds
        av1, af1, al1 = Signal(), Signal(), Signal()
        as1 = Signal(range(L // C))
        av2, af2, al2 = Signal(), Signal(), Signal()
        as2 = Signal(range(L // C))
        sh2 = Signal(range(C))
        xv2 = Signal(xw)
        m.d.comb += nz_r.addr.eq(((g * B + blk) << pb_l) + k)
        spos = Signal(pb_l + 1)
        m.d.comb += spos.eq(nz_r.data[:pb_l] + (as1 << cb_bits))
        start = Signal(pb_l)
        m.d.comb += start.eq(Mux(spos >= L, spos - L, spos))
        row0 = (blk << (pb_l - cb_bits)) + (start >> cb_bits)
        row1 = Signal(range(rows))
        nxt_row = (start >> cb_bits) + 1
        m.d.comb += row1.eq((blk << (pb_l - cb_bits)) + Mux(nxt_row == L // C, 0, nxt_row))
        m.d.sync += [av1.eq(0), av2.eq(av1), af2.eq(af1), al2.eq(al1), as2.eq(as1),
                     xv2.eq(nz_r.data[pb_l:]), sh2.eq(start[:cb_bits] if cb_bits else 0)]
        words = []
        for port in range(wide):
            w0 = Mux(cur == QN, qn_r[port].data,
                     Mux(cur == UA, ua_r[port].data, ub_r[port].data))
            words.append(w0)
        window = Cat(*words)
        accs = [Signal(w.correlation + 1, name=f"acc{i}") for i in range(C)]
        ys = []
        t1, t2 = top1[blk], top2[blk]
        for i in range(C):
            lane = window.word_select(sh2 + i, qw)
            nacc = Signal(w.correlation + 1, name=f"nacc{i}")
            m.d.comb += nacc.eq(Mux(af2, 0, accs[i]) + lane * xv2)
            with m.If(av2):
                m.d.sync += accs[i].eq(nacc)
            y = Signal(qw, name=f"y{i}")
            m.d.comb += y.eq(nacc >> s.xbits)
            ys.append(y)
            n1, n2 = Signal(qw, name=f"top1n{i}"), Signal(qw, name=f"top2n{i}")
            m.d.comb += [n1.eq(Mux(y > t1, y, t1)), n2.eq(Mux(y > t1, t1, Mux(y > t2, y, t2)))]
            t1, t2 = n1, n2
        with m.If(av2 & al2):
            for wport, code in ((ua_w, UA), (ub_w, UB)):
                m.d.comb += [wport.addr.eq((blk << (pb_l - cb_bits)) + as2),
                             wport.data.eq(Cat(*ys)), wport.en.eq(dst == code)]
            m.d.sync += [top1[blk].eq(t1), top2[blk].eq(t2)]

        # ---- similarity pipeline: (grp, blk) -> ROM -> u hot entries -> per-lane score
        sv1, sf1, sl1 = Signal(), Signal(), Signal()
        sb1 = Signal(range(B))
        sg1 = Signal(range(G))
        sv2, sf2, sl2 = Signal(), Signal(), Signal()
        sb2 = Signal(range(B))
        sg2 = Signal(range(G))
        sv3 = Signal()
        sg3 = Signal(range(G))
        m.d.sync += [sv1.eq(0), sv2.eq(sv1), sf2.eq(sf1), sl2.eq(sl1), sb2.eq(sb1), sg2.eq(sg1),
                     sv3.eq(sv2 & sl2), sg3.eq(sg2)]
        m.d.comb += rom_r.addr.eq(f * G + grp)

        def hot_pos(p, b_sig):
            return rom_r.data.word_select(p * B + b_sig, pb) if B > 1 else \
                rom_r.data[p * pb:(p + 1) * pb]

        sel2 = []
        for p in range(nports):
            hp = hot_pos(p, sb1) if p < P else 0
            a_sim = (sb1 << (pb_l - cb_bits)) + (hp >> cb_bits)
            a_cor = row0 if p == 0 else row1
            a_any = Mux(sv1, a_sim, a_cor) if p < wide else a_sim
            m.d.comb += [ua_r[p].addr.eq(a_any), ub_r[p].addr.eq(a_any)]
            if p < P:
                sel = Signal(range(C), name=f"sel2_{p}")
                m.d.sync += sel.eq(hp[:cb_bits] if cb_bits else 0)
                sel2.append(sel)
        m.d.comb += [r.addr.eq(a) for r, a in zip(qn_r, (row0, row1), strict=False)]
        lane_acc = [Signal(sw, name=f"lane_acc{p}") for p in range(P)]
        sims = []
        chain_best, chain_idx = best, best_idx
        for p in range(P):
            hot = Signal(qw, name=f"hot{p}")
            m.d.comb += hot.eq(Mux(cur == UA, ua_r[p].data, ub_r[p].data).word_select(
                sel2[p], qw))
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
            # stage 3 (a group's last block went through stage 2 in the previous cycle):
            # scores are registered, so the max search does not extend the score's path
            sim = Signal(sw, name=f"sim{p}")
            m.d.comb += sim.eq(lane_acc[p] if s.kind == "dot" else Q - lane_acc[p])
            sims.append(sim)
            midx = sg3 * P + p
            better = (midx < M) & (sim > chain_best)
            nb, ni = Signal(sw, name=f"best{p}"), Signal(s.index_bits, name=f"best_idx{p}")
            m.d.comb += [nb.eq(Mux(better, sim, chain_best)),
                         ni.eq(Mux(better, midx, chain_idx))]
            chain_best, chain_idx = nb, ni
        with m.If(sv3):
            m.d.comb += [sim_w.en.eq(1), sim_w.addr.eq(sg3), sim_w.data.eq(Cat(*sims))]
            m.d.sync += [best.eq(chain_best), best_idx.eq(chain_idx)]

        read_next = Signal()
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
                m.d.comb += cnt_r[p].addr.eq(addr + read_next)
            with m.If(bv2):
                m.d.comb += [cnt_w[p].en.eq(1), cnt_w[p].addr.eq(a2),
                             cnt_w[p].data.eq(cnt_r[p].data + act2)]
        with m.If(bv1 & bf1):
            m.d.sync += mass.eq(mass + sum(acts))

        # ---- normalisation: counters -> estimates of factor f (and clear the counters)
        csum = Signal(cw + P)
        m.d.comb += csum.eq(sum(r.data for r in cnt_r))
        m.d.comb += [perm_a.addr.eq(dj), perm_b.addr.eq(dj + mod.r)]
        # estimates are kept only as nonzero lists (all the correlation needs), appended in
        # position order; an all-zero block keeps one (L - 1, 0) entry so its list is not empty
        nb = addr >> pb_l
        fb = Signal(range(F * B))
        m.d.comb += fb.eq(f * B + nb)
        xval = Signal(xw)
        xput = Signal()
        fcount = nzc[fb]
        keep = (xval != 0) | ((addr[:pb_l] == L - 1) & (fcount == 0))
        with m.If(xput & keep):
            m.d.comb += [nz_w.en.eq(1), nz_w.addr.eq((fb << pb_l) + fcount),
                         nz_w.data.eq(Cat(addr[:pb_l], xval))]
            m.d.sync += fcount.eq(fcount + 1)

        def begin_factor():
            m.d.sync += [g.eq(Mux(f == 0, 1, 0)), cur.eq(QN), blk.eq(0)]

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
                m.next = "BLOCK"
            with m.State("BLOCK"):
                m.d.sync += [ncnt.eq(nzc[g * B + blk]), k.eq(0), step.eq(0),
                             top1[blk].eq(0), top2[blk].eq(0)]
                m.next = "ACC"
            with m.State("ACC"):
                last_k = k == ncnt - 1
                m.d.sync += [av1.eq(1), af1.eq(k == 0), al1.eq(last_k), as1.eq(step)]
                with m.If(last_k):
                    m.d.sync += [k.eq(0), step.eq(step + 1)]
                    with m.If(step == L // C - 1):
                        m.d.sync += drain.eq(0)
                        m.next = "ACC_DRAIN"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            with m.State("ACC_DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                with m.If(drain == DRAIN):
                    m.next = "BLOCK"
                    with m.If(blk == B - 1):
                        m.d.sync += [blk.eq(0), cur.eq(dst)]
                        nxt = Mux(g + 1 == f, g + 2, g + 1)
                        with m.If(nxt >= F):
                            m.d.sync += [grp.eq(0), blk.eq(0), best.eq(0), best_idx.eq(0)]
                            m.next = "SIM"
                        with m.Else():
                            m.d.sync += g.eq(nxt)
                    with m.Else():
                        m.d.sync += blk.eq(blk + 1)
            with m.State("SIM"):
                m.d.sync += [sv1.eq(1), sf1.eq(blk == 0), sl1.eq(blk == B - 1), sb1.eq(blk),
                             sg1.eq(grp), blk.eq(blk + 1)]
                with m.If(blk == B - 1):
                    m.d.sync += [blk.eq(0), grp.eq(grp + 1)]
                    with m.If(grp == G - 1):
                        m.d.sync += [grp.eq(0), drain.eq(0)]
                        m.next = "SIM_DRAIN"
            with m.State("SIM_DRAIN"):  # DECIDE starts right after stage 3 updated `best`
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
                        for ff in range(F):
                            with m.If(f == ff):
                                m.d.sync += [nzc[ff * B + bb].eq(0) for bb in range(B)]
                        m.next = "N_READ"
            with m.State("N_READ"):
                m.next = "N_DATA"
            with m.State("N_DATA"):  # counters at addr are here; clear them
                for p in range(P):
                    m.d.comb += [cnt_w[p].en.eq(1), cnt_w[p].addr.eq(addr), cnt_w[p].data.eq(0)]
                with m.If((csum == 0) | (csum == mass)):
                    m.d.comb += [xput.eq(1), xval.eq(Mux(csum == 0, 0, X))]
                    with m.If(addr == BL - 1):
                        m.next = "NEXT_FACTOR"
                    with m.Else():  # read the next entry now: one entry per cycle
                        m.d.comb += read_next.eq(1)
                        m.d.sync += addr.eq(addr + 1)
                with m.Else():
                    m.d.comb += [div.start.eq(1), div.n.eq(csum), div.d.eq(mass)]
                    m.next = "N_DIV"
            with m.State("N_DIV"), m.If(div.done):
                m.d.comb += [xput.eq(1), xval.eq(div.q)]
                with m.If(addr == BL - 1):
                    m.next = "NEXT_FACTOR"
                with m.Else():
                    m.d.sync += addr.eq(addr + 1)
                    m.next = "N_READ"
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
