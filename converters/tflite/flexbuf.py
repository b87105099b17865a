"""A minimal, bounds-checked FlexBuffers reader for custom-operator options.

TFLite stores the attributes of custom operators (Larq Compute Engine's `LceBconv2d`,
`LceBMaxPool2d`) as a FlexBuffer map in `Operator.custom_options`. Only what those options use
is read: maps, untyped and typed vectors, integers, floats, booleans, strings and keys.
Every position is checked against the buffer; malformed bytes raise `FormatError`.

Layout (FlexBuffers' binary format): the last byte is the root's byte width, the byte before
it the root's packed type (type << 2 | log2 of the child width). Scalars stored inline take
their parent's width; everything else is an unsigned offset back to the data. A vector or map
is preceded by its length; a map also by an offset to its sorted key vector and that
vector's width; untyped vectors and maps end with one packed-type byte per element.
"""

from __future__ import annotations

import struct

from .flatbuf import FormatError

NULL, INT, UINT, FLOAT, KEY, STRING = 0, 1, 2, 3, 4, 5
INDIRECT_INT, INDIRECT_UINT, INDIRECT_FLOAT, MAP, VECTOR = 6, 7, 8, 9, 10
VECTOR_INT, VECTOR_UINT, VECTOR_FLOAT, VECTOR_KEY = 11, 12, 13, 14
BOOL, VECTOR_BOOL = 26, 36
MAX_DEPTH = 8


class _Reader:
    def __init__(self, buf: bytes):
        self.buf = buf

    def uint(self, at: int, width: int) -> int:
        if width not in (1, 2, 4, 8) or at < 0 or at + width > len(self.buf):
            raise FormatError(f"flexbuffer read of {width} bytes at {at} is out of bounds")
        return int.from_bytes(self.buf[at:at + width], "little", signed=False)

    def int(self, at: int, width: int) -> int:
        v = self.uint(at, width)
        return v - (1 << (8 * width)) if v >> (8 * width - 1) else v

    def float(self, at: int, width: int) -> float:
        if width not in (4, 8):
            raise FormatError(f"flexbuffer float of width {width}")
        self.uint(at, width)  # bounds
        return struct.unpack_from("<f" if width == 4 else "<d", self.buf, at)[0]

    def back(self, at: int, width: int) -> int:
        target = at - self.uint(at, width)
        if target < 0 or target >= len(self.buf):
            raise FormatError(f"flexbuffer offset at {at} points outside the buffer")
        return target

    def cstring(self, at: int) -> str:
        end = self.buf.find(b"\0", at)
        if end < 0:
            raise FormatError("unterminated flexbuffer key")
        return self.buf[at:end].decode("utf-8", errors="replace")

    def length(self, at: int, width: int) -> int:
        n = self.uint(at - width, width)
        if n > len(self.buf):
            raise FormatError(f"flexbuffer length {n} exceeds the buffer")
        return n

    def value(self, at: int, parent_width: int, packed: int, depth: int = 0):
        kind, width = packed >> 2, 1 << (packed & 3)
        if depth > MAX_DEPTH:
            raise FormatError("flexbuffer nesting too deep")
        if kind == NULL:
            return None
        if kind == INT:
            return self.int(at, parent_width)
        if kind == UINT:
            return self.uint(at, parent_width)
        if kind == BOOL:
            return bool(self.uint(at, parent_width))
        if kind == FLOAT:
            return self.float(at, parent_width)
        target = self.back(at, parent_width)
        if kind == INDIRECT_INT:
            return self.int(target, width)
        if kind == INDIRECT_UINT:
            return self.uint(target, width)
        if kind == INDIRECT_FLOAT:
            return self.float(target, width)
        if kind == KEY:
            return self.cstring(target)
        if kind == STRING:
            n = self.length(target, width)
            if target + n > len(self.buf):
                raise FormatError("flexbuffer string runs past the end")
            return self.buf[target:target + n].decode("utf-8", errors="replace")
        if kind in (VECTOR_INT, VECTOR_UINT, VECTOR_FLOAT, VECTOR_BOOL, VECTOR_KEY):
            n = self.length(target, width)
            elem = {VECTOR_INT: INT, VECTOR_UINT: UINT, VECTOR_FLOAT: FLOAT,
                    VECTOR_BOOL: BOOL, VECTOR_KEY: KEY}[kind]
            return [self.value(target + i * width, width, elem << 2, depth + 1)
                    for i in range(n)]
        if kind in (VECTOR, MAP):
            n = self.length(target, width)
            types = target + n * width
            if types + n > len(self.buf):
                raise FormatError("flexbuffer vector runs past the end")
            items = [self.value(target + i * width, width, self.buf[types + i], depth + 1)
                     for i in range(n)]
            if kind == VECTOR:
                return items
            keys_at = self.back(target - 3 * width, width)
            keys_width = self.uint(target - 2 * width, width)
            if self.length(keys_at, keys_width) != n:
                raise FormatError("flexbuffer map has a key count different from its values")
            keys = [self.cstring(self.back(keys_at + i * keys_width, keys_width))
                    for i in range(n)]
            return dict(zip(keys, items))
        raise FormatError(f"unsupported flexbuffer type {kind}")


def loads(buf: bytes):
    """Decode a FlexBuffer (as TFLite custom options are stored) into Python values."""
    if len(buf) < 3:
        raise FormatError(f"{len(buf)} bytes is too short for a flexbuffer")
    r = _Reader(bytes(buf))
    width = buf[-1]
    packed = buf[-2]
    return r.value(len(buf) - 2 - width, width, packed)
