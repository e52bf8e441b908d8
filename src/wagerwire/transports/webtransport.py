"""WebTransport over HTTP/3 (aioquic): the QUIC connection and the UDP listener.

One :class:`WtProtocol` per QUIC connection runs aioquic's ``H3Connection`` with WebTransport
enabled. An extended CONNECT (``:protocol webtransport``) opens a session
(:mod:`wagerwire.transports.wt_sessions`) on one of the routes:

* ``/wt``, ``/wt/{game}``, ``/wt/type/{type}``: Data Stream (seed 004), each Round one
  datagram;
* ``/v1/wt``: the native protocol on client-opened bidirectional streams (NDJSON), plus an
  opt-in datagram lane for ``odds:`` channels.

A request is refused before the session exists (plain HTTP/3 status + JSON error body), like
a WebSocket upgrade; a keyed session is first admitted against its plan's concurrent streams.
At most ``max_sessions`` sessions per connection. The client's close capsule or the end of
the CONNECT stream ends a session; a connection that ends ends all of its sessions.

Datagrams never wait: a payload over :data:`~wagerwire.wire.webtransport.DATAGRAM_MAX` goes
on a unidirectional stream of its own (the payload, then FIN), and at most
``datagram_queue`` datagrams wait in a connection's QUIC send queue (older ones are dropped:
datagrams are lossy by nature, newer values supersede them). Every ``ping_interval`` each
connection gets a QUIC PING (browsers send none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import (
    DatagramReceived,
    DataReceived,
    H3Event,
    HeadersReceived,
    WebTransportStreamDataReceived,
)
from aioquic.h3.exceptions import H3Error
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import (
    ConnectionTerminated,
    ProtocolNegotiated,
    QuicEvent,
    StopSendingReceived,
    StreamReset,
)

from wagerwire.dialects.base import StreamRequest
from wagerwire.dialects.datastream import DataStreamWt
from wagerwire.errors import (
    CloseCode,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    Unavailable,
    WagerwireError,
)
from wagerwire.transports.dialects import directory_of
from wagerwire.transports.stream import StreamRegistry
from wagerwire.transports.wt_sessions import (
    DataStreamWtSession,
    NativeWtSession,
    WtConfig,
    WtSession,
)
from wagerwire.wire.webtransport import CLOSE_SESSION, CapsuleReader, decode_close

__all__ = ["Certified", "WebTransportServer", "WtConfig", "WtProtocol"]

log = logging.getLogger("wagerwire.transports.webtransport")

MAX_BLOCKED_UNI = 64
"""Unidirectional streams (payloads too big for a datagram) waiting for the peer's stream
credit; past it such payloads are dropped as a datagram would be."""


# -- the QUIC connection ---------------------------------------------------------------------


SessionFactory = Callable[["WtProtocol", int, StreamRequest], WtSession]


class WtProtocol(QuicConnectionProtocol):
    """One QUIC connection: HTTP/3, its WebTransport sessions and their streams."""

    def __init__(self, quic: QuicConnection, server: WebTransportServer,
                 **kwargs: Any) -> None:
        super().__init__(quic, **kwargs)
        self.server = server
        self.h3: H3Connection | None = None
        self.sessions: dict[int, WtSession] = {}
        self.owner: dict[int, WtSession] = {}  # WebTransport stream id -> its session
        self._capsules: dict[int, CapsuleReader] = {}
        self._flush_scheduled = False
        self._pings = 0
        server.connections.add(self)

    # -- sending (every send schedules one transmit for this loop turn) --------------------

    def _soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._flush_scheduled = False
        self.transmit()

    def send_stream(self, stream_id: int, data: bytes, end: bool) -> None:
        with contextlib.suppress(Exception):  # a stream the peer has already reset
            self._quic.send_stream_data(stream_id, data, end)
        self._soon()

    def reset_stream(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(Exception):
            self._quic.reset_stream(stream_id, code)
        self._soon()

    def stop_reading(self, stream_id: int) -> None:
        """Refuse a stream the client opened: FIN our half (if it has one) and STOP_SENDING."""
        with contextlib.suppress(Exception):
            self._quic.stop_stream(stream_id, 0)
        if not stream_id & 0x2:
            self.send_stream(stream_id, b"", True)
        self._soon()

    def stream_unsent(self, stream_id: int) -> int:
        """Bytes queued on a stream that QUIC has not sent yet (congestion and flow control
        hold them): the equivalent of an asyncio transport's write buffer."""
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return max(0, sender._buffer_stop - sender.highest_offset)

    def send_datagram(self, session_id: int, frame: bytes) -> None:
        h3 = self.h3
        if h3 is None:
            return
        pending = self._quic._datagrams_pending
        while len(pending) >= self.server.config.datagram_queue:
            pending.popleft()  # lossy by nature: the newest values win
        h3.send_datagram(session_id, frame)
        self._soon()

    def send_uni(self, session_id: int, payload: bytes) -> None:
        h3 = self.h3
        if h3 is None or len(self._quic._streams_blocked_uni) >= MAX_BLOCKED_UNI:
            return  # the peer grants no more streams: dropped, like a datagram
        stream_id = h3.create_webtransport_stream(session_id, is_unidirectional=True)
        self._quic.send_stream_data(stream_id, payload, end_stream=True)
        self._soon()

    def end_session(self, session_id: int, capsule: bytes) -> None:
        self.sessions.pop(session_id, None)
        for sid in [s for s, owner in self.owner.items() if owner.session_id == session_id]:
            del self.owner[sid]
        self._capsules.pop(session_id, None)
        if self.h3 is not None:
            with contextlib.suppress(H3Error, Exception):
                self.h3.send_data(session_id, capsule, end_stream=True)
        self._soon()

    # -- receiving -------------------------------------------------------------------------

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            if event.alpn_protocol in H3_ALPN:
                self.h3 = H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, ConnectionTerminated):
            self._terminated()
            return
        elif isinstance(event, StreamReset | StopSendingReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                session.terminated()
            owner = self.owner.pop(event.stream_id, None)
            if owner is not None:
                owner.stream_gone(event.stream_id)
        if self.h3 is None:
            return
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, DatagramReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                session.on_datagram(event.data)
        elif isinstance(event, WebTransportStreamDataReceived):
            session = self.owner.get(event.stream_id) or self.sessions.get(event.session_id)
            if session is None or session.closed or not session.accepted:
                self.stop_reading(event.stream_id)
                return
            self.owner[event.stream_id] = session
            session.on_stream(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, HeadersReceived):
            self._request(event.stream_id, event.headers, event.stream_ended)
        elif isinstance(event, DataReceived):
            self._session_data(event.stream_id, event.data, event.stream_ended)

    def _session_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        """The CONNECT stream's body: capsules (the client's close) and its end."""
        session = self.sessions.get(stream_id)
        if session is None:
            return
        reader = self._capsules.setdefault(stream_id, CapsuleReader())
        try:
            capsules = reader.feed(data)
        except ValueError:
            session.close(CloseCode.MESSAGE_TOO_BIG, "capsule over the limit")
            return
        for capsule in capsules:
            if capsule.kind == CLOSE_SESSION:
                code, reason = decode_close(capsule.payload)
                log.debug("client closed WebTransport session %d: %d %s",
                          stream_id, code, reason)
                session.terminated()
                return
        if ended:
            session.terminated()

    def _request(self, stream_id: int, headers: list[tuple[bytes, bytes]],
                 ended: bool) -> None:
        head: dict[str, str] = {}
        for name, value in headers:
            head[name.decode("latin-1").lower()] = value.decode("latin-1")
        method = head.get(":method", "")
        parts = urlsplit(head.get(":path", "/"))
        path = unquote(parts.path)
        if method != "CONNECT" or head.get(":protocol") != "webtransport":
            error: WagerwireError = (
                NotFound(f"no route for {path[:100]} on the WebTransport port")
                if self.server.route(path) is None
                else MethodNotAllowed(f"{path[:100]} is a WebTransport endpoint "
                                      "(extended CONNECT)"))
            self._refuse(stream_id, error)
            return
        if len(self.sessions) >= self.server.config.max_sessions:
            self._refuse(stream_id, RateLimited(
                f"at most {self.server.config.max_sessions} WebTransport sessions per "
                "connection"))
            return
        if self.server.registry.closing:
            self._refuse(stream_id, Unavailable("server is shutting down; retry shortly"))
            return
        query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
        plain = {k: v for k, v in head.items() if not k.startswith(":")}
        try:
            session = self.server.open_session(self, stream_id, path, query, plain)
        except WagerwireError as exc:
            self._refuse(stream_id, exc)
            return
        except Exception:
            log.exception("WebTransport session on %s failed to open", path[:100])
            self._refuse(stream_id, InternalError("internal error; the server logged it"))
            return
        self.sessions[stream_id] = session  # counted against max_sessions from now on
        if session.slot.pending:  # a keyed stream: count it against the plan first
            self._loop.create_task(self._admit(session))
        else:
            self._accept(session)

    async def _admit(self, session: WtSession) -> None:
        """Await the session's slot; its refusal (429, 503) is a plain HTTP/3 error."""
        try:
            await session.slot.admit()
        except WagerwireError as exc:
            self.sessions.pop(session.session_id, None)
            self._refuse(session.session_id, exc)
            return
        except Exception:
            log.exception("admitting a WebTransport session failed")
            self.sessions.pop(session.session_id, None)
            self._refuse(session.session_id, InternalError("internal error; the server logged it"))
            return
        if self.sessions.get(session.session_id) is not session or self.server.registry.closing:
            session.slot.release()  # the client left (or the server is stopping) meanwhile
            self.sessions.pop(session.session_id, None)
            return
        self._accept(session)

    def _accept(self, session: WtSession) -> None:
        assert self.h3 is not None
        self.h3.send_headers(session.session_id, [
            (b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")])
        session.opened()
        self._soon()

    def _refuse(self, stream_id: int, error: WagerwireError) -> None:
        h3 = self.h3
        if h3 is None:
            return
        self.server.registry.errors["wt", "refused", error.code] += 1
        body = orjson.dumps(error.to_json())
        with contextlib.suppress(H3Error, Exception):
            h3.send_headers(stream_id, [(b":status", str(error.status).encode()),
                                        (b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())])
            h3.send_data(stream_id, body, end_stream=True)
        self._soon()

    def _terminated(self) -> None:
        for session in list(self.sessions.values()):
            session.terminated()
        self.sessions.clear()
        self.owner.clear()
        self.server.connections.discard(self)

    def keepalive(self) -> None:
        if self.sessions:
            self._pings += 1
            self._quic.send_ping(self._pings)
            self._soon()

    def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            session.shutdown()


# -- the listener ----------------------------------------------------------------------------


Route = tuple[str, dict[str, str]]
Certified = tuple[Any, list[Any], Any]
"""A certificate, its chain and its private key (``cryptography`` objects)."""


class WebTransportServer:
    """The UDP listener: routes CONNECTs to Data Stream or native sessions."""

    def __init__(self, registry: StreamRegistry, config: WtConfig,
                 datastream: DataStreamWt | None,
                 certificate: Callable[[], Certified]) -> None:
        self.registry = registry
        self.config = config
        self.datastream = datastream
        # -> (leaf, chain, private key) as cryptography objects; asked again on reload()
        self.certificate = certificate
        self.connections: set[WtProtocol] = set()
        self._server: QuicServer | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self.port = config.port

    def route(self, path: str) -> Route | None:
        if path == "/v1/wt":
            return "native", {}
        if self.datastream is None:
            return None
        if path == "/wt":
            return "datastream", {}
        rest = path[len("/wt/"):] if path.startswith("/wt/") else None
        if not rest:
            return None
        if rest.startswith("type/") and rest.count("/") == 1 and len(rest) > 5:
            return "datastream", {"type": rest[5:]}
        if "/" not in rest:
            return "datastream", {"game": rest}
        return None

    def open_session(self, proto: WtProtocol, stream_id: int, path: str,
                     query: Mapping[str, str], headers: Mapping[str, str]) -> WtSession:
        found = self.route(path)
        if found is None:
            raise NotFound(f"no WebTransport endpoint {path[:100]}")
        kind, params = found
        registry = self.registry
        gate = registry.gate
        if kind == "native":
            identity = gate.authenticate(headers, query.get("token"))
            slot = gate.open_stream(identity, "wt")
            return NativeWtSession(proto, stream_id, registry, identity, slot, self.config)
        assert self.datastream is not None
        request = StreamRequest(params, query, headers)
        session = self.datastream.accept(request, directory_of(registry))
        slot = gate.open_stream(session.identity, "wt")
        return DataStreamWtSession(proto, stream_id, registry, session, slot)

    def quic_configuration(self) -> QuicConfiguration:
        leaf, chain, key = self.certificate()
        return QuicConfiguration(
            is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536,
            idle_timeout=self.config.idle_timeout, certificate=leaf,
            certificate_chain=list(chain), private_key=key,
        )

    async def start(self) -> None:
        self._server = await serve(
            self.config.host, self.config.port, configuration=self.quic_configuration(),
            create_protocol=lambda quic, **kw: WtProtocol(quic, self, **kw),
        )
        transport = self._server._transport
        if transport is not None:
            self.port = transport.get_extra_info("sockname")[1]
        self._schedule_keepalive()

    def _schedule_keepalive(self) -> None:
        self._keepalive = self.registry.loop.call_later(self.registry.config.ping_interval,
                                                        self._ping_all)

    def _ping_all(self) -> None:
        """A QUIC PING on every connection each ping interval: browsers send none, and an
        idle subscriber (a quiet channel) would otherwise hit the idle timeout."""
        for proto in list(self.connections):
            proto.keepalive()
        self._schedule_keepalive()

    def reload(self) -> None:
        """New connections use the certificate ``certificate()`` answers now."""
        if self._server is not None:
            self._server._configuration = self.quic_configuration()

    async def stop(self) -> None:
        """Close every session (1001 + resume hint), give the capsules a moment, close."""
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        for proto in list(self.connections):
            proto.shutdown()
        if self.connections:
            await asyncio.sleep(self.config.shutdown_grace)
        if self._server is not None:
            self._server.close()
            self._server = None
        self.connections.clear()

