"""The integer block softmax (factorizer.block_softmax.BlockSoftmax) as one generated C kernel.

Why a kernel of its own: it is the glue between a network's int32 scores and the decoder's
uint16 query, and the rule is integer-exact (edge_sdk.factorizer.block_softmax), so the same
TVMScript -> TIR -> C path as every other kernel gives C that equals `BlockSoftmax.apply`:

- logit t = (mul[e] * z + add[e]) >> shift in int32: the record guarantees |mul * z| + |add|
  < 2^31 over the scores' range, and `>>` of a negative int32 is an arithmetic shift (floor)
  on GCC, the only compiler the firmware is built with (and checked on the host);
- per block the maximum, then d = max - t computed in uint32 (the true d is in [0, 2^32), so
  the unsigned difference is exact even where the int32 one would overflow);
- q = table[d] for d < len(table), else 0; the table (<= 2^EXP_BITS) is uint16 in flash.

Files: edge_block_softmax.h declares `void edge_block_softmax(const int32_t *z, uint16_t *q)`;
edge_block_softmax.c holds mul/add/table as `static const` arrays and the kernel.
"""

from __future__ import annotations

from tvm.script import tirx as T

from edge_sdk.factorizer.block_softmax import BlockSoftmax

from ..emit import BANNER, _array
from ..tir_to_c import Kernel, Param, to_c

HEADER = "edge_block_softmax.h"
SOURCE = "edge_block_softmax.c"
PREFIX = "edge_bs_"


def kernel(name: str, tail: BlockSoftmax) -> Kernel:
    """z [B*L] int32, mul/add [B*L] int32, table [E] uint16 -> q [B*L] uint16."""
    B, L = tail.B, tail.L
    BL = B * L
    E = len(tail.table)
    shift = tail.shift

    @T.prim_func
    def func(z: T.handle("int32"), mul: T.handle("int32"), add: T.handle("int32"),
             table: T.handle("uint16"), q: T.handle("uint16")):
        Z = T.decl_buffer((BL,), "int32", data=z)
        Mu = T.decl_buffer((BL,), "int32", data=mul)
        Ad = T.decl_buffer((BL,), "int32", data=add)
        Tb = T.decl_buffer((E,), "uint16", data=table)
        Q = T.decl_buffer((BL,), "uint16", data=q)
        t = T.alloc_buffer((L,), "int32")
        top = T.alloc_buffer((1,), "int32")
        for b in range(B):
            for l in range(L):
                t[l] = (Mu[b * L + l] * Z[b * L + l] + Ad[b * L + l]) >> shift
            top[0] = t[0]
            for l in range(1, L):
                top[0] = T.max(top[0], t[l])
            for l in range(L):
                d = T.bind(T.Cast("uint32", top[0]) - T.Cast("uint32", t[l]))
                if d < T.uint32(E):
                    Q[b * L + l] = Tb[T.Cast("int32", d)]
                else:
                    Q[b * L + l] = T.uint16(0)

    return Kernel(name, func, (Param("z", "in"), Param("mul", "const"), Param("add", "const"),
                               Param("table", "const"), Param("q", "out")))


def header(tail: BlockSoftmax) -> str:
    return (
        f"{BANNER}#ifndef EDGE_BLOCK_SOFTMAX_H\n#define EDGE_BLOCK_SOFTMAX_H\n\n"
        "#include <stdint.h>\n\n"
        f"#define EDGE_BS_B {tail.B}\n#define EDGE_BS_L {tail.L}\n"
        f"#define EDGE_BS_SIZE {tail.B * tail.L}\n\n"
        "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
        "/* Integer block softmax: the network's int32 scores z[EDGE_BS_SIZE] (within the range\n"
        " * the record was made for) -> the decoder's query q[EDGE_BS_SIZE], entries <= 2^14. */\n"
        "void edge_block_softmax(const int32_t *z, uint16_t *q);\n\n"
        "#ifdef __cplusplus\n}\n#endif\n\n#endif /* EDGE_BLOCK_SOFTMAX_H */\n"
    )


def source(tail: BlockSoftmax) -> str:
    p = PREFIX
    body = to_c(kernel(p + "kernel", tail))
    return (
        f"{BANNER}/* Block softmax: logit affine, block max, exp table (kernel from TVMScript "
        "-> TIR -> TVM `c` codegen). */\n"
        f'#include <stdint.h>\n#include "{HEADER}"\n\n'
        f"/* logit t = (mul * z + add) >> {tail.shift}, in 1/2^{tail.frac} nat; scores in "
        f"[{tail.z_lo}, {tail.z_hi}] */\n"
        + _array(p + "mul", "int32_t", tail.mul)
        + _array(p + "add", "int32_t", tail.add)
        + _array(p + "table", "uint16_t", tail.table)
        + "\nstatic " + body
        + "\nvoid edge_block_softmax(const int32_t *z, uint16_t *q)\n{\n"
        f"    {p}kernel(z, {p}mul, {p}add, {p}table, q);\n}}\n"
    )


def files(tail: BlockSoftmax) -> dict[str, str]:
    """edge_block_softmax.h and edge_block_softmax.c for one record."""
    return {HEADER: header(tail), SOURCE: source(tail)}
