"""DecoderSpec -> edge_factorizer.h / edge_factorizer.c (and a model.h/model.c for firmware).

The C file holds the codebook index table and the start estimates as `static const` arrays
(flash), the TVM-generated kernels (kernels.py) as static functions, the decoder's RAM as
static buffers, and a short driver that sequences the kernels per iteration and factor as the
spec's steps 1-7 do. Output is a pure function of the spec (fixed order and number format),
so two generations are byte-identical.

API: `int edge_factorizer_decode(const uint16_t *q, int32_t *idx, int32_t *iters)` decodes
one integer query of B*L entries (non-negative, < 2^16) into F indices and the iteration
count, and returns 0. The firmware wrapper (`firmware_files`) exposes it as the
`edge_model_run` the QEMU test driver (firmware/mps2/main.c) calls: int16 inputs (so queries
must be < 2^15 there), outputs [idx_1..idx_F, iterations].
"""

from __future__ import annotations

import re

from ..emit import BANNER, _array
from ..tir_to_c import Kernel, to_c
from . import kernels
from .spec import DecoderSpec

HEADER = "edge_factorizer.h"
SOURCE = "edge_factorizer.c"
PREFIX = "edge_fz_"


def _ctype(dtype: str) -> str:
    return f"{dtype}_t"


def header(sp: DecoderSpec) -> str:
    """The API with the sizes it was generated for."""
    return (
        f"{BANNER}#ifndef EDGE_FACTORIZER_H\n#define EDGE_FACTORIZER_H\n\n#include <stdint.h>\n\n"
        f"/* {sp.method} decoder, fixed point (edge_sdk.factorizer.fixed) */\n"
        f"#define EDGE_FZ_F {sp.F}\n#define EDGE_FZ_M {sp.M}\n#define EDGE_FZ_B {sp.B}\n"
        f"#define EDGE_FZ_L {sp.L}\n#define EDGE_FZ_QUERY_SIZE {sp.BL}\n"
        f"#define EDGE_FZ_MAX_ITERS {sp.max_iters}\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        "/* Decode one query q[EDGE_FZ_QUERY_SIZE] (B blocks of L non-negative integers, each\n"
        " * block normalised by the decoder itself) into idx[EDGE_FZ_F] codevector indices and\n"
        " * *iters (1..EDGE_FZ_MAX_ITERS). Not reentrant (static work buffers). Returns 0. */\n"
        "int edge_factorizer_decode(const uint16_t *q, int32_t *idx, int32_t *iters);\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n#endif /* EDGE_FACTORIZER_H */\n"
    )


def _mark_unused(kernel: Kernel, body: str) -> str:
    """`(void)p;` for parameters a configuration does not read (no draws: no LFSR state)."""
    head, sep, rest = body.partition("{")
    unused = [p.name for p in kernel.params if not re.search(rf"\b{p.name}\b", rest)]
    return head + sep + "".join(f"\n  (void){n};" for n in unused) + rest


def _kernels(sp: DecoderSpec) -> str:
    names = (["normalise", "exhaustive"] if sp.method == "default" else
             ["normalise", "start", "correlate", "similarity", "activate", "bundle"])
    made = [getattr(kernels, n)(PREFIX + n, sp) for n in names]
    if sp.method == "default":  # the search reads the query doubled
        made[0] = kernels.normalise(PREFIX + "normalise", sp, doubled=True)
    return "\n".join("static " + _mark_unused(k, to_c(k)) for k in made)


def _tables(sp: DecoderSpec) -> str:
    parts = [_array(PREFIX + "h", _ctype(sp.index_dtype), sp.indices)]
    if sp.method == "published":
        parts.append(_array(PREFIX + "e", _ctype(sp.init_dtype), sp.init_estimates))
    return "".join(parts)


def _published_driver(sp: DecoderSpec) -> str:
    """Steps 1-7. Factor f unbinds x_0..x_{f-1} (already updated this iteration) and then
    x_{f+1}..x_{F-1}; the first part is shared with factor f+1, whose prefix is f's prefix
    unbound by the new x_f, so it is kept (`pre`) rather than recomputed: F-1 + F(F-1)/2
    correlations per iteration instead of F(F-1), the same integers in the same order."""
    F, M, B, BL = sp.F, sp.M, sp.B, sp.BL
    p = PREFIX
    return f"""\
static int32_t {p}qn[{BL}];
static int32_t {p}p0[{BL}];
static int32_t {p}p1[{BL}];
static int32_t {p}u0[{BL}];
static int32_t {p}u1[{BL}];
static int32_t {p}x[{F * BL}];
static int32_t {p}sim[{M}];
static int32_t {p}act[{M}];
static int32_t {p}flag[2];
static int32_t {p}best[{F}];
static uint32_t {p}st[1];
static {_ctype(sp.perm_dtype)} {p}perm[{M}];

int edge_factorizer_decode(const uint16_t *q, int32_t *idx, int32_t *iters)
{{
    int32_t it, f, g;
    {p}normalise(q, {p}qn);
    {p}start({p}e, {p}x, {p}st, {p}perm);
    for (it = 1; it <= {sp.max_iters}; ++it) {{
        int32_t converged = 1;
        const int32_t *pre = {p}qn; /* q' unbound by x_0..x_{{f-1}} */
        for (f = 0; f < {F}; ++f) {{
            /* then by the later factors' estimates, in factor order */
            const int32_t *u = pre;
            int32_t *next = {p}u0;
            for (g = f + 1; g < {F}; ++g) {{
                {p}correlate(u, {p}x + g * {BL}, next);
                u = next;
                next = next == {p}u0 ? {p}u1 : {p}u0;
            }}
            {p}similarity(u, {p}h + f * {M * B}, {p}sim);
            {p}activate({p}sim, {p}act, {p}st, {p}perm, {p}flag);
            converged &= {p}flag[0];
            {p}best[f] = {p}flag[1];
            {p}bundle({p}act, {p}h + f * {M * B}, {p}e + f * {BL}, {p}x + f * {BL});
            if (f + 1 < {F}) {{
                int32_t *out = pre == {p}p0 ? {p}p1 : {p}p0;
                {p}correlate(pre, {p}x + f * {BL}, out);
                pre = out;
            }}
        }}
        if (converged || it == {sp.max_iters}) {{
            break;
        }}
    }}
    for (f = 0; f < {F}; ++f) {{
        idx[f] = {p}best[f];
    }}
    *iters = it;
    return 0;
}}
"""


def _default_driver(sp: DecoderSpec) -> str:
    p = PREFIX
    return f"""\
static int32_t {p}qn[{2 * sp.BL}];

int edge_factorizer_decode(const uint16_t *q, int32_t *idx, int32_t *iters)
{{
    {p}normalise(q, {p}qn);
    {p}exhaustive({p}qn, {p}h, idx);
    *iters = 1;
    return 0;
}}
"""


def source(sp: DecoderSpec) -> str:
    driver = _default_driver(sp) if sp.method == "default" else _published_driver(sp)
    return (
        f"{BANNER}/* Factorizer decoder: kernels from TVMScript -> TIR -> TVM `c` codegen. */\n"
        f'#include <stdbool.h>\n#include <stdint.h>\n#include "{HEADER}"\n\n'
        f"{_tables(sp)}\n{_kernels(sp)}\n{driver}"
    )


def files(sp: DecoderSpec) -> dict[str, str]:
    """The library pair: edge_factorizer.h and edge_factorizer.c."""
    return {HEADER: header(sp), SOURCE: source(sp)}


def firmware_files(sp: DecoderSpec) -> dict[str, str]:
    """The library pair plus model.h/model.c, so the board firmware runs the decoder on
    int16 queries and writes [idx..., iterations] per query."""
    model_h = (
        f"{BANNER}#ifndef EDGE_MODEL_H\n#define EDGE_MODEL_H\n\n#include <stdint.h>\n\n"
        f"#define EDGE_IN_T int16_t\n#define EDGE_IN_MIN (0)\n#define EDGE_IN_MAX (32767)\n"
        f"#define EDGE_IN_SIZE {sp.BL}\n#define EDGE_OUT_SIZE {sp.F + 1}\n\n"
        "/* out = [indices of the F factors, iterations] */\n"
        "int edge_model_run(const EDGE_IN_T *in, int32_t *out);\n\n#endif /* EDGE_MODEL_H */\n"
    )
    model_c = (
        f'{BANNER}#include <stdint.h>\n#include "model.h"\n#include "{HEADER}"\n\n'
        "int edge_model_run(const EDGE_IN_T *in, int32_t *out)\n{\n"
        "    /* int16_t and uint16_t may alias; queries are non-negative */\n"
        f"    return edge_factorizer_decode((const uint16_t *)in, out, out + {sp.F});\n}}\n"
    )
    return {**files(sp), "model.h": model_h, "model.c": model_c}
