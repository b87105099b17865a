"""TIR PrimFunc -> one plain C99 function, through TVM's `c` code generator.

`tvm.compile` would wrap every kernel in TVM's FFI calling convention (MakePackedAPI) and the
result would need the TVM runtime. Instead each kernel is lowered with an explicit, short list
of TIR passes (no MakePackedAPI, so the function keeps its plain pointer parameters), printed
by the `c` target's code generator, and the TVM preamble (includes, export macros, the FFI
library context, extern "C" guards) is stripped. What remains uses only <stdint.h> types.

Pointer parameters get `const` (inputs and flash tables) and `restrict` (the arena planner
never lets a kernel's input and output overlap), which the generator cannot express.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm
from tvm import tirx

from .popcount import popcount_mode

TARGET = "c"


@dataclass(frozen=True)
class Param:
    """One C parameter: `role` is "in" (read), "const" (flash table) or "out" (written)."""

    name: str
    role: str


@dataclass(frozen=True)
class Kernel:
    """A generated kernel: its C name, TIR function and what each pointer parameter is."""

    name: str
    func: tirx.PrimFunc
    params: tuple[Param, ...]


def passes() -> list[tvm.transform.Pass]:
    """The lowering pipeline: everything a kernel needs, nothing of the packed-API path."""
    t = tirx.transform
    return [
        t.BindTarget(tvm.target.Target(TARGET)),
        t.FlattenBuffer(),
        t.UnrollLoop(),  # honours T.unroll: constant word/bit indices for the C compiler
        t.ConvertSSA(),  # unrolled copies of a bound variable become distinct variables
        t.RemoveNoOp(),
        t.LowerIntrin(),  # tirx.popcount -> SWAR or __builtin_popcount (popcount.py)
    ]


def lower(kernel: Kernel) -> tvm.IRModule:
    func = kernel.func.with_attr("global_symbol", kernel.name)
    mod = tvm.IRModule({kernel.name: func})
    return tvm.ir.transform.Sequential(passes())(mod)


_DROP = re.compile(
    r"^(//.*|#define TVM_EXPORTS|#include .*|void\* __tvm_ffi__library_ctx = NULL;|"
    r"#ifdef __cplusplus|extern \"C\"|#endif|TVM_DLL .*\);)$"
)


def strip_tvm(source: str) -> str:
    """Keep only function definitions; refuse if any TVM construct survives."""
    lines = [ln for ln in source.splitlines() if not _DROP.match(ln.strip())]
    text = "\n".join(lines).replace("TVM_DLL ", "").strip() + "\n"
    if re.search(r"tvm|TVMValue|TVMFFI|__tvm", text, re.IGNORECASE):
        raise RuntimeError("TVM construct left in generated C:\n" + text)
    return text


def _qualify(text: str, kernel: Kernel) -> str:
    """Add const/restrict to the pointer parameters of the definition's first line."""
    head, sep, body = text.partition("{")
    roles = {p.name: p.role for p in kernel.params}

    def fix(match: re.Match) -> str:
        ctype, name = match.group(1), match.group(2)
        role = roles.get(name)
        if role is None:
            raise RuntimeError(f"kernel {kernel.name}: parameter {name} has no role")
        const = "const " if role in ("in", "const") else ""
        return f"{const}{ctype}* restrict {name}"

    head = re.sub(r"\b(u?int(?:8|16|32)_t)\* (\w+)", fix, head)
    return head + sep + body


def to_c(kernel: Kernel, popcount: str = "swar") -> str:
    """The kernel as one C99 function definition (no includes)."""
    with popcount_mode(popcount):
        mod = lower(kernel)
        built = tvm.get_global_func("target.build." + TARGET)(mod, tvm.target.Target(TARGET))
    return _qualify(strip_tvm(built.inspect_source()), kernel)


def prototype(c_function: str) -> str:
    """`void name(...);` from a definition produced by `to_c`."""
    return c_function.partition("{")[0].strip() + ";"
