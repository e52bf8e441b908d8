"""The connections that drive any dialect session: one WebSocket class, one SSE class.

A route-table row names a :class:`~wagerwire.dialects.base.Dialect`; :func:`dialect_stream`
turns it into the route's factory. The factory feeds the request to ``dialect.accept`` before
any byte of the stream is written (so refusals are plain HTTP errors at the upgrade), counts
the stream against the key's plan, and opens a connection around the session. From then on
the connection only feeds the session (client text, hub results, the timer) and writes what it
drains; every wire rule stays in the dialect module.

The hot path is the shared transport's: the hub hands every subscriber of a dialect the
frames its one encoder made, and :class:`DialectWsConnection` queues them as they are
(``deliver_many``, batched). Only :class:`DialectSseConnection` rewrites each frame
(``Session.rewrite``: the SSE ``id:`` line carries the connection's own resume token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wagerwire.auth.identity import Identity, StreamSlot
from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.dialects.base import (
    Await,
    Awaited,
    Close,
    Dialect,
    DialectOp,
    Directory,
    HubEvent,
    LatestRead,
    OpFailed,
    Publish,
    Published,
    ReadLatest,
    Session,
    StreamRequest,
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
)
from wagerwire.errors import CloseCode, InternalError, WagerwireError
from wagerwire.transports.http import HttpRequest
from wagerwire.transports.sse import SseConnection
from wagerwire.transports.stream import StreamConnection, StreamRegistry
from wagerwire.transports.websocket import WsConnection

__all__ = [
    "DialectSseConnection",
    "DialectWsConnection",
    "SessionDriver",
    "dialect_stream",
    "directory_of",
    "stream_request",
]

log = logging.getLogger("wagerwire.transports.dialects")

Factory = Callable[[HttpRequest, StreamRegistry], StreamConnection]


def stream_request(request: HttpRequest) -> StreamRequest:
    """The dialect's view of an HTTP request head."""
    query = {k: v[-1] for k, v in request.query().items() if v} if request.query_string else {}
    return StreamRequest(request.params, query, request.headers)


class _Directory:
    """:class:`~wagerwire.dialects.base.Directory` over a server's gate and hub."""

    __slots__ = ("registry",)

    def __init__(self, registry: StreamRegistry) -> None:
        self.registry = registry

    def authenticate(self, headers: Mapping[str, str], query_token: str | None) -> Identity:
        return self.registry.gate.authenticate(headers, query_token)

    def resolve_channel(self, identity: Identity, channel: str) -> str:
        return self.registry.gate.resolve_channel(identity, channel)

    def channel_exists(self, channel: str) -> bool:
        return self.registry.hub.broker.position(channel) is not None

    def validate_subscription(
        self, channels: Sequence[str], since: Mapping[str, Position] | None
    ) -> None:
        self.registry.hub.validate_subscription(
            list(channels), dict(since) if since is not None else None
        )


def directory_of(registry: StreamRegistry) -> Directory:
    """The dialects' :class:`~wagerwire.dialects.base.Directory` over a server's gate and hub
    (for transports that accept sessions outside the HTTP route table: WebTransport)."""
    return _Directory(registry)


def dialect_stream(dialect: Dialect) -> Factory:
    """The stream factory of one route-table row: accept, count the stream, connect."""
    cls: type[DialectWsConnection | DialectSseConnection] = (
        DialectWsConnection if dialect.transport == "ws" else DialectSseConnection
    )

    def factory(request: HttpRequest, registry: StreamRegistry) -> StreamConnection:
        session = dialect.accept(stream_request(request), _Directory(registry))
        slot = registry.gate.open_stream(session.identity, dialect.transport)
        if session.once is not None:
            slot.spend(session.once)
        return cls(registry, session, slot)

    return factory


class SessionDriver:
    """Runs a session's ops against the hub, in order, and feeds each result back.

    ``conn`` is the connection the hub delivers to; ``end`` closes it with a code and reason
    (None: a WebSocket's ``close``). The driver is the session's waker itself (no bound method kept
    per connection).
    """

    __slots__ = ("conn", "session", "end", "_queue", "_task")

    def __init__(
        self, conn: StreamConnection, session: Session,
        end: Callable[[int, str], None] | None = None,
    ) -> None:
        self.conn = conn
        self.session = session
        self.end = end
        self._queue: list[DialectOp] | None = None  # short, made on the first op
        self._task: asyncio.Task[None] | None = None
        session.waker = self

    def __call__(self) -> None:
        if not self.conn.closed:
            self.conn.registry.loop.call_soon(self.pump)

    def pump(self) -> None:
        """Write what the session has to send, then start or queue the ops it emitted."""
        session = self.session
        conn = self.conn
        for data in session.data_to_send():
            conn.send_now(data)
        for op in session.ops_received():
            if isinstance(op, Close):
                if self.end is None:
                    assert isinstance(conn, WsConnection)
                    conn.close(op.code, op.reason)
                else:
                    self.end(op.code, op.reason)
                return
            if self._queue is None:
                self._queue = []
            self._queue.append(op)
        if self._queue and self._task is None and not conn.closed:
            self._task = conn.registry.loop.create_task(self._run())

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        try:
            while queue and not self.conn.closed:
                event = await self._execute(queue.pop(0))
                if self.conn.closed:
                    return
                self.session.receive_event(event)
                self.pump()
        finally:
            self._task = None

    async def _execute(self, op: DialectOp) -> HubEvent:
        conn = self.conn
        hub = conn.registry.hub
        try:
            match op:
                case Subscribe(channels=channels, since=since, announce=announce, filter=flt):
                    replies = await hub.subscribe(
                        conn, list(channels), filter=flt,
                        since=dict(since) if since is not None else None,
                        announce=self._announce if announce else None,
                        # the plan's delay and minimum interval: a free odds tier gets its
                        # prices late and conflated in every dialect, from the shared lane
                        rate=conn.registry.gate.delivery_rate(self.session.identity),
                    )
                    return Subscribed(op, tuple(replies))
                case Unsubscribe(channels=channels):
                    return Unsubscribed(op, tuple(await hub.unsubscribe(conn, channels)))
                case Publish(channel=channel, data=data, attrs=attrs):
                    result = await hub.publish(channel, data, attrs=attrs)
                    return Published(op, result.message.offset)
                case Await(awaitable=awaitable):
                    return Awaited(op, await awaitable)
                case ReadLatest(channels=channels, limit=limit):
                    latest: dict[str, Sequence[Message]] = {}
                    for channel in channels:
                        latest[channel] = await hub.store.read_last(channel, limit)
                    return LatestRead(op, latest)
        except WagerwireError as exc:
            return OpFailed(op, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dialect op %r failed on connection %s", op, id(conn))
            return OpFailed(op, InternalError("internal error; the server logged it"))
        raise TypeError(f"no transport for op {op!r}")

    def _announce(self, reply: SubscribeReply) -> None:
        self.session.receive_reply(reply)
        self.pump()

    def cancel(self) -> None:
        """The connection closed: stop its ops, then run the publishes the session emits as
        it stops (they outlive the connection; a failure is logged)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self.session.stop()
        for op in self.session.ops_received():
            if isinstance(op, Publish):
                self.conn.registry.loop.create_task(self._detached(op))

    async def _detached(self, op: Publish) -> None:
        event = await self._execute(op)
        if isinstance(event, OpFailed):
            log.warning("publish after close failed on %s: %s", op.channel, event.error.message)


class DialectWsConnection(WsConnection):
    """A WebSocket that drives one dialect session (frames shared, never rewritten)."""

    __slots__ = ("session", "slot", "driver")

    def __init__(self, registry: StreamRegistry, session: Session, slot: StreamSlot) -> None:
        super().__init__(registry, session.encoder)
        self.session = session
        self.slot = slot
        self.driver = SessionDriver(self, session)

    def started(self, request: Any) -> None:
        self.session.start(self.last_seen)
        self.driver.pump()

    # A dialect's encoder answers b"" for a message its wire does not carry: skip those
    # without waking the flusher. Both are defined, so frames still arrive batched.

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        """:meth:`StreamConnection.deliver_many`'s body, inlined (once per subscriber per
        turn on the fan-out path), plus the skip of an empty turn."""
        if self.closed or not joined:
            return
        lag = self._lag
        if lag is not None:
            channel = messages[0].channel
            if channel in lag.behind:
                return
            if channel in lag.floors:
                for frame, message in zip(frames, messages, strict=True):
                    self.deliver(frame, message)
                return
        session = self.session
        src = self._src
        if session.selects:
            joined = session.select(frames, joined, messages)
            if not joined:
                return
            if src is not None:
                src.append(joined)  # rewritten as a whole: never conflated
        elif src is not None:
            src.append((frames, messages))
        self._out.append(joined)
        self._out_bytes += len(joined)
        if not self._dirty:
            self._dirty = True
            flusher = self._flusher
            flusher.pending.append(self)
            if not flusher.scheduled:
                flusher.arm()

    def deliver(self, frame: bytes, message: Message) -> None:
        if self._lag is not None and self.lag_drops(message):
            return
        if frame:
            session = self.session
            if session.selects:
                frame = session.select([frame], frame, [message])
                if frame:
                    self.send_now(frame)
                return
            StreamConnection.deliver(self, frame, message)

    def on_text(self, text: str) -> None:
        self.session.receive_text(text)
        self.driver.pump()

    def shutdown(self) -> None:
        """The session's own goodbye when its wire has one (Pusher's 4200), else 1001."""
        if self.session.shutdown():
            self.driver.pump()
        else:
            super().shutdown()

    def tick(self, now: float, ping: bool) -> None:
        """The server's WS ping, unless the session keeps its own keep-alive cadence."""
        session = self.session
        interval = session.ping_interval
        if interval is None:
            super().tick(now, ping)
            return
        if now - self.last_seen > interval + self.registry.config.pong_timeout:
            self.close(CloseCode.HEARTBEAT_TIMEOUT, "no pong or data within the timeout")
            return
        session.tick(now)
        self.driver.pump()

    def on_closed(self) -> None:
        super().on_closed()
        self.driver.cancel()
        self.slot.release()


class DialectSseConnection(SseConnection):
    """An event stream that drives one dialect session; each frame goes through
    ``Session.rewrite`` (the per-connection ``id:`` line)."""

    __slots__ = ("session", "slot", "driver")

    def __init__(self, registry: StreamRegistry, session: Session, slot: StreamSlot) -> None:
        super().__init__(registry, session.encoder)
        self.session = session
        self.slot = slot
        self.driver = SessionDriver(self, session, self._end)

    def started(self, request: Any) -> None:
        """The session writes its own response head (the dialect's headers)."""
        self.next_beat = self.last_seen + self.registry.config.sse_heartbeat
        self.session.start(self.last_seen)
        self.driver.pump()

    def _end(self, code: int, reason: str) -> None:
        self.close_transport()

    def deliver(self, frame: bytes, message: Message) -> None:
        if self._lag is not None and self.lag_drops(message):
            return
        data = self.session.rewrite(frame, message)
        if data:
            StreamConnection.deliver(self, data, message)

    def on_closed(self) -> None:
        self.driver.cancel()
        self.slot.release()
