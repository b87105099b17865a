"""The host <-> device frame protocol, specified once: Cortex-M firmware, FPGA wrapper and host.

`edge-sdk infer` sends one input sample per request over a serial line (8N1, 115200 baud by
default) and reads one answer per request. The same bytes go to the Cortex-M firmware
(firmware/common/link.c) and to the FPGA's framed UART (hw/framed_uart.py); both are tested
against this module. The FPGA can also take the same frames over SPI (hw/spi.py), where chip
select going high ends a frame instead of GAP_MS of quiet and the host polls for the answer;
that module's docstring holds its transaction rules.

Frame (all multi-byte fields little-endian)::

    offset  size  field
    0       2     sync     0xED 0x5A
    2       1     type     request: 0x01 INFO, 0x02 INFER; answer: request type | 0x80
    3       1     seq      chosen by the host, echoed in the answer
    4       1     status   0 in requests; in answers one of `Status`
    5       4     length   N, payload bytes
    9       N     payload
    9+N     4     crc      CRC-32 of bytes 2 .. 9+N-1 (type through payload)

CRC-32 is the ISO-HDLC / zlib / Ethernet one (reflected polynomial 0xEDB88320, init and final
XOR 0xFFFFFFFF; check value 0xCBF43926). Why CRC-32 rather than CRC-16/CCITT: payloads reach
kilobytes (a 1024-element int16 input is 2 KiB), where CRC-16's Hamming distance 4 ends (about
4 KiB) and its 1-in-65536 miss rate for random corruption is high for a test link that must never
return wrong numbers silently; CRC-32 keeps distance 4 up to about 11 KiB, misses 1 in 4e9, costs
32 flip-flops and a byte-wide XOR network in the FPGA and 8 shifts per byte on the MCU, and
Python's zlib computes it, so hosts need nothing special.

Requests:
    INFO   empty payload. Answer payload (12 bytes): version u8 (1), device u8 (1 Cortex-M
           firmware, 2 FPGA), in_item u8 (bytes per input element on the MCU, bytes per input
           beat on the FPGA), flags u8 (bit 0: input elements are signed), in_bytes u32 (INFER
           request payload), out_bytes u32 (INFER answer payload). The host checks these against
           the build folder before sending data.
    INFER  payload: one sample in the target's input layout (Cortex-M: EDGE_IN_SIZE elements of
           EDGE_IN_T; FPGA: the input beats, ceil(width / 8) bytes each, as edge_net.json lays them
           out). Answer payload: the outputs (Cortex-M: EDGE_OUT_SIZE int32; FPGA: the output
           beats, 4 bytes per lane).

Device rules (what makes the statuses meaningful):
    - It hunts for the sync bytes, then reads the header; a length other than the request's
      (INFO: 0, INFER: in_bytes) is answered BAD_LENGTH, an unknown type BAD_TYPE, a CRC that
      does not match BAD_CRC; error answers have an empty payload and the request's type | 0x80
      and seq, and are sent only after the line has been quiet for `GAP_MS` (so the rest of a
      damaged frame cannot be read as a new one).
    - A gap longer than `GAP_MS` inside a frame drops the partial frame without an answer.
    - Bytes that arrive while the device computes or answers can be lost (an MCU's UART holds
      one byte; the FPGA drops them; QEMU holds them back instead). When the device notices, it
      waits for quiet and sends one BUSY answer (type 0x80, seq 0). The host sends one request
      at a time and waits for its answer, so BUSY means something else talks on the line.
    - MODEL_ERROR: the model itself failed (edge_model_run returned non-zero).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CRC_BYTES",
    "GAP_MS",
    "HEADER_BYTES",
    "INFO_BYTES",
    "OVERHEAD",
    "RESPONSE",
    "SYNC",
    "VERSION",
    "Device",
    "Frame",
    "FrameError",
    "FrameParser",
    "Info",
    "Status",
    "Type",
    "crc32",
    "decode",
    "encode",
    "read_frame",
]

SYNC = b"\xed\x5a"
HEADER_BYTES = 9  # sync, type, seq, status, length
CRC_BYTES = 4
OVERHEAD = HEADER_BYTES + CRC_BYTES
RESPONSE = 0x80  # answer type = request type | RESPONSE
VERSION = 1
GAP_MS = 50  # quiet time that ends a damaged frame (device side)
INFO_BYTES = 12
MAX_LENGTH = 0xFFFF_FFFF

_HEADER = struct.Struct("<2sBBBI")
_INFO = struct.Struct("<BBBBII")


class Type(IntEnum):
    INFO = 0x01
    INFER = 0x02


class Status(IntEnum):
    OK = 0
    BAD_CRC = 1
    BAD_LENGTH = 2
    BUSY = 3
    BAD_TYPE = 4
    MODEL_ERROR = 5


class Device(IntEnum):
    CORTEX_M = 1
    FPGA = 2


STATUS_TEXT = {
    Status.OK: "ok",
    Status.BAD_CRC: "the device received a frame whose CRC did not match (line noise or a "
                    "wrong baud rate)",
    Status.BAD_LENGTH: "the device refused the frame's length (firmware/bitstream built for "
                       "another model?)",
    Status.BUSY: "the device received bytes while it was busy (another program on the port?)",
    Status.BAD_TYPE: "the device does not know the request type (older firmware?)",
    Status.MODEL_ERROR: "the model failed on the device (edge_model_run returned an error)",
}


class FrameError(ValueError):
    """A byte sequence that is not a valid frame; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    """One decoded frame; `type` and `status` are raw bytes (a device may send unknown ones)."""

    type: int
    seq: int
    status: int
    payload: bytes

    def encode(self) -> bytes:
        return encode(self.type, self.seq, self.payload, self.status)


@dataclass(frozen=True)
class Info:
    """The INFO answer: what the device computes and the sizes it expects."""

    device: int
    in_item: int
    signed: bool
    in_bytes: int
    out_bytes: int
    version: int = VERSION

    def pack(self) -> bytes:
        return _INFO.pack(self.version, self.device, self.in_item, int(self.signed),
                          self.in_bytes, self.out_bytes)

    @classmethod
    def unpack(cls, payload: bytes) -> Info:
        if len(payload) != INFO_BYTES:
            raise FrameError("bad_length", f"INFO answer of {len(payload)} bytes, expected "
                                           f"{INFO_BYTES}")
        version, device, in_item, flags, in_bytes, out_bytes = _INFO.unpack(payload)
        return cls(device, in_item, bool(flags & 1), in_bytes, out_bytes, version)


def crc32(data: bytes, crc: int = 0) -> int:
    """CRC-32/ISO-HDLC (zlib's); `crc` continues a previous value."""
    return zlib.crc32(data, crc) & 0xFFFF_FFFF


def encode(type_: int, seq: int, payload: bytes = b"", status: int = 0) -> bytes:
    """One frame. Raises ValueError for fields out of range (a bug in the caller)."""
    for name, value in (("type", type_), ("seq", seq), ("status", status)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} {value} does not fit a byte")
    payload = bytes(payload)
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the 32-bit length field")
    head = _HEADER.pack(SYNC, type_, seq, status, len(payload))
    return head + payload + struct.pack("<I", crc32(head[2:] + payload))


def decode(data: bytes) -> Frame:
    """Exactly one frame from `data`; FrameError says what is wrong with it."""
    data = bytes(data)
    if len(data) < OVERHEAD:
        raise FrameError("truncated", f"{len(data)} bytes are too few for a frame "
                                      f"({OVERHEAD} at least)")
    sync, type_, seq, status, length = _HEADER.unpack_from(data)
    if sync != SYNC:
        raise FrameError("bad_sync", f"frame starts with {sync.hex()}, not {SYNC.hex()}")
    if len(data) != OVERHEAD + length:
        raise FrameError("bad_length", f"length field says {length} payload bytes, the frame "
                                       f"holds {len(data) - OVERHEAD}")
    body = data[2:HEADER_BYTES + length]
    (got,) = struct.unpack_from("<I", data, HEADER_BYTES + length)
    if got != crc32(body):
        raise FrameError("bad_crc", f"CRC {got:08x} does not match the frame's "
                                    f"{crc32(body):08x}")
    return Frame(type_, seq, status, data[HEADER_BYTES:HEADER_BYTES + length])


def read_frame(read: Callable[[int], bytes], max_length: int) -> Frame:
    """Read one frame with `read(n)` (a serial port's: fewer bytes means it timed out).

    Bytes before the sync are skipped. FrameError reasons: "timeout" (the line went quiet; the
    message says how far the frame got), "bad_length" (length field above `max_length`, so the
    rest is not waited for), "bad_crc".
    """
    window = b""
    skipped = 0
    while window != SYNC:
        byte = read(1)
        if not byte:
            what = f" after {skipped} bytes that were not a frame" if skipped else ""
            raise FrameError("timeout", f"no answer{what}")
        window = (window + byte)[-2:]
        skipped += 1
    head = _read_exact(read, HEADER_BYTES - 2, "a frame header")
    length = struct.unpack_from("<I", head, 3)[0]
    if length > max_length:
        raise FrameError("bad_length", f"answer announces {length} payload bytes, at most "
                                       f"{max_length} expected")
    rest = _read_exact(read, length + CRC_BYTES, f"an answer of {length} payload bytes")
    return decode(SYNC + head + rest)


def _read_exact(read: Callable[[int], bytes], n: int, what: str) -> bytes:
    got = b""
    while len(got) < n:
        more = read(n - len(got))
        if not more:
            raise FrameError("timeout", f"the line went quiet after {len(got)} of the {n} "
                                        f"bytes of {what}")
        got += more
    return got


class FrameParser:
    """Incremental parser for a byte stream (the devices' view): `feed` yields what it finds.

    Yields a `Frame` for each valid frame and a `FrameError` (not raised) for each damaged one;
    after an error it hunts for the next sync, one byte after the damaged frame's start.
    `max_length` bounds the payload a header may announce (larger: a "bad_length" error).
    """

    def __init__(self, max_length: int = 1 << 20):
        self.max_length = max_length
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame | FrameError]:
        self.buf += data
        while True:
            start = self.buf.find(SYNC)
            if start < 0:
                del self.buf[:max(0, len(self.buf) - 1)]  # keep a possible first sync byte
                return
            del self.buf[:start]
            if len(self.buf) < HEADER_BYTES:
                return
            length = struct.unpack_from("<I", self.buf, 5)[0]
            if length > self.max_length:
                del self.buf[:1]
                yield FrameError("bad_length", f"header announces {length} payload bytes, "
                                               f"at most {self.max_length} allowed")
                continue
            end = OVERHEAD + length
            if len(self.buf) < end:
                return
            try:
                frame = decode(bytes(self.buf[:end]))
            except FrameError as exc:
                del self.buf[:1]
                yield exc
                continue
            del self.buf[:end]
            yield frame
