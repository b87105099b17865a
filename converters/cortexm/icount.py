"""Exact, deterministic instruction counts of `edge_model_run` with unicorn (in-process).

The firmware ELF built for a board is loaded as-is (PT_LOAD segments at their run addresses, so
.data is already "copied"; .bss is zero because unicorn maps memory zeroed), and
`edge_model_run(in, out)` is called directly: r0/r1 point at a scratch region holding one
sample and the output buffer, lr is a magic return address, and emulation stops there. Model
state in .bss persists from sample to sample, exactly as in the QEMU firmware loop, so outputs
must match QEMU's bit for bit.

Counting: a Python callback per instruction (UC_HOOK_CODE) manages ~3 M instructions/s. Instead
a UC_HOOK_BLOCK callback counts executions per translated block (address, size), and each
distinct block's instruction count is decoded once from its Thumb-2 bytes (a halfword whose top
five bits are 0b11101, 0b11110 or 0b11111 starts a 32-bit instruction). With the callback
registered through ctypes directly (bypassing two layers of Python wrappers in unicorn's
binding) this runs at ~50 M instructions/s. `count_mode="code"` keeps the slow per-instruction
hook as an independent cross-check.

Instructions inside an IT block whose condition fails count as executed: architecturally they
are executed as no-ops and take their issue slot. Block counting includes them naturally. The
code hook of unicorn/QEMU is not called for them, so `count_mode="code"` decodes each IT
instruction it sees and counts the whole IT block there; with that, both modes agree exactly
(checked in tests, including libgcc soft-float code full of IT blocks).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge_sdk.errors import EdgeError

from .boards import Board, get_board
from .toolchain import ElfImage, read_elf, validate_batch

__all__ = ["Emulator", "IcountResult", "count_instructions"]

# Scratch region for the inputs, outputs and the magic return address: unused by every board's
# memory map (0x60000000 is "external RAM" in the ARMv7-M default map, executable).
_SCRATCH_BASE = 0x6000_0000
# Not the region's first address: unicorn 2.1.4 raises UC_ERR_EXCEPTION instead of stopping
# when the stop address is exactly the start of a mapped region (observed with 0x60000000).
_MAGIC_RETURN = _SCRATCH_BASE + 0x100
_IN_OFFSET = 0x1000
_PAGE = 0x1000
# Board CPU -> unicorn's CPU model constant (unicorn.arm_const), for every core we target.
UNICORN_CPUS = {
    "cortex-m3": "UC_CPU_ARM_CORTEX_M3",
    "cortex-m4": "UC_CPU_ARM_CORTEX_M4",
    "cortex-m7": "UC_CPU_ARM_CORTEX_M7",
}
_THUMB_B_SELF = b"\xfe\xe7"  # `b .` so a stray resume at the magic address cannot run away


@dataclass(frozen=True)
class IcountResult:
    """Per-sample results: `outputs` [N, out_size] int32, `instructions` [N] int64."""

    outputs: np.ndarray
    instructions: np.ndarray

    @property
    def total(self) -> int:
        return int(self.instructions.sum())


# void (*)(uc_engine *, uint64_t address, uint32_t size, void *user_data)
_HOOK_CODE_CFUNC = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p
)


def _raw_binding() -> Any | None:
    """unicorn 2.x's ctypes binding module (uclib, uc_hook_h), or None if laid out otherwise."""
    try:
        from unicorn.unicorn_py3 import unicorn as binding
    except ImportError:
        return None
    if hasattr(binding, "uclib") and hasattr(binding, "uc_hook_h"):
        return binding
    return None


def _block_counter(blocks: dict[int, int]) -> Callable[[Any, int, int, Any], None]:
    """The UC_HOOK_BLOCK callback: a closure over the dict, the cheapest Python callable."""

    def on_block(_handle: Any, address: int, size: int, _user: Any) -> None:
        key = address << 16 | size
        blocks[key] = blocks.get(key, 0) + 1

    return on_block


class _Watchdog:
    """Stops the engine when one `emu_start` runs longer than `timeout` seconds.

    unicorn's own `emu_start(timeout=...)` slows emulation by ~25 % here; a Python thread that
    sleeps on a condition variable costs a few microseconds per sample. A late stop after
    `emu_start` returned is harmless: `uc_emu_stop` ignores an engine that is not running.
    """

    def __init__(self, stop: Callable[[], None], timeout: float):
        self._stop = stop
        self._timeout = timeout
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="icount-watchdog", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        with self._cond:
            self._deadline = time.monotonic() + self._timeout
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _loop(self) -> None:
        with self._cond:
            while not self._closed:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                remaining = self._deadline - time.monotonic()
                if remaining <= 0:
                    self._deadline = None
                    self._stop()
                else:
                    self._cond.wait(remaining)


def _round_up(value: int, step: int = _PAGE) -> int:
    return (value + step - 1) // step * step


class Emulator:
    """One firmware ELF loaded into unicorn; `run()` may be called many times.

    Reusing the emulator keeps unicorn's translation cache warm, which matters for randomised
    tests that call the model thousands of times.
    """

    def __init__(self, elf: str | Path, board: str | Board, entry: str = "edge_model_run"):
        import unicorn
        from unicorn import arm_const

        self._uc_mod = unicorn
        self._arm = arm_const
        self.board = get_board(board)
        self.image: ElfImage = read_elf(elf)
        self.entry = self.image.symbol(entry) | 1  # Thumb
        self.stack_top = self.image.symbols.get(
            "_estack", self.board.ram_origin + self.board.ram_bytes
        )
        self.io = self.image.firmware_io()

        if self.board.cpu not in UNICORN_CPUS:
            raise EdgeError(f"board {self.board.name!r}: CPU {self.board.cpu} has no unicorn model")
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(getattr(arm_const, UNICORN_CPUS[self.board.cpu]))
        self.uc = uc

        regions = [
            (self.board.flash_origin, self.board.flash_bytes),
            (self.board.ram_origin, self.board.ram_bytes),
        ]
        for origin, length in regions:
            uc.mem_map(origin, length)
        for seg in self.image.segments:
            for address in {seg.vaddr, seg.paddr}:
                if not any(o <= address and address + seg.memsz <= o + n for o, n in regions):
                    raise EdgeError(
                        f"{self.image.path}: segment at {address:#x} ({seg.memsz} bytes) is "
                        f"outside board {self.board.name}'s memory; built for another board?"
                    )
                if seg.data:
                    uc.mem_write(address, seg.data)
        self._scratch_bytes = 0
        self._map_scratch(2 * _PAGE)

        if self.board.has_fpu:
            # Hard-float code may use s0-s31: grant CP10/CP11 access as startup.c does.
            # (unicorn 2.1.4 happens to allow VFP anyway; do not depend on that.)
            cpacr = uc.reg_read(arm_const.UC_ARM_REG_C1_C0_2)
            uc.reg_write(arm_const.UC_ARM_REG_C1_C0_2, cpacr | (0xF << 20))

        self._blocks: dict[int, int] = {}  # (address << 16 | size) -> executions
        self._block_sizes: dict[int, int] = {}  # same key -> instructions in that block
        self._steps = 0
        self._it_blocks: dict[int, tuple[int, int]] = {}  # IT address -> (count, block end)
        self._it_start = self._it_end = 0
        self._raw_hooks: dict[int, Any] = {}  # handle -> ctypes callback (False: public API)
        self._block_hook = self._add_hook(unicorn.UC_HOOK_BLOCK, _block_counter(self._blocks))
        self._code_hook: int | None = None

    # --- hooks ----------------------------------------------------------------------------

    def _on_code(self, _handle: Any, address: int, size: int, _user: Any) -> None:
        if self._it_start <= address < self._it_end:
            return  # already counted with its IT instruction
        self._steps += 1
        info = self._it_blocks.get(address)
        if info is None:
            info = self._it_block_after(address, size)
            self._it_blocks[address] = info
        count, end = info
        if count:
            self._steps += count
            self._it_start, self._it_end = address + 2, end

    def _it_block_after(self, address: int, size: int) -> tuple[int, int]:
        """(instructions, end address) of the IT block an IT at `address` opens, else (0, 0)."""
        if size != 2:
            return 0, 0
        first = int.from_bytes(self.uc.mem_read(address, 2), "little")
        mask = first & 0xF
        if first & 0xFF00 != 0xBF00 or mask == 0:  # not IT (0xBFx0 are NOP-compatible hints)
            return 0, 0
        count = 5 - (mask & -mask).bit_length()  # lowest set bit of the mask: 4..1 insns
        code = bytes(self.uc.mem_read(address + 2, 16))
        pos = 0
        for _ in range(count):
            half = code[pos] | code[pos + 1] << 8
            pos += 4 if (half >> 11) in (0b11101, 0b11110, 0b11111) else 2
        return count, address + 2 + pos

    def _add_hook(self, kind: int, callback: Callable[[Any, int, int, Any], None]) -> int:
        """Register a code/block hook as a bare ctypes callback when the binding allows it.

        unicorn's Python `hook_add` wraps the callback twice (exception guard, argument
        adaptation), halving the speed; the raw path calls the same C entry point it does.
        """
        binding = _raw_binding()
        if binding is None:  # another binding layout: the public API
            handle = self.uc.hook_add(kind, lambda uc, a, s, u: callback(uc, a, s, u))
            self._raw_hooks[handle] = False
            return handle
        cfunc = _HOOK_CODE_CFUNC(callback)
        handle = binding.uc_hook_h()
        status = binding.uclib.uc_hook_add(
            self.uc._uch,
            ctypes.byref(handle),
            kind,
            ctypes.cast(cfunc, ctypes.c_void_p),
            None,
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
        )
        if status != 0:
            raise EdgeError(f"unicorn could not add a hook: {self._uc_mod.UcError(status)}")
        self._raw_hooks[int(handle.value)] = cfunc  # keep the callback alive with the engine
        return int(handle.value)

    def _del_hook(self, handle: int) -> None:
        cfunc = self._raw_hooks.pop(handle)
        if cfunc is False:
            self.uc.hook_del(handle)
            return
        binding = _raw_binding()
        assert binding is not None
        binding.uclib.uc_hook_del(self.uc._uch, binding.uc_hook_h(handle))

    def _instructions_in_block(self, key: int) -> int:
        count = self._block_sizes.get(key)
        if count is None:
            address, size = key >> 16, key & 0xFFFF
            code = bytes(self.uc.mem_read(address, size))
            count, pos = 0, 0
            while pos < size:
                first = code[pos] | code[pos + 1] << 8 if pos + 1 < size else 0
                pos += 4 if (first >> 11) in (0b11101, 0b11110, 0b11111) else 2
                count += 1
            self._block_sizes[key] = count
        return count

    # --- running --------------------------------------------------------------------------

    def _map_scratch(self, nbytes: int) -> None:
        nbytes = _round_up(nbytes)
        if nbytes <= self._scratch_bytes:
            return
        if self._scratch_bytes:
            self.uc.mem_unmap(_SCRATCH_BASE, self._scratch_bytes)
        self.uc.mem_map(_SCRATCH_BASE, nbytes)
        self.uc.mem_write(_MAGIC_RETURN, _THUMB_B_SELF)
        self._scratch_bytes = nbytes

    def run(
        self,
        inputs: np.ndarray,
        out_size: int | None = None,
        *,
        count_mode: Literal["block", "code"] = "block",
        timeout: float = 60.0,
    ) -> IcountResult:
        """Call `edge_model_run` on each row of `inputs` ([N, EDGE_IN_SIZE] int8/int16).

        `out_size` defaults to the firmware's EDGE_OUT_SIZE (from `edge_fw_io`). `timeout` is
        per sample, in seconds, and only guards against a model that never returns.
        """
        inputs, out_size = validate_batch(self.image.path, self.io, inputs, out_size)
        arm = self._arm
        in_bytes = _round_up(inputs.shape[1] * inputs.dtype.itemsize, 64)
        out_addr = _SCRATCH_BASE + _IN_OFFSET + in_bytes
        self._map_scratch(_IN_OFFSET + in_bytes + 4 * out_size)

        if count_mode == "code":
            self._code_hook = self._add_hook(self._uc_mod.UC_HOOK_CODE, self._on_code)
            # Blocks translated before the hook existed do not call it: retranslate.
            self.uc.ctl_flush_tb()
        elif count_mode != "block":
            raise EdgeError(f"count_mode must be 'block' or 'code', got {count_mode!r}")
        outputs = np.zeros((inputs.shape[0], out_size), dtype=np.int32)
        counts = np.zeros(inputs.shape[0], dtype=np.int64)
        watchdog = _Watchdog(self.uc.emu_stop, timeout)
        try:
            for i, row in enumerate(inputs):
                self.uc.mem_write(_SCRATCH_BASE + _IN_OFFSET, row.tobytes())
                self.uc.mem_write(out_addr, bytes(4 * out_size))
                regs = {
                    arm.UC_ARM_REG_R0: _SCRATCH_BASE + _IN_OFFSET,
                    arm.UC_ARM_REG_R1: out_addr,
                    arm.UC_ARM_REG_SP: self.stack_top,
                    arm.UC_ARM_REG_LR: _MAGIC_RETURN | 1,
                }
                for reg, value in regs.items():
                    self.uc.reg_write(reg, value)
                self._blocks.clear()
                self._steps = 0
                self._it_start = self._it_end = 0
                self._start(i, timeout, watchdog)
                if count_mode == "code":
                    counts[i] = self._steps
                else:
                    counts[i] = sum(
                        n * self._instructions_in_block(k) for k, n in self._blocks.items()
                    )
                status = self.uc.reg_read(arm.UC_ARM_REG_R0)
                if status != 0:
                    status -= (status & 0x8000_0000) << 1  # as the C int it is
                    raise EdgeError(
                        f"{self.image.path}: edge_model_run returned {status} for sample {i}"
                    )
                raw = self.uc.mem_read(out_addr, 4 * out_size)
                outputs[i] = np.frombuffer(bytes(raw), dtype="<i4")
        finally:
            watchdog.close()
            if self._code_hook is not None:
                self._del_hook(self._code_hook)
                self._code_hook = None
                self.uc.ctl_flush_tb()
        return IcountResult(outputs=outputs, instructions=counts)

    def _start(self, sample: int, timeout: float, watchdog: _Watchdog) -> None:
        """Run until the magic return address; any other stop is a one-line EdgeError."""
        uc_mod = self._uc_mod
        pc_reg = self._arm.UC_ARM_REG_PC
        watchdog.arm()
        try:
            self.uc.emu_start(self.entry, _MAGIC_RETURN)
        except uc_mod.UcError as exc:
            pc = self.uc.reg_read(pc_reg)
            raise EdgeError(
                f"{self.image.path}: emulation of sample {sample} stopped at pc={pc:#x}: {exc}"
            ) from None
        finally:
            watchdog.disarm()
        pc = self.uc.reg_read(pc_reg)
        if pc != _MAGIC_RETURN:
            raise EdgeError(
                f"{self.image.path}: sample {sample} did not return within {timeout:g} s "
                f"(stopped at pc={pc:#x})"
            )


def count_instructions(
    elf: str | Path,
    board: str | Board,
    inputs: np.ndarray,
    out_size: int | None = None,
    *,
    count_mode: Literal["block", "code"] = "block",
    timeout: float = 60.0,
) -> IcountResult:
    """One-shot `Emulator(elf, board).run(inputs, out_size)`: outputs and per-sample counts."""
    return Emulator(elf, board).run(inputs, out_size, count_mode=count_mode, timeout=timeout)
