"""The WebTransport byte formats: QUIC varints, session-close capsules, bounded NDJSON lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wagerwire.wire.webtransport import (
    CLOSE_SESSION,
    Capsule,
    CapsuleReader,
    LineReader,
    LineTooLong,
    decode_close,
    decode_varint,
    encode_capsule,
    encode_close,
    encode_varint,
)


@pytest.mark.parametrize(("value", "encoded"), [
    (37, b"\x25"), (15293, b"\x7b\xbd"), (494878333, b"\x9d\x7f\x3e\x7d"),
    (151288809941952652, b"\xc2\x19\x7c\x5e\xff\x14\xe8\x8c"),  # RFC 9000 appendix A.1
])
def test_varints_are_rfc_9000(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(encoded) == (value, len(encoded))
    assert decode_varint(encoded[:-1]) is None if len(encoded) > 1 else True


@given(st.integers(min_value=0, max_value=2**62 - 1))
def test_varints_round_trip(value: int) -> None:
    assert decode_varint(encode_varint(value)) == (value, len(encode_varint(value)))


def test_close_capsule_layout_and_reason_cut_on_a_character() -> None:
    capsule = encode_close(4001, "API key revoked")
    assert capsule == b"\x68\x43" + b"\x13" + b"\x00\x00\x0f\xa1" + b"API key revoked"
    [parsed] = CapsuleReader().feed(capsule)
    assert parsed.kind == CLOSE_SESSION and decode_close(parsed.payload) == (4001,
                                                                             "API key revoked")
    long = encode_close(1001, "é" * 1000)  # 2,000 bytes of UTF-8: cut at 1,024, whole chars
    [parsed] = CapsuleReader().feed(long)
    code, reason = decode_close(parsed.payload)
    assert code == 1001 and reason == "é" * 512
    assert decode_close(b"\x00") == (0, "")


def test_capsules_split_across_reads_and_bounded() -> None:
    data = encode_capsule(0x99, b"abc") + encode_close(0, "bye")
    reader = CapsuleReader()
    out: list[Capsule] = []
    for byte in data:
        out += reader.feed(bytes([byte]))
    assert [c.kind for c in out] == [0x99, CLOSE_SESSION]
    with pytest.raises(ValueError):
        CapsuleReader().feed(encode_varint(1) + encode_varint(10**6))


def test_lines_split_join_and_skip_blank_and_carriage_returns() -> None:
    reader = LineReader(100)
    assert reader.feed(b'{"op":"pi') == []
    assert reader.pending == 9
    assert reader.feed(b'ng"}\r\n\n  \n{"op":"x"}\n{"o') == [b'{"op":"ping"}', b'{"op":"x"}']
    assert reader.feed(b'p":1}\n') == [b'{"op":1}']


def test_an_overlong_line_is_reported_once_and_skipped_to_its_newline() -> None:
    reader = LineReader(10)
    out = reader.feed(b"x" * 8)
    out += reader.feed(b"y" * 8)
    out += reader.feed(b"z" * 50)
    out += reader.feed(b'zz\n{"ok":1}\n')
    assert [type(o) for o in out] == [LineTooLong, bytes]
    assert out[1] == b'{"ok":1}'
    assert isinstance(out[0], LineTooLong) and out[0].size == 16
    complete = LineReader(4).feed(b"123456\nab\n")  # over-long and complete in one read
    assert [type(o) for o in complete] == [LineTooLong, bytes]
