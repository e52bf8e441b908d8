"""Properties of the byte codecs (WebSocket frames, SSE, HTTP stream heads) under hypothesis.

The fuzzers (``make fuzz``) explore these parsers by coverage; these properties pin the
invariants in ``make test``: chunking never changes a parse, encoded frames read back, every
error is the documented one, and the strict head parser agrees with httptools.
"""

from __future__ import annotations

import os
import struct

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from wagerwire.wire.http_head import parse_query, parse_stream_head
from wagerwire.wire.sse_parser import SseMessage, SseParser
from wagerwire.wire.websocket import (
    BinaryMessage,
    FrameReader,
    Ping,
    Pong,
    TextMessage,
    WsEvent,
    WsProtocolError,
    binary_frame,
    ping_frame,
    pong_frame,
    text_frame,
)

FAST = settings(max_examples=100, deadline=1000)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (any values; clamped, sorted, deduplicated)."""
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def mask(frame: bytes, key: bytes) -> bytes:
    """A server frame (unmasked) as a client would send it: mask bit, key, XORed payload."""
    length = frame[1] & 0x7F
    header = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    payload = frame[header:]
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes((frame[0], frame[1] | 0x80)) + frame[2:header] + key + masked


def client_frame(opcode: int, payload: bytes, *, fin: bool, key: bytes) -> bytes:
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0xFE, n)
    else:
        head = struct.pack("!BBQ", b0, 0xFF, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read(chunks: list[bytes], max_size: int = 1 << 20) -> tuple[list[WsEvent], int | None]:
    reader = FrameReader(max_message_size=max_size)
    events: list[WsEvent] = []
    for chunk in chunks:
        try:
            reader.receive_data(chunk)
        except WsProtocolError as exc:
            return events + reader.events_received(), int(exc.close_code)
        events += reader.events_received()
    return events, None


keys = st.binary(min_size=4, max_size=4)
cuts = st.lists(st.integers(0, 70_000), max_size=12)


# --------------------------------------------------------------------------- WebSocket


@FAST
@given(
    payload=st.one_of(st.binary(max_size=300), st.sampled_from([b"x" * 125, b"y" * 126,
                                                                b"z" * 65535, b"w" * 65536])),
    kind=st.sampled_from(["text", "binary", "ping", "pong"]),
    key=keys,
    cut=cuts,
)
def test_encoded_frames_read_back_in_any_chunking(
    payload: bytes, kind: str, key: bytes, cut: list[int]
) -> None:
    if kind == "text":
        text = payload.decode("latin-1")
        frame, expected = text_frame(text.encode()), TextMessage(text)
    elif kind == "binary":
        frame, expected = binary_frame(payload), BinaryMessage(payload)
    else:
        payload = payload[:125]
        frame = ping_frame(payload) if kind == "ping" else pong_frame(payload)
        expected = Ping(payload) if kind == "ping" else Pong(payload)
    wire = mask(frame, key)
    assert read(split(wire, cut)) == ([expected], None)


@FAST
@given(
    text=st.text(max_size=200),
    binary=st.booleans(),
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=8),
    pings=st.lists(st.binary(max_size=20), max_size=8),
    key=keys,
    cut=cuts,
)
def test_fragmented_messages_join_across_any_boundary(
    text: str, binary: bool, sizes: list[int], pings: list[bytes], key: bytes, cut: list[int]
) -> None:
    """Fragments cut anywhere (inside a UTF-8 character too), control frames between them."""
    data = text.encode()
    parts: list[bytes] = []
    pos = 0
    for size in sizes:
        parts.append(data[pos : pos + size])
        pos += size
    parts[-1] += data[pos:]
    wire = b""
    expected: list[WsEvent] = []
    for i, part in enumerate(parts):
        opcode = (0x2 if binary else 0x1) if i == 0 else 0x0
        wire += client_frame(opcode, part, fin=i == len(parts) - 1, key=key)
        if i < len(pings) and i < len(parts) - 1:
            wire += client_frame(0x9, pings[i], fin=True, key=key)
            expected.append(Ping(pings[i]))
    expected.append(BinaryMessage(data) if binary else TextMessage(text))
    assert read(split(wire, cut)) == (expected, None)


@FAST
@given(data=st.binary(max_size=400), cut=st.lists(st.integers(0, 400), max_size=12),
       max_size=st.integers(0, 300))
def test_any_bytes_read_alike_in_any_chunking_and_fail_only_as_documented(
    data: bytes, cut: list[int], max_size: int
) -> None:
    whole = read([data], max_size)
    assert read(split(data, cut), max_size) == whole
    if whole[1] is not None:
        assert whole[1] in {1002, 1007, 1009}


# --------------------------------------------------------------------------- SSE


def sse(chunks: list[bytes]) -> tuple[list[SseMessage], str, int | None]:
    parser = SseParser()
    events: list[SseMessage] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events, parser.last_event_id, parser.retry


sse_lines = st.lists(
    st.one_of(
        st.sampled_from(["", "data", "data:", ":c", "retry: 10", "retry:x", "id", "id: 1"]),
        st.tuples(st.sampled_from(["data", "event", "id", "retry", "other", ""]),
                  st.sampled_from([":", ": ", ""]),
                  st.text(max_size=12)).map("".join),
    ),
    max_size=20,
)


@FAST
@given(
    lines=sse_lines,
    ends=st.lists(st.sampled_from(["\n", "\r", "\r\n"]), min_size=1, max_size=20),
    bom=st.booleans(),
    noise=st.binary(max_size=30),
    cut=st.lists(st.integers(0, 600), max_size=15),
)
def test_sse_parses_alike_in_any_chunking(
    lines: list[str], ends: list[str], bom: bool, noise: bytes, cut: list[int]
) -> None:
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    stream = ("\ufeff" if bom else "").encode() + text.encode() + noise
    assert sse(split(stream, cut)) == sse([stream])


@FAST
@given(data=st.binary(max_size=300), cut=st.lists(st.integers(0, 300), max_size=12))
def test_sse_parses_any_bytes_alike_in_any_chunking(data: bytes, cut: list[int]) -> None:
    assert sse(split(data, cut)) == sse([data])


# --------------------------------------------------------------------------- HTTP heads

token = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~",
                min_size=1, max_size=12)
value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"),
                max_size=20)
target = st.text("abcz09-._~!$&'()*+,;=:@%/?", max_size=30).map(lambda t: "/" + t)


@FAST
@given(path=target, headers=st.lists(st.tuples(token, value), max_size=8))
def test_strict_head_parser_agrees_with_httptools(
    path: str, headers: list[tuple[str, str]]
) -> None:
    head = "".join(f"{n}:{v}\r\n" for n, v in headers)
    data = f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()
    parsed = parse_stream_head(data, 65536)
    if parsed is None:
        return
    seen: dict[str, str] = {}
    url = b""
    done = False

    class Callbacks:
        def on_url(self, chunk: bytes) -> None:
            nonlocal url
            url += chunk

        def on_header(self, name: bytes, raw: bytes) -> None:
            key, text = name.decode().lower(), raw.decode().rstrip(" \t")
            seen[key] = f"{seen[key]}, {text}" if key in seen else text

        def on_message_complete(self) -> None:
            nonlocal done
            done = True

    try:
        httptools.HttpRequestParser(Callbacks()).feed_data(data)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        raise AssertionError(f"fast path took a head httptools refuses: {data!r}") from None
    assert done
    assert parsed.headers == seen
    assert parsed.query_string == (httptools.parse_url(url).query or b"")


@FAST
@given(data=st.one_of(st.binary(max_size=300),
                      st.builds(lambda b: b"GET /" + b + b" HTTP/1.1\r\n\r\n",
                                st.binary(max_size=60))))
def test_strict_head_parser_declines_instead_of_raising(data: bytes) -> None:
    head = parse_stream_head(data, 256)
    if head is not None:
        assert len(data) <= 256 and head.path.startswith("/")
    parse_query(data.decode("latin-1"))


def test_split_helper() -> None:
    data = os.urandom(50)
    assert b"".join(split(data, [40, 3, 3, 99])) == data
