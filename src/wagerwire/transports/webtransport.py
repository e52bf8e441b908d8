"""WebTransport over HTTP/3 (aioquic): the UDP listener and its sessions.

One :class:`WtProtocol` per QUIC connection runs aioquic's ``H3Connection`` with WebTransport
enabled. An extended CONNECT (``:protocol webtransport``) opens a session on one of the routes:

* ``/wt``, ``/wt/{game}``, ``/wt/type/{type}``: Data Stream (seed 004), a
  :class:`~wagerwire.dialects.datastream.DataStreamWt` session driven like the WebSocket
  dialects (:class:`~wagerwire.transports.dialects.SessionDriver`); each Round goes out as
  one datagram;
* ``/v1/wt``: the native protocol; each bidirectional stream the client opens is one native
  connection (newline-delimited JSON ops in, NDJSON ``subscribed``/``message``/... out, the
  very code path of ``/v1/ws``), plus an opt-in datagram lane for ``odds:`` channels.

A request is refused before the session exists (plain HTTP/3 status + JSON error body), like
a WebSocket upgrade. A session ends with a ``CLOSE_WEBTRANSPORT_SESSION`` capsule whose code
is the WebSocket close code of the same cause (1001 shutdown, 4001 revoked/expired, 4000 slow
consumer, ...). Hub sinks are :class:`~wagerwire.transports.stream.StreamConnection`
subclasses, so the outbox, the coalescing flusher, the shared frames and the slow-consumer
policy are the TCP transports' own.

Datagrams never wait: a payload over :data:`~wagerwire.wire.webtransport.DATAGRAM_MAX` goes
on a unidirectional stream of its own (the payload, then FIN), and at most
``datagram_queue`` datagrams wait in a connection's QUIC send queue (older ones are dropped:
datagrams are lossy by nature, newer values supersede them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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

from wagerwire.auth.identity import NO_SLOT, Identity, StreamSlot
from wagerwire.core.hub import FrameEncoder
from wagerwire.core.messages import Message, SubscribeReply
from wagerwire.dialects import native
from wagerwire.dialects.base import Session, StreamRequest
from wagerwire.dialects.datastream import DataStreamWt
from wagerwire.errors import (
    BadParameter,
    CloseCode,
    InternalError,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    UnknownOp,
    WagerwireError,
)
from wagerwire.transports.dialects import SessionDriver, directory_of
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.websocket import SHUTDOWN_REASON, NativeWsConnection, WsConnection
from wagerwire.wire.webtransport import (
    CLOSE_SESSION,
    DATAGRAM_MAX,
    CapsuleReader,
    LineReader,
    LineTooLong,
    decode_close,
    encode_close,
)

__all__ = [
    "DatagramSink",
    "NativeWtStream",
    "WebTransportServer",
    "WtConfig",
    "WtProtocol",
    "WtSession",
    "Certified",
]

log = logging.getLogger("wagerwire.transports.webtransport")

LATEST_VALUE_PREFIX = "odds:"
"""Channels the native datagram lane carries: latest-value channels (a newer price
supersedes a lost one)."""


@dataclass(slots=True)
class WtConfig:
    """The UDP listener and its per-connection bounds."""

    host: str = "127.0.0.1"
    port: int = 4433
    max_sessions: int = 4  # WebTransport sessions per QUIC connection
    max_streams: int = 8  # client-opened streams per session
    datagram_queue: int = 256  # datagrams waiting in one connection's QUIC send queue
    max_line_bytes: int = 65536 + 4096  # one NDJSON op from the client
    idle_timeout: float = 60.0  # QUIC idle timeout (the client's keep-alive is QUIC's own)
    shutdown_grace: float = 0.2  # seconds for close capsules to leave before connections end


class NativeWtEncoder:
    """Native ``message`` objects, one per line (shared by every ``/v1/wt`` stream)."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return native.encode_message(message) + b"\n"


class NativeDatagramEncoder:
    """Native ``message`` objects as bare JSON, one per datagram (the datagram lane)."""

    __slots__ = ()

    def encode(self, message: Message) -> bytes:
        return native.encode_message(message)


MAX_BLOCKED_UNI = 64
"""Unidirectional streams (payloads too big for a datagram) waiting for the peer's stream
credit; past it such payloads are dropped as a datagram would be."""

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024
WATER_POLL_S = 0.005
"""A native stream pauses past HIGH_WATER bytes QUIC has not sent yet and resumes below
LOW_WATER (polled: aioquic reports no "buffer drained" event)."""

NATIVE_WT = NativeWtEncoder()
NATIVE_DATAGRAM = NativeDatagramEncoder()


# -- the asyncio.Transport face of a QUIC stream --------------------------------------------


class _StreamWriter:
    """What :class:`StreamConnection` writes to: one QUIC stream of a connection."""

    __slots__ = ("proto", "stream_id", "ended")

    def __init__(self, proto: WtProtocol, stream_id: int) -> None:
        self.proto = proto
        self.stream_id = stream_id
        self.ended = False

    def write(self, data: bytes) -> None:
        if not self.ended:
            self.proto.send_stream(self.stream_id, data, False)

    def close(self) -> None:
        if not self.ended:
            self.ended = True
            self.proto.send_stream(self.stream_id, b"", True)

    def abort(self) -> None:
        self.ended = True
        self.proto.reset_stream(self.stream_id, 0)

    def get_write_buffer_size(self) -> int:
        return self.proto.stream_unsent(self.stream_id)


class _NoWriter:
    """The transport of a datagram sink (its frames never go through ``write``)."""

    __slots__ = ()

    def write(self, data: bytes) -> None:
        return None

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0


# -- hub sinks -------------------------------------------------------------------------------


class DatagramSink(StreamConnection):
    """A hub sink whose every frame is one datagram of a session (or a uni stream if big)."""

    __slots__ = ("session",)

    transport_kind = "wt"

    def __init__(self, registry: StreamRegistry, encoder: FrameEncoder,
                 session: WtSession) -> None:
        super().__init__(registry, encoder)
        self.session = session

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        if self.closed:
            return
        self._out.extend(frames)
        if not self._dirty:
            self._dirty = True
            self._flusher.schedule(self)

    def deliver(self, frame: bytes, message: Message) -> None:
        self.send_now(frame)

    def flush(self) -> None:
        self._dirty = False
        if self.closed:
            return
        out = self._out
        self._out = []
        self._out_bytes = 0
        for frame in out:
            if frame:
                self.session.send_datagram(frame)

    async def drain(self) -> None:
        self.flush()

    def close_transport(self, final: bytes = b"") -> None:
        self._finish()

    def close_stream_slow(self) -> None:  # never: datagrams are dropped, not queued
        self.session.close(CloseCode.SLOW_CONSUMER, "slow consumer")

    def shutdown(self) -> None:
        self.session.shutdown()

    def revoke(self) -> None:
        self.session.revoke()


class NativeWtStream(NativeWsConnection):
    """One client-opened bidirectional stream of ``/v1/wt``: the native protocol v1 (the
    ``/v1/ws`` code path), NDJSON framing, plus the ``"lane":"datagram"`` subscriptions."""

    __slots__ = ("session", "lines")

    transport_kind = "wt"

    def __init__(self, registry: StreamRegistry, session: WtSession, identity: Identity,
                 max_line_bytes: int) -> None:
        WsConnection.__init__(self, registry, NATIVE_WT)
        self.identity = identity
        self.slot = NO_SLOT  # the session holds the key's slot (one per session)
        self.initial = None
        self.session = session
        self.lines = LineReader(max_line_bytes)

    def receive(self, data: bytes) -> None:
        """Bytes of the client's half of the stream."""
        if self.closed:
            return
        self.last_seen = self.registry.loop.time()
        for line in self.lines.feed(data):
            if self.closed:
                return
            if isinstance(line, LineTooLong):
                self.send_error(PayloadTooLarge(
                    f"op line of {line.size}+ bytes is over the limit of "
                    f"{self.lines.max_bytes}; it was skipped"))
                continue
            try:
                text = line.decode()
            except UnicodeDecodeError:
                self.send_error(MalformedJson("op line is not UTF-8"))
                continue
            self.on_text(text)

    def send_text(self, payload: bytes) -> None:
        self.send_now(payload + b"\n")

    def flush(self) -> None:
        """Write as a TCP stream would, and pause while QUIC holds more than
        :data:`HIGH_WATER` unsent bytes (a peer that does not acknowledge): frames then wait
        in the outbox, where the slow-consumer limit applies, and replay pages wait in
        ``drain`` as they do on WebSocket."""
        super().flush()
        transport = self.transport
        if (not self._paused and not self.closed and transport is not None
                and transport.get_write_buffer_size() > HIGH_WATER):
            self.pause_writing()
            self.registry.loop.call_later(WATER_POLL_S, self._poll_water)

    def _poll_water(self) -> None:
        transport = self.transport
        if self.closed or transport is None:
            return
        if transport.get_write_buffer_size() <= LOW_WATER:
            self.resume_writing()
        else:
            self.registry.loop.call_later(WATER_POLL_S, self._poll_water)

    def send_error(self, error: WagerwireError) -> None:
        self.registry.errors["wt", "error", error.code] += 1
        self.send_text(native.encode_error(error))

    def on_text(self, text: str) -> None:
        if '"lane"' in text:
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and obj.get("lane") is not None:
                try:
                    self._lane_op(text, obj)
                except WagerwireError as exc:
                    self.send_error(exc)
                return
        super().on_text(text)

    def _lane_op(self, text: str, obj: dict[str, Any]) -> None:
        if obj["lane"] != "datagram":
            raise BadParameter('"lane" must be "datagram" (or absent: the stream)')
        op = native.parse_op(text)
        gate = self.registry.gate
        hub = self.registry.hub
        if isinstance(op, native.Subscribe):
            if op.since is not None:
                raise BadParameter("the datagram lane carries live values only: no since")
            hub.check_channel_count(op.channels, gate.max_subscriptions(self.identity))
            for name in op.channels:
                if not isinstance(name, str) or not name.startswith(LATEST_VALUE_PREFIX):
                    raise BadParameter(
                        f"the datagram lane carries latest-value channels only "
                        f"({LATEST_VALUE_PREFIX}*), not {str(name)[:60]!r}")
            channels = gate.resolve_channels(self.identity, op.channels)
            lane = self.session.lane()
            flt = op.filter
            limit = gate.max_subscriptions(self.identity)

            async def subscribe() -> None:
                await hub.subscribe(lane, channels, filter=flt, announce=self._lane_reply,
                                    max_channels=limit)

            self.run_in_order(subscribe)
        elif isinstance(op, native.Unsubscribe):
            hub.check_channel_count(op.channels)
            names = gate.resolve_channels(self.identity, op.channels)
            lane = self.session.lane()

            async def unsubscribe() -> None:
                removed = await hub.unsubscribe(lane, names)
                self.send_text(orjson.dumps(
                    {"op": "unsubscribed", "channels": removed, "lane": "datagram"}))

            self.run_in_order(unsubscribe)
        else:
            raise UnknownOp('"lane" goes with subscribe and unsubscribe only')

    def _lane_reply(self, reply: SubscribeReply) -> None:
        obj = orjson.loads(native.encode_subscribed(reply))
        obj["lane"] = "datagram"
        self.send_text(orjson.dumps(obj))

    def started(self, request: object) -> None:
        return None

    def tick(self, now: float, ping: bool) -> None:
        """No WebSocket pings: QUIC keeps the connection alive (and times it out)."""

    def close(self, code: int, reason: str) -> None:
        """Every ending of the stream's protocol ends the whole session (as on /v1/ws)."""
        self.session.close(code, reason)

    def shutdown(self) -> None:
        self.session.shutdown()

    def revoke(self) -> None:
        self.session.revoke()

    def expire(self) -> None:
        self.session.expire()


# -- sessions --------------------------------------------------------------------------------


class WtSession:
    """One WebTransport session (an accepted extended CONNECT) and what it opened."""

    __slots__ = ("proto", "session_id", "registry", "identity", "slot", "closed", "sinks",
                 "streams", "accepted", "_expiry", "_lane")

    def __init__(self, proto: WtProtocol, session_id: int, registry: StreamRegistry,
                 identity: Identity, slot: StreamSlot) -> None:
        self.proto = proto
        self.session_id = session_id
        self.registry = registry
        self.identity = identity
        self.slot = slot
        self.closed = False
        self.accepted = False  # the 200 went out (after the plan admitted the session)
        self.sinks: list[StreamConnection] = []
        self.streams: dict[int, NativeWtStream] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._lane: DatagramSink | None = None

    def opened(self) -> None:
        """The 200 is on its way: wire revocation and token expiry, then start."""
        self.accepted = True
        slot = self.slot
        if slot is not NO_SLOT:
            slot.on_revoke = self.revoke
            if slot.expires_at is not None:
                self._expiry = self.registry.loop.call_later(
                    max(0.0, slot.expires_at - time.time()), self.expire)

    def attach(self, sink: StreamConnection, stream_id: int | None) -> None:
        writer: Any = _NoWriter() if stream_id is None else _StreamWriter(self.proto, stream_id)
        sink.attach(writer, self.registry.loop.time())
        self.sinks.append(sink)

    def lane(self) -> DatagramSink:
        """The session's datagram lane sink (made on first use)."""
        if self._lane is None:
            self._lane = DatagramSink(self.registry, NATIVE_DATAGRAM, self)
            self.attach(self._lane, None)
        return self._lane

    # -- from the client -------------------------------------------------------------------

    def on_datagram(self, data: bytes) -> None:
        """Client datagrams are part of neither protocol: dropped (see subclasses)."""

    def on_stream(self, stream_id: int, data: bytes, ended: bool) -> None:
        """Data on a stream the client opened; the default refuses it (FIN, nothing read)."""
        if stream_id not in self.streams:
            self.proto.stop_reading(stream_id)

    def stream_gone(self, stream_id: int) -> None:
        """The client reset (or stopped reading) one of its streams: end that one only."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            if stream in self.sinks:
                self.sinks.remove(stream)
            stream.close_transport()

    # -- to the client ---------------------------------------------------------------------

    def send_datagram(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(frame) <= DATAGRAM_MAX:
            self.proto.send_datagram(self.session_id, frame)
        else:
            self.proto.send_uni(self.session_id, frame)

    # -- endings ---------------------------------------------------------------------------

    def close(self, code: int, reason: str) -> None:
        """Close with a ``CLOSE_WEBTRANSPORT_SESSION`` capsule, then FIN the CONNECT stream."""
        if self.closed:
            return
        self.registry.errors["wt", "close", str(int(code))] += 1
        self._teardown()
        self.proto.end_session(self.session_id, encode_close(int(code), reason))

    def terminated(self) -> None:
        """The client or the connection ended the session: release everything quietly."""
        if not self.closed:
            self._teardown()
            self.proto.end_session(self.session_id, b"")

    def _teardown(self) -> None:
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        for sink in self.sinks:
            sink.close_transport()
        self.sinks.clear()
        self.streams.clear()
        self.slot.release()
        self.on_closed()

    def on_closed(self) -> None:
        """Hook for subclasses."""

    def shutdown(self) -> None:
        self.close(CloseCode.GOING_AWAY, SHUTDOWN_REASON)

    def revoke(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "API key revoked")

    def expire(self) -> None:
        self.close(CloseCode.UNAUTHORIZED, "stream token expired: get a new one and resume")


class DataStreamWtSession(WtSession):
    """A Data Stream session: its dialect session subscribes at start; Rounds out as
    datagrams; nothing is read from the client."""

    __slots__ = ("session", "sink", "driver")

    def __init__(self, proto: WtProtocol, session_id: int, registry: StreamRegistry,
                 session: Session, slot: StreamSlot) -> None:
        super().__init__(proto, session_id, registry, session.identity, slot)
        self.session = session
        self.sink = DatagramSink(registry, session.encoder, self)
        self.driver = SessionDriver(self.sink, session, self.close)

    def opened(self) -> None:
        super().opened()
        self.attach(self.sink, None)
        self.session.start(self.sink.last_seen)
        self.driver.pump()

    def on_closed(self) -> None:
        self.driver.cancel()


class NativeWtSession(WtSession):
    """``/v1/wt``: every client-opened bidirectional stream is one native connection."""

    __slots__ = ("max_streams", "max_line_bytes", "_told")

    def __init__(self, proto: WtProtocol, session_id: int, registry: StreamRegistry,
                 identity: Identity, slot: StreamSlot, config: WtConfig) -> None:
        super().__init__(proto, session_id, registry, identity, slot)
        self.max_streams = config.max_streams
        self.max_line_bytes = config.max_line_bytes
        self._told = False

    def on_stream(self, stream_id: int, data: bytes, ended: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id & 0x2:  # a unidirectional stream: not part of /v1/wt
                self.proto.stop_reading(stream_id)
                return
            stream = NativeWtStream(self.registry, self, self.identity, self.max_line_bytes)
            if len(self.streams) >= self.max_streams:
                writer = _StreamWriter(self.proto, stream_id)
                writer.write(native.encode_error(RateLimited(
                    f"at most {self.max_streams} streams per session")) + b"\n")
                writer.close()
                self.proto.stop_reading(stream_id)
                self.registry.errors["wt", "error", RateLimited.code] += 1
                return
            self.streams[stream_id] = stream
            self.attach(stream, stream_id)
        if data:
            stream.receive(data)

    def on_datagram(self, data: bytes) -> None:
        """Client datagrams are not part of /v1/wt: one ``error`` per session says so."""
        if self._told or not self.streams:
            return
        self._told = True
        first = next(iter(self.streams.values()))
        first.send_error(UnknownOp("client datagrams are not part of /v1/wt; "
                                   "they are discarded"))


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

