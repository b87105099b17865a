"""The frame protocol (sdk/protocol.py): layout by hand, round trips, corruption, stream parsing.

Expected bytes come from the spec written out here (a bitwise CRC-32 in the test, the catalogue
check value), never from the encoder under test.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk import protocol as P


def bitwise_crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC the slow way: reflected 0xEDB88320, init and final XOR all ones."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def by_hand(type_: int, seq: int, status: int, payload: bytes) -> bytes:
    body = bytes([type_, seq, status]) + len(payload).to_bytes(4, "little") + payload
    return b"\xed\x5a" + body + bitwise_crc32(body).to_bytes(4, "little")


def test_crc_check_value():
    assert P.crc32(b"123456789") == 0xCBF43926 == bitwise_crc32(b"123456789")


def test_info_request_bytes():
    frame = P.encode(P.Type.INFO, 7)
    assert frame[:9] == bytes.fromhex("ed5a 01 07 00 00000000".replace(" ", ""))
    assert frame == by_hand(1, 7, 0, b"")
    assert len(frame) == P.OVERHEAD


def test_info_payload_layout():
    info = P.Info(device=1, in_item=2, signed=True, in_bytes=128, out_bytes=40)
    assert info.pack() == bytes([1, 1, 2, 1]) + struct.pack("<II", 128, 40)
    assert P.Info.unpack(info.pack()) == info
    with pytest.raises(P.FrameError):
        P.Info.unpack(b"\x01" * 11)


frames = st.builds(P.Frame, type=st.integers(0, 255), seq=st.integers(0, 255),
                   status=st.integers(0, 255), payload=st.binary(max_size=300))


@given(frames)
def test_round_trip_and_layout(frame):
    data = frame.encode()
    assert data == by_hand(frame.type, frame.seq, frame.status, frame.payload)
    assert P.decode(data) == frame


@given(frames, st.data())
def test_any_single_byte_corruption_is_detected(frame, data):
    raw = bytearray(frame.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(P.FrameError):
        P.decode(bytes(raw))


@given(frames, st.data())
def test_bursts_up_to_32_bits_are_caught_by_the_crc(frame, data):
    raw = bytearray(frame.encode())
    # same-size damage anywhere the CRC covers except the length field (type, seq, status,
    # payload) or in the CRC itself: only the CRC can catch it
    spans = [(2, 5), (P.HEADER_BYTES, len(raw))]
    lo, hi = data.draw(st.sampled_from(spans))
    start = data.draw(st.integers(lo, hi - 1))
    width = data.draw(st.integers(1, min(4, hi - start)))
    noise = data.draw(st.binary(min_size=width, max_size=width).filter(any))
    for k in range(width):
        raw[start + k] ^= noise[k]
    with pytest.raises(P.FrameError) as e:
        P.decode(bytes(raw))
    assert e.value.reason == "bad_crc"


def test_decode_reasons():
    good = P.encode(P.Type.INFER, 1, b"abc")
    with pytest.raises(P.FrameError) as e:
        P.decode(good[:-1])
    assert e.value.reason == "bad_length"
    with pytest.raises(P.FrameError) as e:
        P.decode(b"\x00" + good[1:])
    assert e.value.reason == "bad_sync"
    with pytest.raises(P.FrameError) as e:
        P.decode(good[:5])
    assert e.value.reason == "truncated"
    with pytest.raises(ValueError):
        P.encode(256, 0)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.binary(max_size=20), frames), min_size=1, max_size=6))
def test_parser_finds_frames_between_garbage_in_any_chunking(items):
    stream = b"".join(garbage.replace(b"\xed", b"") + f.encode() for garbage, f in items)
    parser = P.FrameParser()
    found = []
    for k in range(0, len(stream), 7):
        found += list(parser.feed(stream[k:k + 7]))
    assert [f for f in found if isinstance(f, P.Frame)] == [f for _, f in items]


def test_parser_reports_a_damaged_frame_and_recovers():
    a, b = P.encode(2, 1, b"hello"), P.encode(2, 2, b"world")
    bad = bytearray(a)
    bad[10] ^= 0x40
    got = list(P.FrameParser().feed(bytes(bad) + b))
    assert isinstance(got[0], P.FrameError) and got[0].reason == "bad_crc"
    assert got[-1] == P.decode(b)
    too_long = list(P.FrameParser(max_length=8).feed(P.encode(2, 3, b"x" * 9)))
    assert too_long and too_long[0].reason == "bad_length"


def reader(data: bytes, chunk: int = 3):
    """A read(n) that returns at most `chunk` bytes per call and b'' at the end (a timeout)."""
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        out = data[pos:pos + min(n, chunk)]
        pos += len(out)
        return out

    return read


def test_read_frame_skips_noise_and_times_out_clearly():
    frame = P.encode(0x82, 9, b"\x01\x02\x03\x04", status=0)
    assert P.read_frame(reader(b"\x00\xed\x13" + frame), 16) == P.decode(frame)
    with pytest.raises(P.FrameError) as e:
        P.read_frame(reader(frame[:12]), 16)
    assert e.value.reason == "timeout" and "3 of the 8" in str(e.value)
    with pytest.raises(P.FrameError) as e:
        P.read_frame(reader(b""), 16)
    assert e.value.reason == "timeout" and str(e.value) == "no answer"
    with pytest.raises(P.FrameError) as e:
        P.read_frame(reader(frame), 3)
    assert e.value.reason == "bad_length"
    bad = bytearray(frame)
    bad[-1] ^= 1
    with pytest.raises(P.FrameError) as e:
        P.read_frame(reader(bytes(bad)), 16)
    assert e.value.reason == "bad_crc"
