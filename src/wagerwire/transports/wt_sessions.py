"""WebTransport sessions and their hub sinks: what a session of ``/wt…`` or ``/v1/wt`` is.

:mod:`wagerwire.transports.webtransport` (the QUIC connection and the UDP listener) accepts an
extended CONNECT and makes one of these:

* :class:`DataStreamWtSession`: a Data Stream dialect session (seed 004) driven by
  :class:`~wagerwire.transports.dialects.SessionDriver`; its one hub sink,
  :class:`DatagramSink`, sends each Round as one datagram;
* :class:`NativeWtSession`: ``/v1/wt``; each bidirectional stream the client opens is a
  :class:`NativeWtStream`, the native protocol v1 with NDJSON framing (the ``/v1/ws`` code
  path), plus a :class:`DatagramSink` for ``"lane":"datagram"`` subscriptions.

The sinks are :class:`~wagerwire.transports.stream.StreamConnection` subclasses (outbox,
coalescing flusher, shared frames, slow-consumer policy); they write through the
:class:`QuicSide` the connection offers. A session ends with a ``CLOSE_WEBTRANSPORT_SESSION``
capsule whose code is the WebSocket close code of the same cause.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from wagerwire.auth.identity import NO_SLOT, Identity, StreamSlot
from wagerwire.core.conflation import PolicyTable
from wagerwire.core.hub import FrameEncoder
from wagerwire.core.messages import Message, SubscribeReply
from wagerwire.dialects import native
from wagerwire.dialects.base import Session
from wagerwire.errors import (
    BadParameter,
    CloseCode,
    MalformedJson,
    PayloadTooLarge,
    RateLimited,
    UnknownOp,
    WagerwireError,
)
from wagerwire.transports.dialects import SessionDriver
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.websocket import SHUTDOWN_REASON, NativeWsConnection, WsConnection
from wagerwire.wire.webtransport import DATAGRAM_MAX, LineReader, LineTooLong, encode_close

__all__ = [
    "LATEST_VALUE_PREFIX",
    "NATIVE_DATAGRAM",
    "NATIVE_WT",
    "DataStreamWtSession",
    "DatagramSink",
    "NativeDatagramEncoder",
    "NativeWtEncoder",
    "NativeWtSession",
    "NativeWtStream",
    "QuicSide",
    "WtConfig",
    "WtSession",
]


class QuicSide(Protocol):
    """What a session asks of its QUIC connection (:class:`~wagerwire.transports.
    webtransport.WtProtocol`)."""

    def send_stream(self, stream_id: int, data: bytes, end: bool) -> None: ...

    def reset_stream(self, stream_id: int, code: int) -> None: ...

    def stop_reading(self, stream_id: int) -> None: ...

    def stream_unsent(self, stream_id: int) -> int: ...

    def send_datagram(self, session_id: int, frame: bytes) -> None: ...

    def send_uni(self, session_id: int, payload: bytes) -> None: ...

    def end_session(self, session_id: int, capsule: bytes) -> None: ...


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

    def __init__(self, proto: QuicSide, stream_id: int) -> None:
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

    def enable_conflation(self, policies: PolicyTable) -> None:
        """Datagrams are sent or dropped at once, never queued: nothing to conflate."""

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

    def __init__(self, proto: QuicSide, session_id: int, registry: StreamRegistry,
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

    def __init__(self, proto: QuicSide, session_id: int, registry: StreamRegistry,
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

    def __init__(self, proto: QuicSide, session_id: int, registry: StreamRegistry,
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
