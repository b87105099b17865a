"""Popcount lowering for TVM's `c` target.

TVM's C code generator has no rule for the `tirx.popcount` intrinsic (the op the TIR builder
`T.popcount` makes; TVM < 0.2x called it `tir.popcount`), so the kernels would not compile.
We register one rule for the `c` target that expands it, at lowering time, to either

- "swar": the portable SWAR bit-count (shift/mask/add, one multiply), 12 Thumb-2 instructions
  on a Cortex-M3/M4, which have no popcount instruction; the default, or
- "builtin": `__builtin_popcount(x)`, for GCC/Clang targets whose compiler does better
  (e.g. cores with a CNT-like instruction; on Cortex-M it becomes a libgcc call).

The rule is registered once per process; the mode in force is a module-level setting that
`popcount_mode()` sets around a lowering (code generation is single-threaded).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tvm import tirx

MODES = ("swar", "builtin")
OP_NAME = "tirx.popcount"

_mode = "swar"
_registered = False


def _u32(v: int) -> tirx.PrimExpr:
    return tirx.const(v, "uint32")


def swar(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """popcount(x) for uint32 x as Let-bound SWAR steps (the C code names each step once)."""
    a = tirx.Var("pc_a", "uint32")
    b = tirx.Var("pc_b", "uint32")
    c = tirx.Var("pc_c", "uint32")
    nibbles = (c + (c >> _u32(4))) & _u32(0x0F0F0F0F)
    expr = tirx.Let(c, (b & _u32(0x33333333)) + ((b >> _u32(2)) & _u32(0x33333333)),
                    (nibbles * _u32(0x01010101)) >> _u32(24))
    expr = tirx.Let(b, a - ((a >> _u32(1)) & _u32(0x55555555)), expr)
    return tirx.Let(a, x, expr)


def _lower(op: tirx.Call) -> tirx.PrimExpr:
    dtype = str(op.ty)
    if dtype != "uint32":
        raise TypeError(f"popcount lowering handles uint32 only, got {dtype}")
    (x,) = op.args
    if _mode == "builtin":
        return tirx.call_pure_extern("uint32", "__builtin_popcount", x)
    return swar(x)


def register() -> None:
    """Install the `c` target rule for `tirx.popcount` (idempotent)."""
    global _registered
    if not _registered:
        tirx.register_intrin_lowering(OP_NAME, target="c", f=_lower, level=99)
        _registered = True


@contextlib.contextmanager
def popcount_mode(mode: str) -> Iterator[None]:
    """Lower popcounts inside this block with `mode` ("swar" or "builtin")."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"popcount must be one of {', '.join(MODES)}, got {mode!r}")
    register()
    old, _mode = _mode, mode
    try:
        yield
    finally:
        _mode = old
