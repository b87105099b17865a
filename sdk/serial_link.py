"""The host end of the protocol (edge_sdk.protocol) on a serial port, with one-line errors.

`Link` opens a port with pyserial (a device path such as /dev/ttyACM0 or /dev/pts/3, or any
pyserial URL such as socket://host:port), locks it against other programs, and sends one
request at a time: it waits for the answer with the same type and sequence number, skips
stale answers of an earlier session, and turns every way a device can fail into an EdgeError
that says what happened: no such port, port in use, no answer in time, an answer that fails its
CRC or has the wrong length, or an error status from the device.
"""

from __future__ import annotations

import errno
import time
from typing import Self

from .errors import EdgeError
from .protocol import (
    GAP_MS,
    INFO_BYTES,
    OVERHEAD,
    RESPONSE,
    STATUS_TEXT,
    Frame,
    FrameError,
    Info,
    Status,
    Type,
    encode,
    read_frame,
)

__all__ = ["DEFAULT_BAUD", "DEFAULT_TIMEOUT", "Link"]

DEFAULT_BAUD = 115_200
DEFAULT_TIMEOUT = 3.0  # seconds to wait for an answer, on top of the time on the wire
_POLL = 0.05

_ABSENT = {errno.ENOENT, errno.ENODEV, errno.ENXIO}
_BUSY = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}


def _open(port: str, baud: int):
    try:
        import serial
    except ImportError:
        raise EdgeError("edge-sdk infer needs pyserial: pip install 'edge-sdk[cortexm]' (or "
                        "[fpga])") from None
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=_POLL, exclusive=True)
    except serial.SerialException as exc:
        code = exc.errno if isinstance(exc.errno, int) else None
        if code in _ABSENT:
            raise EdgeError(f"{port}: no such serial port (board not plugged in, or another "
                            "name? Linux: /dev/ttyACM0, /dev/ttyUSB0)") from None
        if code in _BUSY or "lock" in str(exc).lower():
            raise EdgeError(f"{port}: serial port is busy: another program has it open "
                            "(a terminal, a monitor, another edge-sdk infer)") from None
        if code == errno.EACCES:
            raise EdgeError(f"{port}: permission denied (Linux: add yourself to the dialout "
                            "group)") from None
        raise EdgeError(f"{port}: cannot open the serial port: {exc}") from None
    except (ValueError, OSError) as exc:
        raise EdgeError(f"{port}: cannot open the serial port: {exc}") from None


class Link:
    """One open port; use as a context manager so the port is always released."""

    def __init__(self, port: str, baud: int = DEFAULT_BAUD, timeout: float = DEFAULT_TIMEOUT):
        if baud <= 0 or timeout <= 0:
            raise EdgeError(f"baud rate and timeout must be positive, got {baud} and {timeout}")
        self.port, self.baud, self.timeout = port, baud, timeout
        self.ser = _open(port, baud)
        self.seq = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.ser.close()

    def _wire_seconds(self, n_bytes: int) -> float:
        return n_bytes * 10 / self.baud  # 8N1: ten bit times per byte

    def _reader(self, deadline: float):
        def read(n: int) -> bytes:
            while True:
                got = self.ser.read(n)
                if got or time.monotonic() >= deadline:
                    return got

        return read

    def request(self, type_: Type, payload: bytes, answer_bytes: int, what: str) -> Frame:
        """Send one request and return its OK answer (payload checked to be `answer_bytes`)."""
        self.seq = (self.seq + 1) & 0xFF
        frame = encode(type_, self.seq, payload)
        try:
            self.ser.write(frame)
            self.ser.flush()
        except OSError as exc:
            raise EdgeError(f"{self.port}: cannot send {what}: {exc}") from None
        wait = self.timeout + self._wire_seconds(len(frame) + OVERHEAD + answer_bytes)
        read = self._reader(time.monotonic() + wait)
        while True:
            try:
                answer = read_frame(read, answer_bytes)
            except FrameError as exc:
                raise self._error(exc, what, wait, answer_bytes) from None
            except OSError as exc:
                raise EdgeError(f"{self.port}: lost the port while waiting for the answer to "
                                f"{what}: {exc}") from None
            if answer.status == Status.BUSY:
                raise EdgeError(f"{self.port}: answer to {what}: "
                                f"{STATUS_TEXT[Status.BUSY]}")
            if answer.type == type_ | RESPONSE and answer.seq == self.seq:
                break  # otherwise a stale answer to an earlier request: keep reading
        if answer.status != Status.OK:
            text = STATUS_TEXT.get(answer.status, f"unknown status {answer.status}")
            raise EdgeError(f"{self.port}: answer to {what}: {text}")
        if len(answer.payload) != answer_bytes:
            raise EdgeError(f"{self.port}: the answer to {what} has {len(answer.payload)} "
                            f"payload bytes, {answer_bytes} expected (firmware or bitstream of "
                            "another model?)")
        return answer

    def _error(self, exc: FrameError, what: str, wait: float, answer_bytes: int) -> EdgeError:
        if exc.reason == "timeout":
            detail = "" if str(exc) == "no answer" else f" ({exc})"
            return EdgeError(f"{self.port}: no answer to {what} within {wait:.1f} s{detail}; is "
                             "the device running edge-sdk's UART firmware or bitstream (convert "
                             f"--io uart / build) at {self.baud} baud?")
        if exc.reason == "bad_crc":
            return EdgeError(f"{self.port}: the answer to {what} failed its CRC check (line "
                             "noise, or a wrong baud rate?)")
        if exc.reason == "bad_length":
            return EdgeError(f"{self.port}: the answer to {what} has the wrong length ({exc}); "
                             "firmware or bitstream of another model?")
        return EdgeError(f"{self.port}: bad answer to {what}: {exc}")

    def info(self) -> Info:
        """INFO, sent twice if the first gets no answer (the device may have been mid-frame)."""
        self.ser.reset_input_buffer()  # answers of an earlier session
        try:
            answer = self.request(Type.INFO, b"", INFO_BYTES, "INFO")
        except EdgeError as exc:
            if "no answer" not in str(exc):
                raise
            time.sleep(2 * GAP_MS / 1000)  # let the device drop what it had, then retry
            self.ser.reset_input_buffer()
            answer = self.request(Type.INFO, b"", INFO_BYTES, "INFO")
        try:
            return Info.unpack(answer.payload)
        except FrameError as exc:
            raise EdgeError(f"{self.port}: bad INFO answer: {exc}") from None
