"""The HTTP/1.1 front door: one lean asyncio protocol per TCP connection.

It parses requests with ``httptools`` and then either hands the socket to a streaming
connection (a WebSocket upgrade or an SSE stream on a registered stream route) or runs the
request through the ASGI application (FastAPI) for plain request/response REST. Streaming
connections never go through ASGI: that is what keeps them at about a kilobyte each.

With TLS (``tls=True``; the listener's ``ssl`` context comes from :mod:`wagerwire.tls`) the
transport below this protocol decrypts: nothing here changes but the ASGI scope's scheme, so
every route and dialect answers on ``https://``/``wss://`` exactly as on the plain port.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, cast
from urllib.parse import unquote

import httptools
import orjson

from wagerwire.auth.identity import NO_SLOT, StreamSlot
from wagerwire.errors import (
    ClientError,
    HeaderTooLarge,
    InternalError,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    Unavailable,
    UpgradeRequired,
    WagerwireError,
)
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.wire.http_head import parse_query, parse_stream_head
from wagerwire.wire.websocket import (
    HandshakeError,
    handshake_response,
    has_token,
    validate_handshake,
)

__all__ = ["HttpProtocol", "HttpRequest", "StreamRoute", "StreamRoutes", "error_response"]

LINGER_S = 2.0  # how long an error answer waits for the client to stop sending
HEAD_READ_SLACK = 256 * 1024  # one read's worth: the unfinished head may have begun inside it

log = logging.getLogger("wagerwire.transports.http")
access_log = logging.getLogger("wagerwire.access")

ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass(slots=True)
class HttpRequest:
    """One parsed request head (and body for REST)."""

    method: str
    path: str
    query_string: bytes
    headers: dict[str, str]
    raw_headers: list[tuple[bytes, bytes]]  # for ASGI; empty on streams opened by the fast path
    body: bytes = b""
    keep_alive: bool = True
    params: dict[str, str] = field(default_factory=dict)
    _query: dict[str, list[str]] | None = field(default=None, init=False, repr=False,
                                                compare=False)

    def query(self) -> dict[str, list[str]]:
        """The query's parameters, parsed once (do not modify the result)."""
        parsed = self._query
        if parsed is None:
            parsed = self._query = parse_query(self.query_string.decode("latin-1"))
        return parsed

    def query_one(self, name: str) -> str | None:
        if not self.query_string:
            return None
        values = self.query().get(name)
        return values[-1] if values else None


StreamFactory = Callable[[HttpRequest, StreamRegistry], StreamConnection]


@dataclass(frozen=True, slots=True)
class StreamRoute:
    """A path served by a streaming connection instead of REST."""

    kind: Literal["ws", "sse"]
    pattern: re.Pattern[str]
    factory: StreamFactory


class StreamRoutes:
    """Path → streaming connection factory; ``{name}`` segments become ``request.params``."""

    def __init__(self) -> None:
        self._routes: list[StreamRoute] = []
        self._static: dict[str, StreamRoute] = {}  # paths without parameters: one lookup

    def add(self, kind: Literal["ws", "sse"], path: str, factory: StreamFactory) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
        route = StreamRoute(kind, re.compile(regex + "$"), factory)
        # A static path is looked up directly unless an earlier route already claims it.
        if "{" not in path and not any(r.pattern.match(path) for r in self._routes):
            self._static[path] = route
        self._routes.append(route)

    def match(self, path: str) -> tuple[StreamRoute, dict[str, str]] | None:
        static = self._static.get(path)
        if static is not None:
            return static, {}
        for route in self._routes:
            m = route.pattern.match(path)
            if m:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


def error_response(
    error: WagerwireError,
    *,
    keep_alive: bool = False,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A complete HTTP error response with the JSON error body."""
    headers = list(extra_headers)
    if error.retry_after is not None:
        headers.append(("Retry-After", str(max(1, round(error.retry_after)))))
    return _response(error.status, orjson.dumps(error.to_json()), headers, keep_alive)


def _response(
    status: int, body: bytes, headers: list[tuple[str, str]], keep_alive: bool
) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class HttpServerState:
    """What every HTTP connection of one server shares.

    One timer sweeps the connections still speaking HTTP (streams have left ``connections``)
    for request heads and bodies past their deadline; it runs only while there are any.
    """

    __slots__ = ("app", "routes", "registry", "loop", "connections", "server_addr", "_sweeping",
                 "scheme", "alt_svc")

    def __init__(
        self, app: ASGIApp, routes: StreamRoutes, registry: StreamRegistry,
        loop: asyncio.AbstractEventLoop, server_addr: tuple[str, int], *,
        tls: bool = False, webtransport_port: int | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.registry = registry
        self.loop = loop
        self.connections: set[HttpProtocol] = set()
        self.server_addr = server_addr
        self._sweeping = False
        self.scheme = "https" if tls else "http"  # the ASGI scope's: REST builds URLs from it
        self.alt_svc = b""  # the Alt-Svc header line REST responses carry (HTTP/3 advertised)
        self.advertise_http3(webtransport_port)

    def advertise_http3(self, port: int | None) -> None:
        """Add ``Alt-Svc: h3=":<port>"; ma=86400`` to REST responses from now on (the
        HTTP/3 + WebTransport listener's UDP port), or stop with None. The header line is
        built here once, not per response."""
        self.alt_svc = b'alt-svc: h3=":%d"; ma=86400' % port if port else b""

    def watch(self) -> None:
        """Make sure the deadline sweep runs (called for each new connection)."""
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(self._interval(), self._sweep)

    def _interval(self) -> float:
        config = self.registry.config
        return min(1.0, max(0.05, min(config.header_timeout, config.body_timeout) / 4))

    def _sweep(self) -> None:
        now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline and now >= c.deadline]:
            conn.timed_out()
        if self.connections:
            self.loop.call_later(self._interval(), self._sweep)
        else:
            self._sweeping = False


@dataclass(frozen=True, slots=True)
class _Refusal:
    """An error answered, and the connection closed, once earlier requests are answered."""

    error: WagerwireError
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Upgrade:
    """A WebSocket upgrade started once earlier requests are answered."""

    route: StreamRoute
    request: HttpRequest


class HttpProtocol(asyncio.Protocol):
    """Parses HTTP/1.1; upgrades to a stream or runs REST through ASGI.

    Pipelined requests are answered strictly in order. Whatever ends the HTTP conversation
    (a malformed request, a WebSocket upgrade) is queued behind the requests before it, so
    their responses are written first: a 400 never overtakes an earlier request's 200, and
    no earlier response lands inside a WebSocket stream. Once such an item is queued the
    parser gets no more bytes (after an upgrade they are kept for the WebSocket).
    """

    __slots__ = (
        "state", "transport", "parser", "_url", "_headers", "_body", "_head_size",
        "_queue", "_busy", "_done", "_too_large", "_body_size", "_stopped", "_tail",
        "_reject", "deadline", "_in_head", "_in_body", "_head_pending",
    )

    def __init__(self, state: HttpServerState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = None  # made on first slow-path use
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_size = 0
        self._body_size = 0
        self._queue: deque[HttpRequest | _Refusal | _Upgrade] = deque()
        self._busy = False
        self._done = False
        self._too_large = False
        self._stopped = False  # a refusal or an upgrade is queued: parse nothing more
        self._tail = bytearray()  # bytes received after a queued upgrade (for the stream)
        self._reject: WagerwireError | None = None  # why a callback stopped the parser
        # Loop time by which the client must have sent what we wait for (0: not waiting):
        # a whole head (``_in_head``), a body, or the first byte of the next request.
        self.deadline = 0.0
        self._in_head = False
        self._in_body = False
        # Bytes received while a head is still unfinished: httptools keeps a header value
        # that has no end yet in its own buffer, where on_header never sees it.
        self._head_pending = 0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        state = self.state
        state.connections.add(self)
        self.deadline = state.loop.time() + state.registry.config.header_timeout
        state.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self.state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        if self._stopped:
            if self._queue and isinstance(self._queue[-1], _Upgrade):
                self._tail += data
            return
        parser = self.parser
        if parser is None:
            if data[:4] == b"GET " and data[-4:] == b"\r\n\r\n" and self._fast_stream(data):
                return
            parser = self.parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(data)
            if self._in_head and not self._stopped:
                self._head_pending += len(data)  # over by at most one read: head began inside
                limit = self.state.registry.config.max_header_bytes
                if self._head_pending > limit + HEAD_READ_SLACK:
                    self._refuse(HeaderTooLarge(f"request line and headers over {limit} bytes"))
            else:
                self._head_pending = 0
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
            self._upgrade(data[offset:])
        except httptools.HttpParserError as exc:
            if self._reject is not None:
                self._refuse(self._reject)
            elif self._head_size > self.state.registry.config.max_header_bytes:
                limit = self.state.registry.config.max_header_bytes
                self._refuse(HeaderTooLarge(f"request line and headers over {limit} bytes"))
            else:
                self._refuse(ClientError(f"malformed HTTP request: {exc}"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_pending = 0
        if not self.deadline:  # pipelined behind a request: its head is timed from now
            self.deadline = self.state.loop.time() + self.state.registry.config.header_timeout
        self._url = b""
        self._headers = []
        self._body = []
        self._body_size = 0
        self._head_size = 0
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > self.state.registry.config.max_header_bytes:
            raise httptools.HttpParserError("request head too large")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        self.deadline = self.state.loop.time() + self.state.registry.config.body_timeout
        assert self.parser is not None
        version = self.parser.get_http_version()
        if version not in ("1.1", "1.0"):
            # llhttp reads a request line without a version as HTTP/0.9, and takes 2.0.
            spelled = "no HTTP version" if version == "0.9" else f"HTTP/{version}"
            self._reject = ClientError(f"request line has {spelled}; send HTTP/1.1")
            raise httptools.HttpParserError(spelled)

    def on_body(self, body: bytes) -> None:
        if self._too_large:
            return
        self._body.append(body)
        self._body_size += len(body)
        if self._body_size > self.state.registry.config.max_body_bytes:
            self._too_large = True
            self._body = []

    def on_message_complete(self) -> None:
        self.deadline = 0.0
        self._in_body = False
        if self._too_large:
            limit = self.state.registry.config.max_body_bytes
            self._refuse(PayloadTooLarge(f"request body over {limit} bytes"))
            return
        assert self.parser is not None
        if self.parser.should_upgrade():
            return  # handled by _upgrade once the parser raises HttpParserUpgrade
        request = self._request()
        request.body = b"".join(self._body)
        self._queue.append(request)
        if not self._busy:
            self._next()

    # -- dispatch --------------------------------------------------------------------------

    def _request(self) -> HttpRequest:
        parser = self.parser
        assert parser is not None
        parsed = httptools.parse_url(self._url)
        headers: dict[str, str] = {}
        for name, value in self._headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        return HttpRequest(
            method=parser.get_method().decode("ascii"),
            path=unquote(parsed.path.decode("latin-1")),
            query_string=parsed.query or b"",
            headers=headers,
            raw_headers=self._headers,
            keep_alive=parser.should_keep_alive(),
        )

    def _fast_stream(self, data: bytes) -> bool:
        """Open a stream straight from a one-segment GET head (the connect-storm case).

        Returns False, having changed nothing, whenever the head is not in the strict subset
        :func:`parse_stream_head` takes or is not for a stream route; httptools then parses
        the same bytes and answers any error.
        """
        head = parse_stream_head(data, self.state.registry.config.max_header_bytes)
        if head is None:
            return False
        match = self.state.routes.match(head.path)
        if match is None:
            return False
        route, params = match
        headers = head.headers
        # raw_headers stays empty: only the ASGI bridge reads it, and streams never get there.
        request = HttpRequest("GET", head.path, head.query_string, headers, [],
                              keep_alive=False, params=params)
        if route.kind == "sse":
            self._start_stream(route, request, b"")
        elif "upgrade" in headers and has_token(headers.get("connection", ""), "upgrade"):
            self._start_websocket(route, request, b"")
        else:
            return False  # not an upgrade to httptools either: the full path answers 426
        return True

    def _next(self) -> None:
        while self._queue and not self._done:
            request = self._queue.popleft()
            if isinstance(request, _Refusal):
                self._fail(request.error, request.headers)
                return
            if isinstance(request, _Upgrade):
                rest = bytes(self._tail)
                self._tail.clear()
                self._start_websocket(request.route, request.request, rest)
                return
            match = self.state.routes.match(request.path)
            if match is not None:
                route, params = match
                request.params = params
                if route.kind == "sse":
                    if request.method == "GET":
                        self._start_stream(route, request, b"")
                        return
                    self._write(error_response(
                        MethodNotAllowed(f"{request.method} is not allowed on an event "
                                         "stream; use GET"),
                        keep_alive=request.keep_alive, extra_headers=(("Allow", "GET"),),
                    ))
                    continue
                if route.kind == "ws":
                    self._write(error_response(
                        UpgradeRequired("this path needs a WebSocket upgrade"),
                        keep_alive=request.keep_alive,
                        extra_headers=(("Upgrade", "websocket"),),
                    ))
                    continue
            self._busy = True
            if self.transport is not None:
                self.transport.pause_reading()
            self.state.loop.create_task(self._run_asgi(request))
            return

    def _upgrade(self, rest: bytes) -> None:
        request = self._request()
        match = self.state.routes.match(request.path)
        if match is None or match[0].kind != "ws":
            # Not a WebSocket endpoint (e.g. curl's "Upgrade: h2c"): ignore the upgrade and
            # answer the request itself; the parser stops here, so the connection closes.
            request.keep_alive = False
            self._stopped = True
            self._queue.append(request)
            if not self._busy:
                self._next()
            return
        route, request.params = match
        # Started in order: after the responses of every request pipelined before it.
        self._stopped = True
        self._tail += rest
        self._queue.append(_Upgrade(route, request))
        if not self._busy:
            self._next()

    def _start_websocket(self, route: StreamRoute, request: HttpRequest, rest: bytes) -> None:
        try:
            key = validate_handshake(request.method, request.headers)
        except HandshakeError as exc:
            self._fail(exc, exc.headers)
            return
        self._start_stream(route, request, rest, key)

    def _start_stream(
        self, route: StreamRoute, request: HttpRequest, rest: bytes, ws_key: str | None = None
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        registry = self.state.registry
        if registry.closing:
            self._fail(Unavailable("server is shutting down; retry shortly"))
            return
        try:
            conn = route.factory(request, registry)
        except WagerwireError as exc:
            self._fail(exc)
            return
        slot = getattr(conn, "slot", NO_SLOT)
        if slot is not NO_SLOT and slot.pending:  # a keyed stream: count it before the upgrade
            transport.pause_reading()
            self.state.loop.create_task(self._admit(conn, slot, request, rest, ws_key))
            return
        self._open(conn, request, rest, ws_key)

    async def _admit(
        self, conn: StreamConnection, slot: StreamSlot, request: HttpRequest, rest: bytes,
        ws_key: str | None,
    ) -> None:
        """Await the stream's slot; answer its refusal (429, 503) as a plain HTTP error."""
        try:
            await slot.admit()
        except WagerwireError as exc:
            self._fail(exc)
            return
        except Exception:
            log.exception("admitting a stream failed")
            self._fail(InternalError("internal error; the server logged it"))
            return
        transport = self.transport
        if self._done or transport is None or transport.is_closing():
            slot.release()  # the client left while its slot was acquired
            return
        if self.state.registry.closing:
            slot.release()
            self._fail(Unavailable("server is shutting down; retry shortly"))
            return
        transport.resume_reading()
        self._open(conn, request, rest, ws_key)

    def _open(
        self, conn: StreamConnection, request: HttpRequest, rest: bytes, ws_key: str | None
    ) -> None:
        transport = self.transport
        assert transport is not None
        self._done = True
        self.state.connections.discard(self)
        if ws_key is not None:
            transport.write(handshake_response(ws_key))
        transport.set_protocol(conn)
        conn.attach(transport, self.state.loop.time())
        if log.isEnabledFor(logging.DEBUG):  # the path only: its query may hold a token
            log.debug("stream %d opened on %s", conn.conn_id, request.path,
                      extra={"conn_id": conn.conn_id, "transport": conn.tally.key[0],
                             "dialect": conn.tally.key[1], "path": request.path})
        conn.started(request)
        if rest:
            conn.data_received(rest)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def timed_out(self) -> None:
        """The deadline passed: 408 for a request begun (head or body), else a quiet close."""
        self.deadline = 0.0
        if self._done or self._busy or self._stopped:
            return  # answering, upgrading or closing already: not waiting for the client
        config = self.state.registry.config
        if self._in_head:
            self._refuse(RequestTimeout(
                f"request head not complete within {config.header_timeout:g} s"))
        elif self._in_body:
            self._refuse(RequestTimeout(
                f"request body not complete within {config.body_timeout:g} s"))
        else:
            self._done = True  # idle: no request started, so nothing to answer
            if self.transport is not None:
                self.transport.close()

    def _refuse(self, error: WagerwireError) -> None:
        """Answer ``error`` and close, after the responses of the requests before it."""
        self._stopped = True
        self._queue.append(_Refusal(error))
        if not self._busy:
            self._next()

    def _fail(self, error: WagerwireError, headers: Sequence[tuple[str, str]] = ()) -> None:
        """Answer ``error`` (its own status, plus ``headers``) and close the connection now
        (only when nothing before it is still unanswered: see :meth:`_refuse`)."""
        self.state.registry.errors["http", "refused", error.code] += 1
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("refused %d %s", error.status, error.code,
                            extra={"status": error.status, "code": error.code})
        self._write(error_response(error, extra_headers=tuple(headers)))
        self._done = True
        self._linger()

    def _linger(self) -> None:
        """Close after an error answer without losing it (RFC 9112 9.6, "lingering close").

        A client that is still sending (a slowloris head, a body we refuse) would get a TCP
        reset if we closed with its bytes unread, and a reset can destroy our answer in its
        receive buffer before it reads it. So: send FIN after the answer, keep reading and
        discarding (``data_received`` ignores everything once ``_done``), and close for good
        when the client closes or after :data:`LINGER_S`.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        transport.resume_reading()
        self.deadline = 0.0
        self.state.loop.call_later(LINGER_S, transport.close)

    # -- ASGI bridge -----------------------------------------------------------------------

    async def _run_asgi(self, request: HttpRequest) -> None:
        transport = self.transport
        assert transport is not None
        state = self.state
        exchange = _AsgiExchange(request, transport, state.alt_svc)
        try:
            await state.app(exchange.scope(state.server_addr, state.scheme), exchange.receive,
                            exchange.send)
        except Exception:
            log.exception("REST handler failed for %s %s", request.method, request.path)
            if not exchange.started and not transport.is_closing():
                transport.write(error_response(InternalError("internal error; logged")))
            exchange.finished = False
        finally:
            exchange.disconnected.set()
        if not exchange.finished or not request.keep_alive:
            self._done = True
            transport.close()
            return
        self._busy = False
        if not transport.is_closing():
            transport.resume_reading()
            # Waiting again: for the rest of a pipelined head, or an idle keep-alive's next.
            self.deadline = self.state.loop.time() + self.state.registry.config.header_timeout
        self._next()


class _AsgiExchange:
    """One request/response through the ASGI app: ``receive`` and ``send`` for it."""

    __slots__ = ("request", "transport", "body_sent", "started", "chunked", "bodyless",
                 "finished", "disconnected", "alt_svc")

    def __init__(self, request: HttpRequest, transport: asyncio.Transport,
                 alt_svc: bytes = b"") -> None:
        self.request = request
        self.transport = transport
        self.alt_svc = alt_svc
        self.body_sent = False
        self.started = False
        self.chunked = False
        self.bodyless = False
        self.finished = False
        self.disconnected = asyncio.Event()

    def scope(self, server: tuple[str, int], scheme: str = "http") -> dict[str, Any]:
        request = self.request
        peer = self.transport.get_extra_info("peername")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": scheme,
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": request.query_string,
            "root_path": "",
            "headers": request.raw_headers,
            "client": (peer[0], peer[1]) if isinstance(peer, tuple) else None,
            "server": server,
            "state": {},
        }

    async def receive(self) -> MutableMapping[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        await self.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        if self.transport.is_closing():  # the peer left: nothing to write to (and the
            return  # exchange never counts as finished, so the connection is closed)
        if message["type"] == "http.response.start":
            self._start(int(message["status"]), message.get("headers", []))
        elif message["type"] == "http.response.body":
            self._body(bytes(message.get("body", b"")), bool(message.get("more_body", False)))

    def _start(self, status: int, raw_headers: Any) -> None:
        self.started = True
        headers = [(bytes(k).lower(), bytes(v)) for k, v in raw_headers]
        # RFC 9112 6.3: 1xx, 204 and 304 answers and every answer to HEAD end with their head;
        # a chunk terminator after them would be read as the next response's status line.
        self.bodyless = status < 200 or status in (204, 304) or self.request.method == "HEAD"
        self.chunked = not self.bodyless and not any(k == b"content-length" for k, _ in headers)
        head = [f"HTTP/1.1 {status} {_phrase(status)}".encode()]
        head += [k + b": " + v for k, v in headers]
        if self.chunked:
            head.append(b"transfer-encoding: chunked")
        if self.alt_svc:
            head.append(self.alt_svc)
        head.append(b"connection: keep-alive" if self.request.keep_alive else b"connection: close")
        self.transport.write(b"\r\n".join(head) + b"\r\n\r\n")

    def _body(self, body: bytes, more: bool) -> None:
        if self.bodyless:
            body = b""
        if self.chunked:
            if body:
                self.transport.write(b"%x\r\n%s\r\n" % (len(body), body))
            if not more:
                self.transport.write(b"0\r\n\r\n")
        elif body:
            self.transport.write(body)
        if not more:
            self.finished = True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
