"""WebSocket codec tests: raw bytes in, events out; no sockets.

Masked client frames are built by hand (``masked``) and, as an independent check, by the
``websockets`` library's own sans-I/O client.
"""

from __future__ import annotations

import ast
import base64
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.streams import StreamReader
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from wagerwire.errors import CloseCode
from wagerwire.wire.websocket import (
    BinaryMessage,
    CloseReceived,
    FrameReader,
    HandshakeError,
    Ping,
    Pong,
    TextMessage,
    WsEvent,
    WsProtocolError,
    _unmask,
    accept_key,
    binary_frame,
    close_frame,
    handshake_response,
    ping_frame,
    pong_frame,
    text_frame,
    validate_handshake,
)

MASK = b"\x37\xfa\x21\x3d"
SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537]


def masked(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes = MASK,
    masked_bit: bool = True,
) -> bytes:
    """A client frame built by hand, independent of the code under test."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if masked_bit else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = bytes((b0, mbit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, mbit | 127)) + struct.pack("!Q", n)
    if not masked_bit:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def read_all(data: bytes, *, max_message_size: int = 1 << 20) -> list[WsEvent]:
    reader = FrameReader(max_message_size)
    reader.receive_data(data)
    return reader.events_received()


def expect_error(data: bytes, code: int, *, max_message_size: int = 65536) -> WsProtocolError:
    reader = FrameReader(max_message_size)
    with pytest.raises(WsProtocolError) as info:
        reader.receive_data(data)
    assert info.value.close_code == code
    assert reader.closed
    return info.value


def parse_server_frame(data: bytes) -> Frame:
    """Parse one of our frames with websockets' own parser (client side: must be unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


def open_client() -> ClientProtocol:
    """A websockets client that completed its handshake against our handshake functions."""
    client = ClientProtocol(parse_uri("ws://127.0.0.1/v1/ws"))
    request = client.connect()
    client.send_request(request)
    headers = {name.lower(): value for name, value in request.headers.raw_items()}
    key = validate_handshake("GET", headers)
    client.receive_data(handshake_response(key))
    assert client.state is State.OPEN
    assert isinstance(client.events_received()[0], Response)
    client.data_to_send()
    return client


# --------------------------------------------------------------------------- handshake


def test_accept_key_rfc_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


GOOD_HEADERS = {
    "host": "example.com",
    "upgrade": "websocket",
    "connection": "Upgrade",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
}


def test_validate_handshake_accepts_rfc_request() -> None:
    assert validate_handshake("GET", GOOD_HEADERS) == "dGhlIHNhbXBsZSBub25jZQ=="


def test_validate_handshake_tokens_are_case_insensitive_lists() -> None:
    headers = {**GOOD_HEADERS, "upgrade": "WebSocket", "connection": "keep-alive, UPGRADE"}
    assert validate_handshake("GET", headers) == "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.mark.parametrize(
    ("method", "changes", "status", "hint"),
    [
        ("POST", {}, 405, ("Allow", "GET")),
        ("GET", {"upgrade": None}, 426, ("Upgrade", "websocket")),
        ("GET", {"upgrade": "h2c"}, 426, ("Upgrade", "websocket")),
        ("GET", {"connection": None}, 400, None),
        ("GET", {"connection": "keep-alive"}, 400, None),
        ("GET", {"connection": "upgrades"}, 400, None),
        ("GET", {"sec-websocket-version": None}, 426, ("Sec-WebSocket-Version", "13")),
        ("GET", {"sec-websocket-version": "8"}, 426, ("Sec-WebSocket-Version", "13")),
        ("GET", {"sec-websocket-key": None}, 400, None),
        ("GET", {"sec-websocket-key": "not base64!"}, 400, None),
        ("GET", {"sec-websocket-key": base64.b64encode(b"x" * 15).decode()}, 400, None),
        ("GET", {"sec-websocket-key": base64.b64encode(b"x" * 17).decode()}, 400, None),
        (
            "GET",
            {"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==, dGhlIHNhbXBsZSBub25jZQ=="},
            400,
            None,
        ),
        ("GET", {"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQé="}, 400, None),
    ],
)
def test_validate_handshake_errors(
    method: str, changes: dict[str, str | None], status: int, hint: tuple[str, str] | None
) -> None:
    headers = {k: v for k, v in {**GOOD_HEADERS, **changes}.items() if v is not None}
    with pytest.raises(HandshakeError) as info:
        validate_handshake(method, headers)
    assert info.value.status == status
    assert info.value.headers == ((hint,) if hint else ())
    assert info.value.message


def test_handshake_response_bytes() -> None:
    response = handshake_response("dGhlIHNhbXBsZSBub25jZQ==", [("Sec-WebSocket-Protocol", "chat")])
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: chat\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize("header", [("X-A", "b\r\nSet-Cookie: x"), ("X-A\n", "b"), ("X", "\0")])
def test_handshake_response_rejects_header_injection(header: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        handshake_response("dGhlIHNhbXBsZSBub25jZQ==", [header])


def test_handshake_against_websockets_client() -> None:
    open_client()  # asserts the client accepted our 101


# --------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("size", SIZES)
def test_text_and_binary_frames_at_length_boundaries(size: int) -> None:
    payload = b"a" * size
    for encode, opcode in ((text_frame, Opcode.TEXT), (binary_frame, Opcode.BINARY)):
        frame = encode(payload)
        head_len = 2 if size < 126 else 4 if size < 65536 else 10
        assert len(frame) == head_len + size
        assert frame[0] == 0x80 | opcode
        assert frame[1] & 0x80 == 0  # server frames are never masked
        parsed = parse_server_frame(frame)
        assert (parsed.opcode, parsed.data, parsed.fin) == (opcode, payload, True)


def test_small_text_frame_is_header_plus_payload() -> None:
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


def test_control_frames() -> None:
    assert ping_frame() == b"\x89\x00"
    assert ping_frame(b"abc") == b"\x89\x03abc"
    assert pong_frame(b"abc") == b"\x8a\x03abc"
    assert len(ping_frame(b"p" * 125)) == 127
    with pytest.raises(ValueError):
        ping_frame(b"p" * 126)
    with pytest.raises(ValueError):
        pong_frame(b"p" * 126)
    parsed = parse_server_frame(ping_frame(b"xyz"))
    assert (parsed.opcode, parsed.data) == (Opcode.PING, b"xyz")


def test_close_frame() -> None:
    assert close_frame(1000) == b"\x88\x02\x03\xe8"
    assert close_frame(4000, "slow") == b"\x88\x06\x0f\xa0slow"
    assert close_frame(None) == b"\x88\x00"
    parsed = parse_server_frame(close_frame(1001, "restart"))
    close = Close.parse(parsed.data)
    assert (close.code, close.reason) == (1001, "restart")


@pytest.mark.parametrize("char", ["a", "é", "€", "😀"])
def test_close_reason_truncated_on_character_boundary(char: str) -> None:
    frame = close_frame(1008, char * 200)
    payload = frame[2:]
    assert frame[1] == len(payload) <= 125
    reason = payload[2:].decode("utf-8")  # never a split character
    assert reason == char * (123 // len(char.encode()))


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_close_frame_rejects_unsendable_codes(code: int) -> None:
    with pytest.raises(ValueError):
        close_frame(code)


def test_close_frame_reason_needs_code() -> None:
    with pytest.raises(ValueError):
        close_frame(None, "why")


def test_frames_parse_in_websockets_client() -> None:
    client = open_client()
    client.receive_data(
        text_frame("héllo".encode())
        + binary_frame(b"\x00\x01" * 40000)
        + ping_frame(b"p")
        + pong_frame(b"q")
        + close_frame(1001, "bye")
    )
    frames = client.events_received()
    assert [(f.opcode, f.data) for f in frames] == [
        (Opcode.TEXT, "héllo".encode()),
        (Opcode.BINARY, b"\x00\x01" * 40000),
        (Opcode.PING, b"p"),
        (Opcode.PONG, b"q"),
        (Opcode.CLOSE, Close(1001, "bye").serialize()),
    ]


# --------------------------------------------------------------------------- reader: messages


@pytest.mark.parametrize("size", SIZES)
def test_reader_round_trip_at_length_boundaries(size: int) -> None:
    text = "é" * (size // 2) + "a" * (size % 2)
    data = os.urandom(size)
    events = read_all(masked(0x1, text.encode()) + masked(0x2, data))
    assert events == [TextMessage(text), BinaryMessage(data)]


@pytest.mark.parametrize("size", SIZES)
def test_reader_accepts_websockets_serialized_frames(size: int) -> None:
    payload = os.urandom(size)
    frame = Frame(Opcode.BINARY, payload).serialize(mask=True)
    assert read_all(frame) == [BinaryMessage(payload)]


def test_reader_handles_websockets_client_output() -> None:
    client = open_client()
    client.send_text(b"first")
    client.send_binary(b"\x00" * 300)
    client.send_text(b"frag", fin=False)
    client.send_ping(b"interleaved")
    client.send_continuation("mé".encode(), fin=False)
    client.send_pong(b"unsolicited")
    client.send_continuation(b"nt", fin=True)
    client.send_close(CloseCode.GOING_AWAY, "leaving")
    reader = FrameReader()
    for chunk in client.data_to_send():
        reader.receive_data(chunk)
    assert reader.events_received() == [
        TextMessage("first"),
        BinaryMessage(b"\x00" * 300),
        Ping(b"interleaved"),
        Pong(b"unsolicited"),
        TextMessage("fragmént"),
        CloseReceived(1001, "leaving"),
    ]


def test_fragmented_message_with_interleaved_control_frames() -> None:
    stream = (
        masked(0x1, b"Hel", fin=False)
        + masked(0x9, b"ping")
        + masked(0x0, b"lo ", fin=False)
        + masked(0xA, b"")
        + masked(0x0, b"world", fin=True)
        + masked(0x2, b"\x01", fin=False)
        + masked(0x0, b"\x02", fin=True)
    )
    assert read_all(stream) == [
        Ping(b"ping"),
        Pong(b""),
        TextMessage("Hello world"),
        BinaryMessage(b"\x01\x02"),
    ]


def test_fragment_boundary_inside_utf8_character() -> None:
    raw = "😀".encode()
    stream = masked(0x1, raw[:1], fin=False) + masked(0x0, raw[1:3], fin=False)
    stream += masked(0x0, raw[3:], fin=True)
    assert read_all(stream) == [TextMessage("😀")]


def test_empty_fragments() -> None:
    stream = masked(0x1, b"", fin=False) + masked(0x0, b"", fin=False) + masked(0x0, b"")
    assert read_all(stream) == [TextMessage("")]


def test_many_frames_in_one_chunk() -> None:
    stream = b"".join(masked(0x1, f"m{i}".encode()) for i in range(1000))
    assert read_all(stream) == [TextMessage(f"m{i}") for i in range(1000)]


def test_events_are_drained() -> None:
    reader = FrameReader()
    reader.receive_data(masked(0x9, b"a"))
    assert reader.events_received() == [Ping(b"a")]
    assert reader.events_received() == []


def test_split_at_every_byte() -> None:
    stream = (
        masked(0x1, b"a" * 200, fin=False)
        + masked(0x9, b"p")
        + masked(0x0, "é".encode() * 40000)
        + masked(0x8, b"\x03\xe8done")
    )
    expected = [Ping(b"p"), TextMessage("a" * 200 + "é" * 40000), CloseReceived(1000, "done")]
    for cut in range(len(stream) + 1):
        if 300 < cut < len(stream) - 300:
            continue  # the interesting boundaries are the headers at both ends
        reader = FrameReader(1 << 20)
        reader.receive_data(stream[:cut])
        reader.receive_data(stream[cut:])
        assert reader.events_received() == expected
    reader = FrameReader(1 << 20)
    for i in range(len(stream)):
        reader.receive_data(stream[i : i + 1])
    assert reader.events_received() == expected


# --------------------------------------------------------------------------- reader: hypothesis

control_frames = st.one_of(
    st.binary(max_size=125).map(lambda p: (masked(0x9, p), Ping(p))),
    st.binary(max_size=125).map(lambda p: (masked(0xA, p), Pong(p))),
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, list[WsEvent]]:
    """One data message, possibly fragmented, with control frames between its fragments."""
    is_text = draw(st.booleans())
    if is_text:
        text = draw(st.text(max_size=300))
        raw = text.encode()
        event: WsEvent = TextMessage(text)
    else:
        raw = draw(st.binary(max_size=300))
        event = BinaryMessage(raw)
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    stream = b""
    events: list[WsEvent] = []
    for i, piece in enumerate(pieces):
        opcode = (0x1 if is_text else 0x2) if i == 0 else 0x0
        mask = draw(st.binary(min_size=4, max_size=4))
        stream += masked(opcode, piece, fin=i == len(pieces) - 1, mask=mask)
        if i < len(pieces) - 1:
            for frame, control in draw(st.lists(control_frames, max_size=2)):
                stream += frame
                events.append(control)
    events.append(event)
    return stream, events


@given(
    parts=st.lists(messages(), min_size=1, max_size=6),
    splits=st.lists(st.integers(min_value=0, max_value=5000), max_size=20),
)
@settings(max_examples=300, deadline=None)
def test_any_stream_split_anywhere(
    parts: list[tuple[bytes, list[WsEvent]]], splits: list[int]
) -> None:
    stream = b"".join(p[0] for p in parts)
    expected = [e for p in parts for e in p[1]]
    cuts = sorted({min(s, len(stream)) for s in splits})
    reader = FrameReader()
    events: list[WsEvent] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        reader.receive_data(stream[a:b])
        events += reader.events_received()
    assert events == expected


@given(data=st.binary(max_size=2000), mask=st.binary(min_size=4, max_size=4))
def test_unmask_matches_websockets(data: bytes, mask: bytes) -> None:
    assert _unmask(data, mask) == apply_mask(data, mask)
    assert _unmask(bytearray(data), bytearray(mask)) == apply_mask(data, mask)


# --------------------------------------------------------------------------- reader: close


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_close_with_valid_codes(code: int) -> None:
    payload = code.to_bytes(2, "big") + "reasön".encode()
    assert read_all(masked(0x8, payload)) == [CloseReceived(code, "reasön")]


def test_close_without_payload() -> None:
    assert read_all(masked(0x8, b"")) == [CloseReceived(None, "")]


def test_data_after_close_is_ignored() -> None:
    reader = FrameReader()
    reader.receive_data(masked(0x8, b"\x03\xe8") + masked(0x1, b"late") + b"\xff\xff")
    reader.receive_data(b"garbage that would be a protocol error")
    assert reader.events_received() == [CloseReceived(1000, "")]
    assert reader.closed


# --------------------------------------------------------------------------- reader: errors


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        pytest.param(masked(0x1, b"x", masked_bit=False), 1002, id="unmasked"),
        pytest.param(masked(0x1, b"x", rsv=0x40), 1002, id="rsv1"),
        pytest.param(masked(0x1, b"x", rsv=0x20), 1002, id="rsv2"),
        pytest.param(masked(0x1, b"x", rsv=0x10), 1002, id="rsv3"),
        *[pytest.param(masked(op, b""), 1002, id=f"opcode-{op:#x}") for op in (3, 4, 5, 6, 7)],
        *[pytest.param(masked(op, b""), 1002, id=f"opcode-{op:#x}") for op in range(0xB, 0x10)],
        pytest.param(masked(0x9, b"p", fin=False), 1002, id="fragmented-ping"),
        pytest.param(masked(0x8, b"", fin=False), 1002, id="fragmented-close"),
        pytest.param(masked(0x9, b"p" * 126), 1002, id="ping-126"),
        pytest.param(masked(0xA, b"p" * 126), 1002, id="pong-126"),
        pytest.param(masked(0x8, b"\x03\xe8" + b"r" * 124), 1002, id="close-126"),
        pytest.param(masked(0x0, b"x"), 1002, id="continuation-first"),
        pytest.param(masked(0x1, b"a", fin=False) + masked(0x1, b"b"), 1002, id="text-in-text"),
        pytest.param(masked(0x2, b"a", fin=False) + masked(0x2, b"b"), 1002, id="bin-in-bin"),
        pytest.param(masked(0x1, b"\xff"), 1007, id="bad-utf8"),
        pytest.param(masked(0x1, b"\xed\xa0\x80"), 1007, id="surrogate"),
        pytest.param(masked(0x1, "é".encode()[:1]), 1007, id="truncated-utf8"),
        pytest.param(masked(0x1, b"ok\xff", fin=False), 1007, id="bad-utf8-first-fragment"),
        pytest.param(
            masked(0x1, "é".encode()[:1], fin=False) + masked(0x0, b""), 1007, id="cut-at-end"
        ),
        pytest.param(masked(0x8, b"\x03"), 1002, id="close-one-byte"),
        pytest.param(masked(0x8, b"\x03\xe8\xff"), 1007, id="close-bad-reason"),
        *[
            pytest.param(masked(0x8, c.to_bytes(2, "big")), 1002, id=f"close-code-{c}")
            for c in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)
        ],
        pytest.param(b"\x82\xff" + b"\x80" + b"\x00" * 7, 1002, id="length-top-bit"),
    ],
)
def test_protocol_errors(stream: bytes, code: int) -> None:
    expect_error(stream, code)


def test_message_size_limit_exact() -> None:
    assert read_all(masked(0x2, b"x" * 65536), max_message_size=65536) == [
        BinaryMessage(b"x" * 65536)
    ]
    expect_error(masked(0x2, b"x" * 65537), 1009, max_message_size=65536)
    expect_error(masked(0x1, b"x" * 11), 1009, max_message_size=10)


def test_too_big_rejected_from_header_alone() -> None:
    header = b"\x82\xff" + (1 << 40).to_bytes(8, "big")  # 1 TiB announced, no payload sent
    err = expect_error(header, 1009)
    assert err.close_code is CloseCode.MESSAGE_TOO_BIG
    header16 = b"\x81\xfe" + (70000 - 65536).to_bytes(2, "big")  # 4464 bytes announced
    expect_error(header16, 1009, max_message_size=4000)


def test_too_big_fragmented_total_rejected_at_continuation_header() -> None:
    reader = FrameReader(max_message_size=100)
    reader.receive_data(masked(0x1, b"a" * 60, fin=False))
    with pytest.raises(WsProtocolError) as info:
        reader.receive_data(masked(0x0, b"a" * 41)[:6])  # header + mask only
    assert info.value.close_code == 1009


def test_too_big_rejected_when_header_arrives_byte_by_byte() -> None:
    reader = FrameReader(max_message_size=1000)
    header = b"\x82\xfe" + (1001).to_bytes(2, "big")
    reader.receive_data(header[:1])
    reader.receive_data(header[1:2])
    reader.receive_data(header[2:3])
    with pytest.raises(WsProtocolError) as info:
        reader.receive_data(header[3:])
    assert info.value.close_code == 1009


def test_events_before_error_stay_queued_and_later_data_is_ignored() -> None:
    reader = FrameReader()
    with pytest.raises(WsProtocolError):
        reader.receive_data(masked(0x1, b"ok") + masked(0x1, b"x", masked_bit=False))
    assert reader.events_received() == [TextMessage("ok")]
    reader.receive_data(masked(0x1, b"after"))
    assert reader.events_received() == []


def test_protocol_error_is_a_client_error() -> None:
    err = expect_error(masked(0x1, b"\xff"), 1007)
    assert err.close_code is CloseCode.INVALID_PAYLOAD
    assert err.code == "ws_protocol_error"
    assert err.message


# --------------------------------------------------------------------------- sans-I/O rule


@pytest.mark.parametrize("module", ["__init__", "websocket", "sse", "sse_parser"])
def test_wire_modules_do_no_io(module: str) -> None:
    import wagerwire.wire

    source = Path(wagerwire.wire.__file__).with_name(f"{module}.py").read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"asyncio", "socket", "selectors", "time", "datetime", "threading"}
