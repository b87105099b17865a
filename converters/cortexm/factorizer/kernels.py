"""The fixed-point factorizer's loops as TVMScript kernels (one C function each).

Each kernel is one step of `edge_sdk.factorizer.fixed` (its module docstring is the spec) for
ONE factor or one query; the driver (emit.py) sequences them and passes per-factor pointers
into the flash tables, so the code size does not grow with F. Why these shapes:

- correlation (step 3) visits only the nonzero estimate entries x[j]: the result is the same
  sum, but once a factor has converged its estimate is one-hot, x[j] = X, and unbinding is a
  rotation of u (index arithmetic, no multiply); otherwise four outputs are accumulated in
  registers per pass over the nonzero entries, reading a doubled copy of u so that
  (j + l) mod L needs no modulo;
- similarity (step 4) gathers one unbound entry per block at each codevector's hot position
  from the flash index table (gather-and-add); linf keeps each block's two largest entries
  (with multiplicity) so "max over the other positions" is one compare;
- activation (step 5) runs the threshold, the LFSR draw (lfsr.py: Galois steps and a partial
  Fisher-Yates shuffle over a per-query permutation) and the pull-up on M integers;
- bundling (step 6) adds activations into per-block counters at the hot positions and divides
  exactly, (c * X) // S, in 32-bit words unless the bound needs 64 (spec.bundle_dtype);
- the `default` decoder is exhaustive search over the M^F integer scores on a doubled query,
  the last factor innermost with its B gathers unrolled, strict '>' so ties keep the lowest
  flat index.

All quantities are non-negative, so unsigned division and shifts equal the spec's floors.
"""

from __future__ import annotations

from tvm.script import tirx as T

from ..tir_to_c import Kernel, Param
from .spec import DecoderSpec


def normalise(name: str, sp: DecoderSpec, doubled: bool = False) -> Kernel:
    """Step 1: q'[l] = (q[l] * Q) // S per block, Q // L everywhere for an empty block.

    `doubled` writes every block twice in a row ([B][2L]) so a reader can index it at
    (p + h) for p, h < L without reducing mod L (the exhaustive search does).
    """
    B, L, BL = sp.B, sp.L, sp.BL
    Q = 1 << sp.qbits
    reps = 2 if doubled else 1
    stride = reps * L

    @T.prim_func
    def func(q: T.handle("uint16"), y: T.handle("int32")):
        Qb = T.decl_buffer((BL,), "uint16", data=q)
        Y = T.decl_buffer((reps * BL,), "int32", data=y)
        s = T.alloc_buffer((1,), "uint32")
        for b in range(B):
            s[0] = T.uint32(0)
            for l in range(L):
                s[0] = s[0] + T.Cast("uint32", Qb[b * L + l])
            for l in range(L):
                v = T.bind(T.Select(
                    s[0] > T.uint32(0),
                    T.Cast("int32", (T.Cast("uint32", Qb[b * L + l]) << T.uint32(sp.qbits))
                           // T.max(s[0], T.uint32(1))),
                    Q // L))
                for r in T.unroll(reps):
                    Y[b * stride + r * L + l] = v

    return Kernel(name, func, (Param("q", "in"), Param("y", "out")))


def correlate(name: str, sp: DecoderSpec) -> Kernel:
    """Step 3 for one other factor: y[l] = (sum_j u[(j + l) mod L] * x[j]) >> xbits per block.

    The nonzero x[j] are listed first and only they are visited; u is copied twice in a row
    so (j + l) mod L is a plain offset; four outputs are accumulated at a time in registers
    (one load of j and x[j] per four multiply-adds). A one-hot x[j] = X (a converged factor)
    is an exact rotation, (u * X) >> xbits = u, and is copied without multiplying.
    """
    B, L, BL = sp.B, sp.L, sp.BL
    xbits = sp.xbits
    X1 = 1 << xbits
    G = 4  # outputs per register group
    groups, tail = L // G, L % G

    @T.macro
    def group(Y, U2, pos, val, n, b, l0, width):
        a = T.alloc_buffer((G,), "int32")
        for t in T.unroll(width):
            a[t] = 0
        for k in range(n):
            # a pointer to this run of u: the four loads become constant offsets
            V = T.decl_buffer((G,), "int32", data=T.address_of(U2[pos[k] + l0]))
            xv = T.bind(val[k])
            for t in T.unroll(width):
                a[t] = a[t] + V[t] * xv
        for t in T.unroll(width):
            Y[b * L + l0 + t] = a[t] >> xbits

    @T.prim_func
    def func(u: T.handle("int32"), x: T.handle("int32"), y: T.handle("int32")):
        U = T.decl_buffer((BL,), "int32", data=u)
        Xb = T.decl_buffer((BL,), "int32", data=x)
        Y = T.decl_buffer((BL,), "int32", data=y)
        U2 = T.alloc_buffer((2 * L,), "int32")
        pos = T.alloc_buffer((L,), "int32")
        val = T.alloc_buffer((L,), "int32")
        n = T.alloc_buffer((1,), "int32")
        for b in range(B):
            n[0] = 0
            for j in range(L):
                if Xb[b * L + j] != 0:
                    pos[n[0]] = j
                    val[n[0]] = Xb[b * L + j]
                    n[0] = n[0] + 1
            for l in range(L):
                U2[l] = U[b * L + l]
                U2[L + l] = U[b * L + l]
            if n[0] == 1 and val[0] == X1:
                for l in range(L):
                    Y[b * L + l] = U2[pos[0] + l]
            else:
                for g in range(groups):
                    group(Y, U2, pos, val, n[0], b, g * G, G)
                if tail > 0:
                    group(Y, U2, pos, val, n[0], b, groups * G, tail)

    return Kernel(name, func, (Param("u", "in"), Param("x", "in"), Param("y", "out")))


def similarity(name: str, sp: DecoderSpec) -> Kernel:
    """Step 4 for one factor: sim[m] from the unbound u and the factor's index table h [M, B]."""
    B, L, BL, M = sp.B, sp.L, sp.BL, sp.M
    Q = 1 << sp.qbits
    ix = sp.index_dtype
    linf = sp.kind == "linf"

    @T.prim_func
    def func(u: T.handle("int32"), h: T.handle(ix), sim: T.handle("int32")):
        U = T.decl_buffer((BL,), "int32", data=u)
        H = T.decl_buffer((M * B,), ix, data=h)
        S = T.decl_buffer((M,), "int32", data=sim)
        acc = T.alloc_buffer((1,), "int32")
        if linf:
            top1 = T.alloc_buffer((B,), "int32")
            top2 = T.alloc_buffer((B,), "int32")
            for b in range(B):  # the two largest entries, a repeated maximum counted twice
                top1[b] = -1
                top2[b] = -1
                for l in range(L):
                    v = T.bind(U[b * L + l])
                    if v > top1[b]:
                        top2[b] = top1[b]
                        top1[b] = v
                    elif v > top2[b]:
                        top2[b] = v
        for m in range(M):
            acc[0] = 0
            for b in range(B):
                hv = T.bind(U[b * L + T.Cast("int32", H[m * B + b])])
                if linf:
                    other = T.bind(T.Select(hv == top1[b], top2[b], top1[b]))
                    acc[0] = T.max(acc[0], T.max(Q - hv, other))
                else:
                    acc[0] = acc[0] + hv
            if linf:
                S[m] = Q - acc[0]
            else:
                S[m] = acc[0]

    return Kernel(name, func, (Param("u", "in"), Param("h", "const"), Param("sim", "out")))


def activate(name: str, sp: DecoderSpec) -> Kernel:
    """Step 5 for one factor, plus the answer: act from sim; flag = [converged, argmax sim].

    `st` is the query's LFSR state (one uint32) and `perm` its permutation; both persist
    across iterations and factors, as lfsr.draw keeps them.
    """
    M = sp.M
    t_int, p_int = sp.levels
    A = sp.A
    pd = sp.perm_dtype
    taps = 0x80200003

    @T.prim_func
    def func(sim: T.handle("int32"), act: T.handle("int32"), st: T.handle("uint32"),
             perm: T.handle(pd), flag: T.handle("int32")):
        S = T.decl_buffer((M,), "int32", data=sim)
        Ac = T.decl_buffer((M,), "int32", data=act)
        St = T.decl_buffer((1,), "uint32", data=st)
        P = T.decl_buffer((M,), pd, data=perm)
        Fl = T.decl_buffer((2,), "int32", data=flag)
        k = T.alloc_buffer((1,), "int32")
        top = T.alloc_buffer((1,), "int32")
        any_left = T.alloc_buffer((1,), "int32")
        k[0] = 0
        for m in range(M):  # the answer: lowest index of max(sim)
            if S[m] > S[k[0]]:
                k[0] = m
        Fl[1] = k[0]
        any_left[0] = 0
        for m in range(M):
            if t_int > 0:
                Ac[m] = T.Select(S[m] < t_int, 0, S[m])
            else:
                Ac[m] = S[m]
            any_left[0] = any_left[0] | T.Cast("int32", Ac[m] != 0)
        if t_int > 0:  # noqa: SIM102 - Python constant outside, TIR condition inside
            if any_left[0] == 0:
                for m in range(M):
                    Ac[m] = S[m]
        k[0] = 0
        for m in range(M):
            if Ac[m] > Ac[k[0]]:
                k[0] = m
        low = T.bind(Ac[k[0]] <= t_int)
        if A > 0:  # noqa: SIM102 - Python constant outside, TIR condition inside
            if low:
                for m in range(M):
                    Ac[m] = T.Select(A >= M, 1, 0)
                if A < M:
                    for j in range(min(A, M)):
                        s0 = T.bind(St[0])
                        s1 = T.bind(T.Select((s0 & T.uint32(1)) != T.uint32(0),
                                             (s0 >> T.uint32(1)) ^ T.uint32(taps),
                                             s0 >> T.uint32(1)))
                        St[0] = s1
                        r = T.bind(T.Cast("int32", s1 % T.Cast("uint32", M - j)))
                        pj = T.bind(P[j])
                        P[j] = P[j + r]
                        P[j + r] = pj
                    for j in range(min(A, M)):
                        Ac[T.Cast("int32", P[j])] = 1
                k[0] = 0  # a draw leaves act at most 1: below P_int, so no pull-up
        top[0] = Ac[k[0]]
        if top[0] >= p_int and not low:
            for m in range(M):
                Ac[m] = T.Select(m == k[0], top[0], 0)
            Fl[0] = 1
        else:
            Fl[0] = 0

    return Kernel(name, func, (Param("sim", "in"), Param("act", "out"), Param("st", "out"),
                               Param("perm", "out"), Param("flag", "out")))


def bundle(name: str, sp: DecoderSpec) -> Kernel:
    """Step 6 for one factor: per-block counters at the hot positions, then (c * X) // S,
    or the flash start estimate `e` for a block without mass."""
    B, L, BL, M = sp.B, sp.L, sp.BL, sp.M
    ix, wd, ed = sp.index_dtype, sp.bundle_dtype, sp.init_dtype
    xbits = sp.xbits

    @T.prim_func
    def func(act: T.handle("int32"), h: T.handle(ix), e: T.handle(ed), x: T.handle("int32")):
        Ac = T.decl_buffer((M,), "int32", data=act)
        H = T.decl_buffer((M * B,), ix, data=h)
        E = T.decl_buffer((BL,), ed, data=e)
        X = T.decl_buffer((BL,), "int32", data=x)
        c = T.alloc_buffer((L,), "uint32")
        s = T.alloc_buffer((1,), wd)
        for b in range(B):
            for l in range(L):
                c[l] = T.uint32(0)
            for m in range(M):
                pos = T.bind(T.Cast("int32", H[m * B + b]))
                c[pos] = c[pos] + T.Cast("uint32", Ac[m])
            s[0] = T.Cast(wd, 0)
            for l in range(L):
                s[0] = s[0] + T.Cast(wd, c[l])
            if s[0] > T.Cast(wd, 0):
                for l in range(L):
                    X[b * L + l] = T.Cast("int32", (T.Cast(wd, c[l]) << T.Cast(wd, xbits)) // s[0])
            else:
                for l in range(L):
                    X[b * L + l] = T.Cast("int32", E[b * L + l])

    return Kernel(name, func, (Param("act", "in"), Param("h", "const"), Param("e", "const"),
                               Param("x", "out")))


def start(name: str, sp: DecoderSpec) -> Kernel:
    """A query's start: all estimates from flash (step 2), LFSR state, identity permutation."""
    BL, F, M = sp.BL, sp.F, sp.M
    ed, pd = sp.init_dtype, sp.perm_dtype
    seed_state = sp.lfsr_start

    @T.prim_func
    def func(e: T.handle(ed), x: T.handle("int32"), st: T.handle("uint32"), perm: T.handle(pd)):
        E = T.decl_buffer((F * BL,), ed, data=e)
        X = T.decl_buffer((F * BL,), "int32", data=x)
        St = T.decl_buffer((1,), "uint32", data=st)
        P = T.decl_buffer((M,), pd, data=perm)
        for i in range(F * BL):
            X[i] = T.Cast("int32", E[i])
        St[0] = T.uint32(seed_state)
        for m in range(M):
            P[m] = T.Cast(pd, m)

    return Kernel(name, func, (Param("e", "const"), Param("x", "out"), Param("st", "out"),
                               Param("perm", "out")))


def exhaustive(name: str, sp: DecoderSpec) -> Kernel:
    """`default`: best integer score sum_b q'_b[(sum_f h_f,b) mod L] over all M^F products;
    writes the F indices (factor 1 most significant, lowest flat index on ties).

    `qn` is the doubled normalised query (normalise(doubled=True)): with the prefix factors'
    positions p_b < L summed once per prefix, the innermost loop over the last factor's M
    codevectors is B unrolled gathers qn[b][p_b + h_b] and adds, no modulo.
    """
    B, L, M, F = sp.B, sp.L, sp.M, sp.F
    ix = sp.index_dtype
    outer = M ** (F - 1)
    last = (F - 1) * M * B

    @T.prim_func
    def func(qn: T.handle("int32"), h: T.handle(ix), out: T.handle("int32")):
        Qn = T.decl_buffer((2 * B * L,), "int32", data=qn)
        H = T.decl_buffer((F * M * B,), ix, data=h)
        O = T.decl_buffer((F,), "int32", data=out)
        pre = T.alloc_buffer((B,), "int32")
        digit = T.alloc_buffer((1,), "int32")
        best = T.alloc_buffer((1,), "int32")
        arg = T.alloc_buffer((1,), "int32")
        acc = T.alloc_buffer((1,), "int32")
        best[0] = -1
        arg[0] = 0
        for k in range(outer):
            for b in T.unroll(B):
                pre[b] = b * 2 * L
            digit[0] = k
            for g in range(F - 1):  # prefix factors, the last of them least significant
                f = T.bind(F - 2 - g)
                for b in T.unroll(B):
                    v = T.bind(pre[b] + T.Cast("int32", H[(f * M + digit[0] % M) * B + b]))
                    pre[b] = T.Select(v >= b * 2 * L + L, v - L, v)
                digit[0] = digit[0] // M
            for m in range(M):
                Hm = T.decl_buffer((B,), ix, data=T.address_of(H[last + m * B]))
                acc[0] = 0
                for b in T.unroll(B):
                    acc[0] = acc[0] + Qn[pre[b] + T.Cast("int32", Hm[b])]
                if acc[0] > best[0]:
                    best[0] = acc[0]
                    arg[0] = k * M + m
        digit[0] = arg[0]
        for g in range(F):
            O[F - 1 - g] = digit[0] % M
            digit[0] = digit[0] // M

    return Kernel(name, func, (Param("qn", "in"), Param("h", "const"), Param("out", "out")))
