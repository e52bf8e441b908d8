"""The ASGI bridge writes HTTP/1.1 responses whose framing a kept-alive client can follow."""

from __future__ import annotations

from typing import Any

import pytest

from wagerwire.transports.http import HttpRequest, _AsgiExchange


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False


async def _answer(method: str, status: int, body: bytes, headers: list[Any]) -> bytes:
    transport = _Transport()
    request = HttpRequest(method, "/x", b"", {}, [])
    exchange = _AsgiExchange(request, transport)  # type: ignore[arg-type]
    await exchange.send({"type": "http.response.start", "status": status, "headers": headers})
    await exchange.send({"type": "http.response.body", "body": body, "more_body": False})
    assert exchange.finished
    return bytes(transport.written)


@pytest.mark.parametrize(("method", "status"), [("OPTIONS", 204), ("GET", 304),
                                                 ("HEAD", 200), ("GET", 101)])
async def test_bodyless_answers_end_with_their_head(method: str, status: int) -> None:
    written = await _answer(method, status, b"", [])
    assert written.endswith(b"\r\n\r\n")
    assert b"transfer-encoding" not in written and not written.endswith(b"0\r\n\r\n")
    assert written.count(b"\r\n\r\n") == 1  # nothing after the head


async def test_an_answer_without_length_is_chunked() -> None:
    written = await _answer("GET", 200, b"hello", [])
    assert b"transfer-encoding: chunked" in written
    assert written.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


async def test_an_answer_with_length_is_sent_as_it_is() -> None:
    written = await _answer("GET", 200, b"hello", [(b"content-length", b"5")])
    assert b"transfer-encoding" not in written and written.endswith(b"\r\n\r\nhello")


async def test_alt_svc_line_is_added_when_given() -> None:
    transport = _Transport()
    line = b'alt-svc: h3=":4433"; ma=86400'
    exchange = _AsgiExchange(HttpRequest("GET", "/x", b"", {}, []), transport,  # type: ignore[arg-type]
                             line)
    await exchange.send({"type": "http.response.start", "status": 200, "headers": []})
    await exchange.send({"type": "http.response.body", "body": b"", "more_body": False})
    assert line + b"\r\n" in bytes(transport.written)
    assert b"alt-svc" not in await _answer("GET", 200, b"", [])


async def test_front_door_precomputes_the_alt_svc_line() -> None:
    import asyncio

    from wagerwire.transports.http import HttpServerState, StreamRoutes

    loop = asyncio.get_running_loop()
    state = HttpServerState(None, StreamRoutes(), None, loop,  # type: ignore[arg-type]
                            ("127.0.0.1", 0), tls=True, webtransport_port=4433)
    assert state.alt_svc == b'alt-svc: h3=":4433"; ma=86400' and state.scheme == "https"
    state.advertise_http3(None)
    assert state.alt_svc == b""
    plain = HttpServerState(None, StreamRoutes(), None, loop,  # type: ignore[arg-type]
                            ("127.0.0.1", 0))
    assert plain.alt_svc == b"" and plain.scheme == "http"
