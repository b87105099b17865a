"""A minimal, bounds-checked FlatBuffers reader (tables, vectors, strings, scalars).

A .tflite file is a FlatBuffer. The generated accessors of the `flatbuffers` package trust
the bytes they read; a truncated or hostile file then fails deep inside with whatever
exception Python raises. This reader checks every offset and length against the buffer and
raises `FormatError` (turned into a one-line EdgeError by the caller), so a bad file can
neither crash the reader nor make it allocate more than the file's own size.

Layout (FlatBuffers' binary format): a table starts with an int32 offset back to its
vtable; the vtable holds uint16 sizes then one uint16 field offset per field id (0 = absent).
Reference fields hold a uint32 offset forward from the field; a vector starts with a uint32
element count; a string is a vector of bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np


class FormatError(ValueError):
    """The bytes are not a well-formed FlatBuffer (or not the expected schema)."""


_SCALARS = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8, "f": 4, "d": 8,
            "?": 1}


@dataclass(frozen=True)
class Table:
    """One table inside `buf` at byte position `pos`."""

    buf: bytes
    pos: int

    # ------------------------------------------------------------------ raw reads
    def _read(self, fmt: str, at: int):
        size = _SCALARS[fmt]
        if at < 0 or at + size > len(self.buf):
            raise FormatError(f"read of {size} bytes at {at} lies outside the {len(self.buf)}-byte "
                              "buffer")
        return struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _field(self, field_id: int) -> int | None:
        """Absolute position of a field's value, or None when the field is absent."""
        vt = self.pos - self._read("i", self.pos)
        vt_size = self._read("H", vt)
        if vt_size < 4 or vt_size % 2:
            raise FormatError(f"bad vtable size {vt_size} at {vt}")
        slot = 4 + 2 * field_id
        if slot + 2 > vt_size:
            return None
        off = self._read("H", vt + slot)
        if off == 0:
            return None
        table_size = self._read("H", vt + 2)
        if off >= table_size:
            raise FormatError(f"field {field_id} offset {off} beyond its table size {table_size}")
        return self.pos + off

    def _deref(self, at: int) -> int:
        target = at + self._read("I", at)
        if target >= len(self.buf):
            raise FormatError(f"reference at {at} points outside the buffer")
        return target

    # ------------------------------------------------------------------ typed fields
    def scalar(self, field_id: int, fmt: str, default=0):
        at = self._field(field_id)
        return default if at is None else self._read(fmt, at)

    def table(self, field_id: int) -> Table | None:
        at = self._field(field_id)
        return None if at is None else table_at(self.buf, self._deref(at))

    def _vector(self, field_id: int, elem_size: int) -> tuple[int, int] | None:
        at = self._field(field_id)
        if at is None:
            return None
        start = self._deref(at)
        n = self._read("I", start)
        if start + 4 + n * elem_size > len(self.buf):
            raise FormatError(f"vector of {n} elements at {start} runs past the end of the buffer")
        return start + 4, n

    def string(self, field_id: int) -> str | None:
        raw = self.bytes(field_id)
        return None if raw is None else raw.decode("utf-8", errors="replace")

    def bytes(self, field_id: int) -> bytes | None:
        vec = self._vector(field_id, 1)
        if vec is None:
            return None
        start, n = vec
        return bytes(self.buf[start:start + n])

    def array(self, field_id: int, dtype: str) -> np.ndarray | None:
        """A vector of scalars as a (copied) little-endian NumPy array."""
        dt = np.dtype(dtype).newbyteorder("<")
        vec = self._vector(field_id, dt.itemsize)
        if vec is None:
            return None
        start, n = vec
        return np.frombuffer(self.buf, dtype=dt, count=n, offset=start).copy()

    def tables(self, field_id: int) -> list[Table]:
        vec = self._vector(field_id, 4)
        if vec is None:
            return []
        start, n = vec
        return [table_at(self.buf, self._deref(start + 4 * i)) for i in range(n)]


def table_at(buf: bytes, pos: int) -> Table:
    if pos < 0 or pos + 4 > len(buf):
        raise FormatError(f"table at {pos} lies outside the buffer")
    return Table(buf, pos)


def root(buf: bytes, identifier: bytes | None = None) -> Table:
    """The root table; checks the 4-byte file identifier when one is given."""
    if len(buf) < 8:
        raise FormatError(f"{len(buf)} bytes is too short for a FlatBuffer")
    if identifier is not None and buf[4:8] != identifier:
        raise FormatError(f"file identifier {bytes(buf[4:8])!r} is not {identifier!r}")
    return table_at(buf, struct.unpack_from("<I", buf, 0)[0])
