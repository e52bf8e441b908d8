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
