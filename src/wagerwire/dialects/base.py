"""What every dialect is: a sans-I/O session driven the same way by any transport.

A dialect is one wire format (Stake, TrackerSino, Data Stream, ...). It has two parts:

* :class:`Dialect`, one instance per route-table row: checks a stream request before the
  upgrade (:meth:`Dialect.accept`, which answers a :class:`Session` or raises a
  ``WagerwireError``, sent as a plain HTTP error) and owns the dialect's **one** shared
  encoder, so the hub encodes a message once per dialect, never per connection;
* :class:`Session`, one per connection, in the "feed, then drain" shape of websockets'
  ``Protocol``. Feed it what happened, then drain what to do::

      session.start(now)                       # the stream is open
      session.receive_text(text)               # a client data frame
      session.receive_event(Subscribed(op))    # an op the transport ran has finished
      session.receive_reply(reply)             # a channel's ``subscribed`` answer
      session.tick(now)                        # the server's timer (keep-alive cadence)
      for op in session.ops_received(): ...    # hub work to run, in order
      for data in session.data_to_send(): ...  # exact bytes to write, in order

Every op a session emits gets exactly one event back (its result or :class:`OpFailed`),
so a session that must wait for a result (a snapshot before subscribing) can hold later
client frames until then. Sessions never read a clock (time comes in as ``now``) and import
no asyncio or socket: tests feed them text and assert exact frames (tests/unit/dialects/).

Messages reach a connection as frames the dialect's encoder made once for every subscriber;
only where the wire demands per-connection bytes (an SSE ``id:`` line) does a session rewrite
them, in :meth:`Session.rewrite`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from wagerwire.auth.identity import Identity
from wagerwire.core.channels import Filter
from wagerwire.core.messages import Message, Position, SubscribeReply
from wagerwire.errors import CloseCode, WagerwireError
from wagerwire.types import Json

__all__ = [
    "Await",
    "Awaited",
    "Clock",
    "Close",
    "Dialect",
    "DialectOp",
    "Directory",
    "HubEvent",
    "LatestRead",
    "MessageEncoder",
    "OpFailed",
    "Publish",
    "Published",
    "ReadLatest",
    "Session",
    "StreamRequest",
    "Subscribe",
    "Subscribed",
    "Unsubscribe",
    "Unsubscribed",
    "close_code",
]

Clock = Callable[[], int]
"""Wall-clock Unix milliseconds, for the few formats that stamp a send time into a frame."""


# -- ops: what a session asks the transport to do ---------------------------------------------


class DialectOp:
    """Base of the ops a session emits; the transport dispatches them with ``match``."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Subscribe(DialectOp):
    """Subscribe the connection to hub ``channels``, resuming after ``since`` when given;
    ``announce`` feeds each channel's :class:`SubscribeReply` to the session as it comes;
    ``filter`` is the hub's attribute filter (evaluated once per message and filter)."""

    channels: tuple[str, ...]
    since: Mapping[str, Position] | None = None
    announce: bool = False
    filter: Filter | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe(DialectOp):
    """Drop the connection's subscriptions to hub ``channels``."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadLatest(DialectOp):
    """Read the newest ``limit`` stored messages of each channel (oldest first)."""

    channels: tuple[str, ...]
    limit: int


@dataclass(frozen=True, slots=True)
class Publish(DialectOp):
    """Publish ``data`` (JSON) on hub ``channel`` (a client event, a presence change)."""

    channel: str
    data: Json
    attrs: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Await(DialectOp):
    """Wait for an adapter's answer the session asked for synchronously (Pusher's
    cluster-wide presence join): the transport awaits ``awaitable`` and feeds back
    :class:`Awaited` (or :class:`OpFailed`). Never dropped unawaited by design: a
    future, not a coroutine."""

    awaitable: Awaitable[object]


@dataclass(frozen=True, slots=True)
class Close(DialectOp):
    """Close the stream after what is queued (a WebSocket with ``code``/``reason``)."""

    code: int
    reason: str


# -- events: what the transport feeds back ----------------------------------------------------


class HubEvent:
    """Base of the results fed back to a session: one per op it emitted (but Close)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Subscribed(HubEvent):
    op: Subscribe
    replies: tuple[SubscribeReply, ...] = ()


@dataclass(frozen=True, slots=True)
class Unsubscribed(HubEvent):
    op: Unsubscribe
    channels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LatestRead(HubEvent):
    op: ReadLatest
    messages: Mapping[str, Sequence[Message]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Published(HubEvent):
    op: Publish
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Awaited(HubEvent):
    op: Await
    value: object = None


@dataclass(frozen=True, slots=True)
class OpFailed(HubEvent):
    """``op`` raised ``error`` (anything but a ``WagerwireError`` arrives as InternalError)."""

    op: DialectOp
    error: WagerwireError


# -- the request side -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A stream request as a dialect sees it: path parameters, query (last value of each
    name) and headers (lower-case names)."""

    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def query_one(self, name: str) -> str | None:
        return self.query.get(name)


class Directory(Protocol):
    """What a dialect may ask the node synchronously: the key gate and the hub's channels.

    The transport implements it over the real gate and hub; tests pass a dictionary-backed
    one. Every method answers at once or raises a ``WagerwireError``.
    """

    def authenticate(self, headers: Mapping[str, str], query_token: str | None) -> Identity:
        """The identity behind the request's credentials (``Unauthorized`` if bad)."""

    def resolve_channel(self, identity: Identity, channel: str) -> str:
        """The hub channel ``identity`` means by ``channel`` (``Forbidden`` if not allowed)."""

    def channel_exists(self, channel: str) -> bool:
        """Whether ``channel`` has ever been published to."""

    def validate_subscription(
        self, channels: Sequence[str], since: Mapping[str, Position] | None
    ) -> None:
        """Check names and that ``since`` is not ahead of a channel (the hub's rules)."""


class MessageEncoder(Protocol):
    """A message as the exact bytes a connection writes (the hub's ``FrameEncoder``)."""

    def encode(self, message: Message) -> bytes: ...


class Session:
    """One connection's dialect state: feed events in, drain ops and bytes out.

    The base keeps the two queues and answers the defaults (no client messages, no
    keep-alive of its own, frames shared verbatim); dialects override what their wire needs.
    """

    __slots__ = ("identity", "encoder", "waker", "once", "_ops", "_out")

    #: Seconds between the session's own keep-alives; None keeps the server's WS ping.
    ping_interval: float | None = None
    #: Whether :meth:`select` must see every batch of shared frames (per-connection
    #: exclusions); False keeps the shared bytes untouched on the hot path.
    selects: bool = False

    def __init__(self, identity: Identity, encoder: MessageEncoder) -> None:
        self.identity = identity
        self.encoder = encoder
        #: Set by the transport: asks it to drain the session soon, for what happened
        #: outside a feed call (the HTTP API ending a user's connections).
        self.waker: Callable[[], None] | None = None
        #: A credential that opens one stream only (OddsStream's token): the gate spends it
        #: while admitting the stream, and refuses it at the upgrade once spent.
        self.once: str | None = None
        # None until used: an idle connection keeps no empty lists (56 bytes each)
        self._ops: list[DialectOp] | None = None
        self._out: list[bytes] | None = None

    # -- feed --------------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """The stream is open (after the 101 or the SSE response head is due)."""

    def receive_text(self, text: str) -> None:
        """A client text frame; the seed dialects that define none ignore it."""

    def receive_event(self, event: HubEvent) -> None:
        """The result of an op this session emitted. Default: a failure closes the stream."""
        if isinstance(event, OpFailed):
            self.fail(event.error)

    def receive_reply(self, reply: SubscribeReply) -> None:
        """One channel's answer while a ``Subscribe(announce=True)`` runs."""

    def tick(self, now: float) -> None:
        """The server's timer; only called when :attr:`ping_interval` is set."""

    def rewrite(self, frame: bytes, message: Message) -> bytes:
        """The bytes this connection writes for a shared ``frame`` (SSE transports only);
        ``b""`` skips the message."""
        return frame

    def select(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> bytes:
        """The bytes of a batch of shared frames this connection writes (WebSocket
        transports, only when :attr:`selects` is set); ``b""`` skips them all."""
        return joined

    def fail(self, error: WagerwireError) -> None:
        """End the stream because of ``error`` (default: a WebSocket close code)."""
        self.emit(Close(close_code(error), error.message[:120]))

    def shutdown(self) -> bool:
        """The server is stopping: emit what to send and a :class:`Close`, and answer True;
        False (the default) lets the transport close as it does for every stream."""
        return False

    def stop(self) -> None:
        """The stream has closed; :class:`Publish` ops emitted now still run (a presence
        member leaving), everything else is dropped."""

    # -- drain -------------------------------------------------------------------------------

    def ops_received(self) -> list[DialectOp]:
        """The ops emitted since the last call, in order (run them in this order)."""
        ops = self._ops
        if ops is None:
            return []
        self._ops = None
        return ops

    def data_to_send(self) -> list[bytes]:
        """The bytes to write since the last call, in order."""
        out = self._out
        if out is None:
            return []
        self._out = None
        return out

    # -- for subclasses ----------------------------------------------------------------------

    def emit(self, op: DialectOp) -> None:
        if self._ops is None:
            self._ops = [op]
        else:
            self._ops.append(op)

    def wake(self) -> None:
        """Have the transport drain what was queued outside a feed call."""
        if self.waker is not None:
            self.waker()

    def send(self, data: bytes) -> None:
        if data:
            if self._out is None:
                self._out = [data]
            else:
                self._out.append(data)


class Dialect(Protocol):
    """One route-table row's wire format: its transport, its shared encoder, its handshake."""

    @property
    def transport(self) -> Literal["ws", "sse", "wt"]:
        """Which connection class serves it (its stream is counted under this kind)."""

    @property
    def encoder(self) -> MessageEncoder:
        """The one encoder every connection of this dialect shares."""

    def accept(self, request: StreamRequest, directory: Directory) -> Session:
        """Validate the request (path, query, headers, credentials) before the upgrade.

        Raises:
            WagerwireError: answered as a plain HTTP error; nothing of the stream is sent.
        """


def close_code(error: WagerwireError) -> int:
    """The WebSocket close code for ``error`` (policy violation when it has none)."""
    return int(error.close_code or CloseCode.POLICY_VIOLATION)
