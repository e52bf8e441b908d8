"""What every streaming connection shares: the bounded outbox and the coalescing flusher.

A connection never writes on delivery. :meth:`StreamConnection.deliver` appends the shared,
pre-encoded frame to the connection's outbox and, the first time in a loop turn, registers the
connection with the :class:`Flusher`; one ``call_soon`` per loop turn then writes each dirty
connection's frames with a single ``transport.write``. While the transport has paused writing
(its buffer is past the high-water mark, 64 KiB: the peer is not reading), frames stay in the
outbox, where they can still be dropped. Past ``outbox_limit`` bytes (queued, or in the
transport's own buffer) the connection is a slow consumer: its queue is dropped and it is
closed with a documented code, so it can never stall the hub or its neighbours. The closing
frame then waits behind what the transport already holds (usually at most the high-water
mark), and the connection is kept for up to ``ping_interval + pong_timeout`` for a peer that
resumes reading late to receive it.

A connection subscribed to a conflating channel (core/conflation.py) also remembers what its
outbox holds (``_src``, one tuple per turn). Past the limit it first *falls behind* on its
conflating channels: what it queued of them is dropped, and until the peer reads again it
takes nothing more of them (one dictionary look-up per turn and channel, nothing per
message). Once the transport wants data again, each such channel is caught up from the hub's
shared latest-per-key table (:meth:`Hub.catch_up`): a notice of the offsets it skips
(:meth:`StreamConnection.encode_superseded`; native clients hear of it, dialects do not),
then the newest message of every key updated meanwhile and every lifecycle message, in
offset order, then live again. Only when dropping them does not bring the outbox back under
the limit (or the table cannot tell) is it cut like any other. Its transport buffer stays
within the high-water mark plus one outbox: it is written only while the peer reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from wagerwire.auth.identity import NO_SLOT, Gate, StreamSlot
from wagerwire.core.conflation import PolicyTable, Superseded
from wagerwire.core.messages import Message

if TYPE_CHECKING:
    from wagerwire.core.hub import FrameEncoder, Hub

__all__ = ["Flusher", "StreamConfig", "StreamConnection", "StreamRegistry", "Tally",
           "dialect_of"]

log = logging.getLogger("wagerwire.transports")


@dataclass(slots=True)
class StreamConfig:
    """Per-connection limits and timers shared by WebSocket and SSE."""

    outbox_limit: int = 4 * 1024 * 1024
    ping_interval: float = 20.0
    pong_timeout: float = 20.0
    sse_heartbeat: float = 15.0
    max_frame_bytes: int = 65536 + 4096
    max_body_bytes: int = 1024 * 1024
    max_header_bytes: int = 65536
    header_timeout: float = 10.0  # HTTP: whole request head, and idle keep-alive (408/close)
    body_timeout: float = 30.0  # HTTP: request body after its head (408)
    abort_after: float = 5.0


HOLD_S = 0.001
CONFLATING_SNDBUF = 64 * 1024  # kernel send buffer of a connection that may conflate


def dialect_of(encoder: object) -> str:
    """The dialect a frame encoder speaks, for metric labels: its ``dialect`` attribute, else
    the name of its module under ``wagerwire.dialects``, else ``native``."""
    name = getattr(encoder, "dialect", None)
    if isinstance(name, str):
        return name
    module = type(encoder).__module__
    if module.startswith("wagerwire.dialects."):
        return module.rsplit(".", 1)[1]
    return "native"


class Tally:
    """The shared label and rare-event counters of one (transport, dialect); read by
    ``/metrics`` at scrape time. Nothing here is bumped per message or per write: the hub
    counts messages and bytes per frame format once per run of subscribers."""

    __slots__ = ("key", "slow_consumers", "conflated")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.slow_consumers = 0
        self.conflated = 0  # queued messages dropped because a newer one of their key came


class Flusher:
    """Writes every dirty connection once per event-loop turn.

    When ``busy()`` says more messages are about to be delivered (a store commit is in
    flight), the flush waits once, for ``HOLD_S``, so those messages share the same write:
    under saturation this doubles the frames per write (bench/RESULTS.md); when the hub is
    idle nothing waits.
    """

    __slots__ = ("loop", "pending", "scheduled", "observe", "_busy", "_held")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, busy: Callable[[], bool] | None = None
    ) -> None:
        # Called once per flush, before any write, with the connections about to be written
        # (the observability layer times the fan-out there: per flush, never per message).
        self.observe: Callable[[list[StreamConnection]], None] | None = None
        self.loop = loop
        # Connections append themselves here and call ``arm`` unless ``scheduled`` (see
        # StreamConnection.deliver: one method call less per subscriber and message).
        self.pending: list[StreamConnection] = []
        self.scheduled = False
        self._busy = busy
        self._held = False

    def schedule(self, conn: StreamConnection) -> None:
        self.pending.append(conn)
        if not self.scheduled:
            self.arm()

    def arm(self) -> None:
        """Run the flush at the end of this loop turn."""
        self.scheduled = True
        self.loop.call_soon(self._run)

    def _run(self) -> None:
        busy = self._busy
        if not self._held and busy is not None and busy():
            self._held = True
            self.loop.call_later(HOLD_S, self._run)
            return
        self._held = False
        self.scheduled = False
        pending = self.pending
        self.pending = []
        if self.observe is not None and pending:
            self.observe(pending)
        for conn in pending:
            conn.flush()


class StreamRegistry:
    """The server's live streaming connections (for heartbeats and shutdown)."""

    __slots__ = ("connections", "flusher", "hub", "config", "closing", "slow_consumers", "gate",
                 "loop", "tallies", "errors", "opened", "kinds", "conflated")

    def __init__(
        self, hub: Hub, flusher: Flusher, config: StreamConfig, gate: Gate | None = None
    ) -> None:
        self.hub = hub
        self.gate = gate or Gate()
        self.flusher = flusher
        # Per-frame code uses this, not asyncio.get_running_loop(): that one calls getpid()
        # (a system call) every time, on CPython 3.11.
        self.loop = flusher.loop
        self.config = config
        self.connections: set[StreamConnection] = set()
        self.closing = False
        self.slow_consumers = 0
        self.conflated = 0  # queued messages dropped by conflation, all connections
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.opened = 0  # connections made; each one's number is its ``conn_id``
        self.kinds: dict[object, tuple[str, str]] = {}  # frame encoder -> (transport, dialect)
        # Error frames sent and close codes, by (transport, "error"|"close", code).
        self.errors: Counter[tuple[str, str, str]] = Counter()

    def tally(self, transport: str, encoder: object) -> Tally:
        """The shared write counters of connections of this transport and encoder's dialect."""
        key = self.kinds.get(encoder)
        if key is None or key[0] != transport:
            key = self.kinds[encoder] = (transport, dialect_of(encoder))
        found = self.tallies.get(key)
        if found is None:
            found = self.tallies[key] = Tally(key)
        return found


class StreamConnection(asyncio.Protocol):
    """Base of the WebSocket and SSE connections: outbox, flush, slow-consumer policy."""

    __slots__ = (
        "transport",
        "registry",
        "encoder",
        "_out",
        "_out_bytes",
        "_dirty",
        "closed",
        "last_seen",
        "_drain_waiter",
        "_paused",
        "_limit",
        "_flusher",
        "_expiry",
        "_grace",
        "tally",
        "conn_id",
        "_src",
        "_policies",
        "_lag",
        "__weakref__",
    )

    #: The transport label of this connection class on ``/metrics``.
    transport_kind: ClassVar[str] = "stream"

    def __init__(self, registry: StreamRegistry, encoder: FrameEncoder) -> None:
        self.registry = registry
        self.encoder = encoder
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._dirty = False
        self.closed = False
        self.last_seen = 0.0
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._limit = registry.config.outbox_limit
        self._flusher = registry.flusher
        self._expiry: asyncio.TimerHandle | None = None
        self._grace = 0.0  # set by a slow-consumer cut: how long its close may wait to be read
        self.tally = registry.tally(self.transport_kind, encoder)
        registry.opened += 1
        self.conn_id = registry.opened
        # What the outbox holds, turn by turn, once a conflating subscription exists.
        self._src: list[bytes | tuple[list[bytes], list[Message]]] | None = None
        self._policies: PolicyTable | None = None
        self._lag: _Lag | None = None  # conflating channels it fell behind on, or just caught up

    def enable_conflation(self, policies: PolicyTable) -> None:
        """The hub calls this when the connection subscribes to a conflating channel.

        The kernel's send buffer is capped too (``CONFLATING_SNDBUF``): left to autotune it
        holds megabytes of prices no one will want by the time they are read, out of reach of
        conflation; capped, what the peer cannot take yet waits in the outbox, where a newer
        price replaces it.
        """
        if self._src is None:
            self._policies = policies
            self._src = list(self._out)
            transport = self.transport
            with contextlib.suppress(OSError, AttributeError):  # not every transport has one
                sock = transport.get_extra_info("socket") if transport is not None else None
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CONFLATING_SNDBUF)

    def encode_superseded(self, notice: Superseded) -> bytes:
        """This connection's form of a notice of superseded offsets (b"": none)."""
        return b""

    @property
    def queued_bytes(self) -> int:
        """Bytes in the outbox, not yet handed to the transport."""
        return self._out_bytes

    # -- asyncio.Protocol ------------------------------------------------------------------

    def attach(self, transport: asyncio.Transport, loop_time: float) -> None:
        """Take over ``transport`` after the HTTP layer has handed it to us.

        Every stream that holds a key's slot (native or dialect) closes when that key is
        revoked: the slot's ``on_revoke`` is wired here, once for all connection kinds; and
        one opened with a stream token closes when the token expires (:meth:`expire`).
        """
        self.transport = transport
        self.last_seen = loop_time
        self.registry.connections.add(self)
        slot = getattr(self, "slot", None)
        if isinstance(slot, StreamSlot) and slot is not NO_SLOT:
            slot.on_revoke = self.revoke
            if slot.expires_at is not None:
                self._expiry = self.registry.loop.call_later(
                    max(0.0, slot.expires_at - time.time()), self.expire
                )

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()
        # what waited in the outbox, or the catch-up of channels it fell behind on
        if (self._out or self._lag is not None) and not self._dirty and not self.closed:
            self._dirty = True
            self._flusher.schedule(self)

    # -- delivery --------------------------------------------------------------------------

    def deliver(self, frame: bytes, message: Message) -> None:
        """Queue a shared frame (replay, and connections that rewrite frames one by one)."""
        if self.closed or (self._lag is not None and self.lag_drops(message)):
            return
        self._out.append(frame)
        self._out_bytes += len(frame)
        src = self._src
        if src is not None:
            src.append(([frame], [message]))
        if not self._dirty:
            self._dirty = True
            self._flusher.schedule(self)

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        """Queue a turn's shared frames at once (the hub joined them for every subscriber).

        The body of :meth:`send_now` with the flusher's ``schedule`` inlined, repeated rather
        than called: this runs once per subscriber per turn on the fan-out path
        (bench/RESULTS.md).
        """
        if self.closed:
            return
        lag = self._lag
        if lag is not None:
            channel = messages[0].channel
            if channel in lag.behind:
                return
            if channel in lag.floors:
                _deliver_each(self, frames, joined, messages)
                return
        self._out.append(joined)
        self._out_bytes += len(joined)
        src = self._src
        if src is not None:
            src.append((frames, messages))
        if not self._dirty:
            self._dirty = True
            flusher = self._flusher
            flusher.pending.append(self)
            if not flusher.scheduled:
                flusher.arm()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A connection that rewrites frames in ``deliver`` must see each one: unless it also
        defines ``deliver_many``, it gets them one by one."""
        super().__init_subclass__(**kwargs)
        if "deliver" in cls.__dict__ and "deliver_many" not in cls.__dict__:
            cls.deliver_many = _deliver_each  # type: ignore[method-assign]

    def send_now(self, data: bytes) -> None:
        """Queue bytes in order with everything queued before; the flusher writes them at the
        end of this loop turn. Past the outbox limit it is the flush (never this call, which
        may run inside the hub's iteration over subscribers) that cuts the connection."""
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        src = self._src
        if src is not None:
            src.append(data)
        if not self._dirty:
            self._dirty = True
            self._flusher.schedule(self)

    def flush(self) -> None:
        self._dirty = False
        transport = self.transport
        if self.closed or transport is None:
            return
        lag = self._lag
        if lag is not None and lag.behind and not self._paused and not self._catch_up():
            return
        out = self._out
        if not out:
            return
        src = self._src
        if self._out_bytes > self._limit and (src is None or not self._fall_behind()):
            self.slow_consumer()
            return
        if self._paused:
            return  # the peer is not reading: keep the frames (droppable) until resume_writing
        out = self._out
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()
        self._out_bytes = 0
        if src is not None:
            self._src = []
            lag = self._lag
            if lag is not None and lag.behind and not self._paused and not self._dirty:
                # Fell behind in one burst without the peer stopping: catch up next turn.
                self._dirty = True
                self._flusher.schedule(self)
            return  # written only while the peer reads: bounded by the high-water mark
        if transport.get_write_buffer_size() > self._limit:
            self.slow_consumer()

    # -- conflation (only connections with a conflating subscription) ----------------------

    def lag_drops(self, message: Message) -> bool:
        """Whether a message must not be queued: its channel is behind (the catch-up will
        stand for it), or the catch-up already covered it."""
        lag = self._lag
        if lag is None:
            return False
        channel = message.channel
        if channel in lag.behind:
            return True
        floor = lag.floors.get(channel)
        if floor is None:
            return False
        if message.offset <= floor:
            return True
        del lag.floors[channel]
        if not lag.behind and not lag.floors:
            self._lag = None
        return False

    def _fall_behind(self) -> bool:
        """Drop what is queued of conflating channels and stop taking them until the peer
        reads; True when the outbox is back within its limit."""
        src, policies = self._src, self._policies
        if src is None or policies is None:
            return False
        lag = self._lag
        if lag is None:
            lag = self._lag = _Lag()
        behind, floors = lag.behind, lag.floors
        kept: list[bytes | tuple[list[bytes], list[Message]]] = []
        out: list[bytes] = []
        size = dropped = dropped_bytes = 0
        for entry in src:
            if isinstance(entry, tuple):
                frames, messages = entry
                left: list[bytes] = []
                left_msgs: list[Message] = []
                for frame, message in zip(frames, messages, strict=True):
                    channel = message.channel
                    if channel in behind or policies.conflates(channel):
                        if channel not in behind:
                            behind[channel] = message.offset - 1  # what the peer has
                            floors.pop(channel, None)
                        dropped += 1
                        dropped_bytes += len(frame)
                    else:
                        left.append(frame)
                        left_msgs.append(message)
                if not left:
                    continue
                entry = (left, left_msgs)
                data = b"".join(left)
            else:
                data = entry
            kept.append(entry)
            out.append(data)
            size += len(data)
        if not dropped:
            if not lag.behind and not lag.floors:
                self._lag = None
            return False
        self._src = kept
        self._out = out
        self._out_bytes = size
        # What the catch-up will send, at the size of what was dropped: when that does not
        # fit either, there is nothing left to conflate (all distinct keys, or lifecycle).
        estimate = size
        per_frame = dropped_bytes / dropped
        hub = self.registry.hub
        for channel, after in behind.items():
            found = hub.catch_up(self, channel, after)
            if found is None:
                return False
            estimate += int(len(found[0]) * per_frame)
        return estimate <= self._limit

    def _catch_up(self) -> bool:
        """The peer reads again: send each channel it fell behind on as the hub's catch-up
        (notice, newest per key and lifecycle, in offset order). False: it was cut instead."""
        lag = self._lag
        if lag is None:
            return True
        hub = self.registry.hub
        encode = self.encoder.encode
        while lag.behind:
            channel, after = lag.behind.popitem()
            found = hub.catch_up(self, channel, after)
            if found is None:
                self.slow_consumer()
                return False
            items, ranges, epoch, upto = found
            if ranges:
                skipped = sum(last - first + 1 for first, last in ranges)
                self.tally.conflated += skipped
                self.registry.conflated += skipped
                notice = self.encode_superseded(Superseded(channel, epoch, ranges))
                if notice:
                    self.send_now(notice)
            for message in items:
                self.deliver(encode(message), message)
            lag.floors[channel] = upto
        if self._out_bytes > self._limit:
            # The latest state alone does not fit the outbox: nothing is left to conflate.
            self.slow_consumer()
            return False
        return True

    async def drain(self) -> None:
        """Wait until queued frames reached the socket (used between replay pages)."""
        self.flush()
        if self.closed or self.transport is None:
            return
        if not self._paused:
            return
        loop = asyncio.get_running_loop()
        self._drain_waiter = loop.create_future()
        await self._drain_waiter

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._drain_waiter = None

    # -- closing ---------------------------------------------------------------------------

    def slow_consumer(self) -> None:
        """Drop the queue and close with the slow-consumer code; the client resumes."""
        log.info("closing slow consumer %d", self.conn_id,
                 extra={"conn_id": self.conn_id, "transport": self.tally.key[0],
                        "dialect": self.tally.key[1], "queued_bytes": self._out_bytes})
        self.registry.slow_consumers += 1
        self.tally.slow_consumers += 1
        self._out.clear()
        self._out_bytes = 0
        self._src = None
        config = self.registry.config
        self._grace = config.ping_interval + config.pong_timeout
        self.close_stream_slow()

    def close_stream_slow(self) -> None:
        raise NotImplementedError

    def close_transport(self, final: bytes = b"") -> None:
        """Write ``final`` after what is queued, close, and abort if the peer never reads.

        The peer gets ``abort_after`` seconds to read what is left, or, after a slow-consumer
        cut, ``ping_interval + pong_timeout``: a client that paused reading finds the closing
        frame when it resumes, instead of a reset.
        """
        transport = self.transport
        if self.closed or transport is None:
            return
        out = self._out
        if out and self._out_bytes <= self._limit:  # written even while paused: it is the end
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if final:
            transport.write(final)
        self._finish()
        transport.close()
        grace = self._grace or self.registry.config.abort_after
        self.registry.loop.call_later(grace, _abort_if_open, transport)

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._expiry is not None:
            self._expiry.cancel()
        self._out.clear()
        self._out_bytes = 0
        self._src = None
        self._wake_drain()
        registry = self.registry
        registry.connections.discard(self)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("stream %d closed", self.conn_id,
                      extra={"conn_id": self.conn_id, "transport": self.tally.key[0],
                             "dialect": self.tally.key[1]})
        orphaned = registry.hub.remove_sink(self)
        if orphaned:
            asyncio.get_running_loop().create_task(_release(registry.hub, orphaned))
        self.on_closed()

    def started(self, request: Any) -> None:
        """Called once the transport is ours (SSE writes its response head here)."""

    def on_closed(self) -> None:
        """Hook for subclasses (e.g. cancel op tasks)."""

    def tick(self, now: float, ping: bool) -> None:
        """Called by the server's one timer; ``ping`` is true once per ping interval."""

    def shutdown(self) -> None:
        """Close because the server is stopping (a resume hint is sent where possible)."""
        self.close_transport()

    def revoke(self) -> None:
        """Close because the key behind this stream was revoked."""
        self.close_transport()

    def expire(self) -> None:
        """Close because the stream token that opened this stream expired."""
        self.revoke()


class _Lag:
    """A connection's conflating channels it fell behind on (channel -> the offset its peer
    has), and those just caught up (channel -> the offset the catch-up reached)."""

    __slots__ = ("behind", "floors")

    def __init__(self) -> None:
        self.behind: dict[str, int] = {}
        self.floors: dict[str, int] = {}


def _deliver_each(
    self: StreamConnection, frames: list[bytes], joined: bytes, messages: list[Message]
) -> None:
    for frame, message in zip(frames, messages, strict=True):
        self.deliver(frame, message)


def _abort_if_open(transport: asyncio.Transport) -> None:
    if transport.get_write_buffer_size():
        transport.abort()


async def _release(hub: Hub, channels: list[str]) -> None:
    for channel in channels:
        await hub.broker.unsubscribe(channel)
