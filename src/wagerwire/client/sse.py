"""The server-sent events driver: ``GET /v1/sse`` streamed with httpx.

SSE has no upstream channel, so the subscription (channels, filter, resume token) travels in
the query string of every (re)connection and the protocol never pings: the server's comment
heartbeats, which the parser swallows, count as signs of life through
:meth:`ClientProtocol.activity`. The ``since`` query parameter carries the same token that
``Last-Event-ID`` would, computed from what was actually delivered. The credential (a stream
token when the client holds an API key) travels as ``Authorization: Bearer``, not in the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Unpack

import httpx
import orjson

from wagerwire.client.connection import DriverOptions, StreamDriver
from wagerwire.client.errors import ProtocolError, TransportError
from wagerwire.client.protocol import ClientProtocol
from wagerwire.client.rest import error_from_response
from wagerwire.wire.sse_parser import SseMessage, SseParser

__all__ = ["SseDriver"]

_EOF = object()


class SseDriver(StreamDriver):
    """Drives the protocol over an SSE stream on the client's shared :class:`httpx.AsyncClient`."""

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        path: str = "/v1/sse",
        **options: Unpack[DriverOptions],
    ) -> None:
        super().__init__(protocol, **options)
        self.path = path

    def _params(self) -> dict[str, str]:
        channels, filter, since = self.protocol.subscribe_params()
        params = {"channels": ",".join(channels)}
        if filter:
            params["filter"] = orjson.dumps(filter).decode()
        if since:
            params["since"] = since
        if self.protocol.image:
            params["image"] = "true"
        if self.protocol.conflate_ms:
            params["conflate_ms"] = str(self.protocol.conflate_ms)
        return params

    async def session(self) -> None:
        proto = self.protocol
        http = self.rest.http
        request = http.build_request(
            "GET",
            self.path,
            params=self._params(),
            headers={
                "Accept": "text/event-stream",
                "Cache-Control": "no-cache",
                **self.auth.header_for(self.credential),
            },
            timeout=httpx.Timeout(self.open_timeout, read=None),
        )
        try:
            async with asyncio.timeout(self.open_timeout):  # headers must come in time too
                response = await http.send(request, stream=True)
        except (httpx.TransportError, TimeoutError) as exc:
            failure = TransportError(f"connect failed: {exc!r}")
            self.dispatch(proto.connection_failed(failure, self.now()))
            return
        reader: asyncio.Task[None] | None = None
        try:
            if response.status_code != 200:
                body = await _read_body(response)
                err = error_from_response(
                    response.status_code, body, response.headers.get("retry-after")
                )
                self.dispatch(proto.connection_failed(err, self.now()))
                return
            ctype = response.headers.get("content-type", "")
            if not ctype.startswith("text/event-stream"):
                err = ProtocolError(f"expected text/event-stream, got {ctype!r}")
                self.dispatch(proto.connection_failed(err, self.now()))
                return
            chunks: asyncio.Queue[object] = asyncio.Queue(maxsize=16)
            reader = asyncio.create_task(_pump(response, chunks))
            self.dispatch(proto.connection_opened(self.now()))
            parser = SseParser()
            while self.live():
                item = await self.receive(chunks.get())
                if item is None:
                    continue
                if isinstance(item, bytes):
                    proto.activity(self.now())
                    for event in parser.feed(item):
                        self._event(event)
                        if not self.live():
                            break
                    await self.sink.writable()
                    continue
                reason = "stream ended" if item is _EOF else f"stream failed: {item!r}"
                self.dispatch(proto.connection_lost(None, reason, self.now()))
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            await response.aclose()

    def _event(self, event: SseMessage) -> None:
        if not event.data:
            return
        proto = self.protocol
        try:
            obj = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            self.dispatch(proto.text_received(event.data, self.now()))  # reports the error
            return
        if isinstance(obj, dict) and "op" not in obj and event.event != "message":
            obj["op"] = event.event  # `event: subscribed` / `event: error` name the op
        self.dispatch(proto.frame_received(obj, self.now()))


async def _pump(response: httpx.Response, out: asyncio.Queue[object]) -> None:
    """Copy the body into ``out`` so that the reader can wait on it with a timeout."""
    try:
        async for chunk in response.aiter_bytes():
            if chunk:
                await out.put(chunk)
    except httpx.HTTPError as exc:
        await out.put(exc)
    else:
        await out.put(_EOF)


async def _read_body(response: httpx.Response, limit: int = 65536) -> bytes:
    """The start of an error body (never the whole of an unexpected stream)."""
    body = b""
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= limit:
                break
    return body[:limit]
