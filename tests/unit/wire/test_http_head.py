"""The one-segment stream head parser: takes the strict subset, declines everything else."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from wagerwire.wire.http_head import StreamHead, parse_query, parse_stream_head

UPGRADE = (
    b"GET /v1/ws?token=abc&x=1 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def test_parses_a_browser_style_upgrade() -> None:
    head = parse_stream_head(UPGRADE, 65536)
    assert head == StreamHead(
        path="/v1/ws",
        query_string=b"token=abc&x=1",
        headers={
            "host": "127.0.0.1:8000",
            "upgrade": "websocket",
            "connection": "Upgrade",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version": "13",
        },
    )


def test_repeated_headers_are_joined_and_whitespace_trimmed() -> None:
    data = b"GET /sse/crash HTTP/1.1\r\nAccept:  a \r\nX-A: 1\r\naccept:\tb\t\r\n\r\n"
    head = parse_stream_head(data, 65536)
    assert head is not None
    assert head.headers == {"accept": "a, b", "x-a": "1"}
    assert head.query_string == b""


def test_percent_encoded_path_is_decoded() -> None:
    head = parse_stream_head(b"GET /ws/slot%3Aone HTTP/1.1\r\nHost: h\r\n\r\n", 65536)
    assert head is not None and head.path == "/ws/slot:one"


def test_empty_header_value() -> None:
    head = parse_stream_head(b"GET / HTTP/1.1\r\nX-Empty:\r\n\r\n", 65536)
    assert head is not None and head.headers == {"x-empty": ""}


@pytest.mark.parametrize(
    "data",
    [
        UPGRADE.replace(b"GET ", b"POST "),
        UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"),
        UPGRADE[:-2],  # head not complete
        UPGRADE + b"\x81\x80abcd",  # a frame already behind the head
        UPGRADE.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"),
        UPGRADE.replace(b"\r\n\r\n", b"\r\nTransfer-Encoding: chunked\r\n\r\n"),
        UPGRADE.replace(b"Host: ", b"Host : "),  # space before the colon
        UPGRADE.replace(b"\r\nUpgrade", b"\r\n Upgrade"),  # obs-fold
        UPGRADE.replace(b"Host", b"H\xc3\xb6st"),  # obs-text
        UPGRADE.replace(b"127.0.0.1", b"127.0.0.\xff"),
        UPGRADE.replace(b"/v1/ws", b"/v1/ws#frag"),
        UPGRADE.replace(b"/v1/ws", b"http://h/v1/ws"),  # absolute-form
        UPGRADE.replace(b"Upgrade: websocket\r\n", b"NoColonHere\r\n"),
        UPGRADE.replace(b"\r\n", b"\n"),
        b"",
    ],
    ids=["post", "http10", "partial", "trailing-bytes", "content-length", "chunked",
         "space-before-colon", "obs-fold", "non-ascii-name", "non-ascii-value", "fragment",
         "absolute-form", "no-colon", "bare-lf", "empty"],
)
def test_declines_what_it_does_not_take(data: bytes) -> None:
    assert parse_stream_head(data, 65536) is None


def test_declines_heads_over_the_limit() -> None:
    assert parse_stream_head(UPGRADE, len(UPGRADE) - 1) is None
    assert parse_stream_head(UPGRADE, len(UPGRADE)) is not None


@pytest.mark.parametrize(
    "query",
    ["", "a=1", "a=1&b=2&a=3", "a", "a=&b", "&&a=1&", "k%20x=v+w%2B%3D", "a=%ZZ&b=%E2%82%AC",
     "=v", "a=b=c", "channels=game:crash,odds:*&filter=%7B%22kind%22%3A%22x%22%7D",
     "x=%C3%28", "a;b=1"],
)
def test_parse_query_matches_the_standard_library(query: str) -> None:
    assert parse_query(query) == parse_qs(query, keep_blank_values=True)
