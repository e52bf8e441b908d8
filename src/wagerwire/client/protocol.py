"""Sans-I/O state machine of one client subscription: resume, backoff, dedupe, heartbeat.

It owns everything that makes a subscription survive reconnects with no gap and no duplicate,
and nothing that touches a socket or a clock, so every rule is testable with a fake clock:

* inputs are method calls that carry ``now`` (seconds, any monotonic origin):
  :meth:`ClientProtocol.connect_started`, :meth:`~ClientProtocol.connection_opened`,
  :meth:`~ClientProtocol.frame_received`, :meth:`~ClientProtocol.connection_failed`,
  :meth:`~ClientProtocol.connection_lost`, :meth:`~ClientProtocol.tick`, and the REST backfill
  results :meth:`~ClientProtocol.backfill_page` / :meth:`~ClientProtocol.backfill_done`;
* every input returns a list of :class:`Action` for the driver to carry out in order, dispatched
  with ``match``: send a frame, deliver a message, backfill over REST, reconnect at a time,
  fail with an error, report a state change or an unrecoverable gap;
* :meth:`~ClientProtocol.next_deadline` says when the driver must call ``tick`` next.

States live in :mod:`wagerwire.client.states` (one table of legal moves; an illegal move
raises :class:`~wagerwire.client.states.IllegalTransition`), actions in
:mod:`wagerwire.client.actions`.

Positions: the client keeps, per channel, the ``(epoch, offset)`` of the last message it
delivered; the resume token sent on reconnect is their encoding (:mod:`wagerwire.core.tokens`).
A message at or below the last offset of the same epoch is a duplicate and is dropped. An epoch
change, or ``recovered: false`` in a ``subscribed`` answer, means history could not be replayed:
the client asks the driver to backfill over REST, holding that channel's live messages until the
backfill is done so that delivery stays in offset order.

Conflation: on a conflating channel the server may drop queued messages superseded by a newer
one of the same key; it says so first (``{"op":"superseded","offsets":[[a,b],…]}``) and the
client neither reports those offsets as a gap nor backfills them. A subscription with
``conflate_ms`` (or a plan that conflates) skips offsets by design, so it is not checked for
holes. ``image`` messages (a snapshot: the latest message per key) are delivered as they come,
before live data, without moving the position the ``subscribed`` answer set.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson

from wagerwire.client.actions import (
    Action,
    BackfillNeeded,
    Deliver,
    Fail,
    GapDetected,
    Reconnect,
    SendFrame,
    StateChanged,
    Superseded,
)
from wagerwire.client.backoff import Backoff
from wagerwire.client.errors import (
    AuthError,
    BadResumeTokenError,
    InvalidChannelError,
    ProtocolError,
    RateLimitedError,
    RequestError,
    SdkError,
    TransportError,
    error_for_close,
    error_for_code,
)
from wagerwire.client.messages import ClientMessage
from wagerwire.client.states import (
    TRANSITIONS,
    Closed,
    Connected,
    Connecting,
    Disconnected,
    Idle,
    IllegalTransition,
    Recovering,
    State,
)
from wagerwire.core.channels import (
    Filter,
    channel_attributes,
    is_pattern,
    pattern_matcher,
    validate_pattern,
)
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token, encode_positions
from wagerwire.errors import BadParameter, BadResumeToken, InvalidChannel
from wagerwire.types import Json

__all__ = ["LATEST_VALUE_PREFIX", "Backfill", "ClientProtocol", "Counters", "Lane", "Wire"]

Wire = Literal["ws", "sse", "wt"]
"""``ws`` and ``wt`` (the native WebTransport stream) carry the same ops both ways; ``sse``
subscribes through its URL and has no upstream."""

Lane = Literal["stream", "datagram"]
"""``datagram``: a WebTransport subscription whose messages come as datagrams (``odds:*``
only, live only): offsets skipped there were lost or superseded and are not fetched again."""

LATEST_VALUE_PREFIX = "odds:"


@dataclass(slots=True)
class Counters:
    """What the client had to do to keep the stream whole; cheap to read at any time."""

    reconnects: int = 0
    messages_delivered: int = 0
    messages_recovered: int = 0
    duplicates_dropped: int = 0
    gaps_backfilled: int = 0
    gaps_unrecovered: int = 0
    live_gaps: int = 0  # holes in an unfiltered live stream, each backfilled (a server fault)
    datagrams_superseded: int = 0  # datagram lane: offsets skipped (lost, or newer value came)
    datagrams_stale: int = 0  # datagram lane: arrived after a newer offset, dropped
    messages_superseded: int = 0  # offsets skipped because the server said a newer one came
    images_delivered: int = 0  # snapshot-image messages delivered

    @classmethod
    def total(cls, many: Iterable[Counters]) -> Counters:
        """The sum of several subscriptions' counters."""
        out = cls()
        for c in many:
            out.reconnects += c.reconnects
            out.messages_delivered += c.messages_delivered
            out.messages_recovered += c.messages_recovered
            out.duplicates_dropped += c.duplicates_dropped
            out.gaps_backfilled += c.gaps_backfilled
            out.gaps_unrecovered += c.gaps_unrecovered
            out.live_gaps += c.live_gaps
            out.datagrams_superseded += c.datagrams_superseded
            out.datagrams_stale += c.datagrams_stale
            out.messages_superseded += c.messages_superseded
            out.images_delivered += c.images_delivered
        return out


@dataclass(slots=True)
class Backfill:
    """A REST backfill in flight for one channel, with the live messages held meanwhile."""

    request_id: int
    channel: str
    epoch: str
    after_offset: int
    until_offset: int | None
    held: list[ClientMessage] = field(default_factory=list)


_LIVE = (Connecting, Recovering, Connected)


class ClientProtocol:
    """One subscription's resume, backoff, dedupe and heartbeat logic (see module docstring).

    Args:
        channels: exact channel names and ``*`` patterns.
        filter: attribute filter, sent as is (``{attr: value | [values]}``).
        since: a resume token to start from, e.g. one saved from :attr:`resume_token`.
        wire: ``"ws"`` and ``"wt"`` send subscribe and ping frames; ``"sse"`` subscribes
            through the URL (see :meth:`subscribe_params`) and relies on the server's comment
            heartbeats.
        lane: ``"datagram"`` (``wt`` only, ``odds:*`` channels only, no ``since``) subscribes
            on the WebTransport datagram lane: messages come through :meth:`datagram_received`,
            newest wins, and skipped offsets are reported as :class:`Superseded`, never
            backfilled.
        image: ask for a snapshot image on conflating channels (and after a resume the
            server cannot replay, it sends one anyway).
        conflate_ms: at most one update per key per interval on conflating channels.
        backoff: reconnect delays.
        heartbeat_interval: expected gap between signs of life; nothing received for two
            intervals means the link is dead. On WebSocket the client pings after one idle
            interval so a healthy but quiet link always shows activity.
        backfill: fetch unrecoverable history over REST (``False``: report a gap instead).
        can_refresh_auth: the driver can fetch fresh credentials, so one ``unauthorized``
            after a successful subscription is retried instead of being fatal.
        rand: uniform ``[0, 1)`` source for the jitter (inject a seeded one in tests).
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        filter: Mapping[str, Json] | None = None,
        since: str | None = None,
        wire: Wire = "ws",
        lane: Lane = "stream",
        image: bool = False,
        conflate_ms: int = 0,
        backoff: Backoff | None = None,
        heartbeat_interval: float = 20.0,
        backfill: bool = True,
        can_refresh_auth: bool = False,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if isinstance(channels, str) or not channels:
            raise InvalidChannelError("subscribe to a non-empty list of channels or patterns")
        try:
            self._requested: list[str] = [validate_pattern(c) for c in dict.fromkeys(channels)]
        except InvalidChannel as exc:
            raise InvalidChannelError(exc.message, code=exc.code) from None
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self.filter: dict[str, Json] | None = dict(filter) if filter else None
        try:
            self._filter = Filter.parse(self.filter)
        except BadParameter as exc:
            raise RequestError(exc.message, code=exc.code) from None
        self.wire: Wire = wire
        if lane not in ("stream", "datagram"):
            raise ValueError(f"lane must be 'stream' or 'datagram', not {lane!r}")
        if lane == "datagram":
            if wire != "wt":
                raise RequestError("the datagram lane is a WebTransport one (transport='wt')",
                                   code="bad_parameter")
            for name in self._requested:
                if not name.startswith(LATEST_VALUE_PREFIX):
                    raise RequestError(
                        f"the datagram lane carries {LATEST_VALUE_PREFIX}* channels only, "
                        f"not {name!r}", code="bad_parameter")
            if since:
                raise RequestError("the datagram lane is live only: no since",
                                   code="bad_parameter")
        self.lane: Lane = lane
        if not 0 <= conflate_ms <= 120_000:
            raise RequestError("conflate_ms must be from 0 to 120000", code="bad_parameter")
        self.image = image
        self.conflate_ms = conflate_ms
        self.backoff = backoff or Backoff()
        self.heartbeat_interval = heartbeat_interval
        self.backfill_enabled = backfill
        self.can_refresh_auth = can_refresh_auth
        self.counters = Counters()
        self._rand = rand
        self._positions: dict[str, Position] = {}
        if since:
            try:
                self._positions = decode_token(since)
            except BadResumeToken as exc:
                raise BadResumeTokenError(exc.message, code=exc.code) from None
        self._state: State = Idle()
        self._attempt = 0  # consecutive failed attempts; drives the backoff
        self._auth_refreshed = False
        self._opened = False
        self._pending_acks: set[str] = set()
        self._acked = False
        self._empty: set[str] = set()  # subscribed while they had no history
        self._catchup: dict[str, int] = {}  # channel -> offset the replay must reach
        self._backfills: dict[str, Backfill] = {}
        # channel -> (epoch, first, last) runs the server said were superseded
        self._superseded: dict[str, list[tuple[str, int, int]]] = {}
        self._conflated: set[str] = set()  # names subscribed with a per-key interval
        self._next_request_id = 1
        self._last_rx = 0.0
        self._last_ping = 0.0

    # -- read-only views -----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels and patterns currently subscribed."""
        return tuple(self._requested)

    @property
    def positions(self) -> Mapping[str, Position]:
        """The last delivered position of every channel seen so far."""
        return dict(self._positions)

    @property
    def resume_token(self) -> str | None:
        """A token that resumes this subscription after the last delivered message."""
        return encode_positions(self._positions) if self._positions else None

    def subscribe_params(self) -> tuple[list[str], dict[str, Json] | None, str | None]:
        """``(channels, filter, since)`` for the next subscription (the SSE query string)."""
        return list(self._requested), self.filter, self.resume_token

    def subscribe_frame(self) -> dict[str, Json]:
        """The subscribe op (WebSocket, WebTransport) for the current channels and positions.

        On the datagram lane it carries ``"lane": "datagram"`` and never a ``since``.
        """
        frame: dict[str, Json] = {"op": "subscribe", "channels": list(self._requested)}
        if self.filter:
            frame["filter"] = self.filter
        if self.lane == "datagram":
            frame["lane"] = "datagram"
            return frame
        token = self.resume_token
        if token:
            frame["since"] = token
        if self.image:
            frame["image"] = True
        if self.conflate_ms:
            frame["conflate_ms"] = self.conflate_ms
        return frame

    def next_deadline(self) -> float | None:
        """When the driver must call :meth:`tick` next (``None``: no timer needed)."""
        if isinstance(self._state, Disconnected):
            return self._state.next_retry_at
        if not (self._opened and isinstance(self._state, _LIVE)):
            return None
        deadline = self._last_rx + 2 * self.heartbeat_interval
        if self.wire != "sse":
            deadline = min(deadline, max(self._last_rx, self._last_ping) + self.heartbeat_interval)
        return deadline

    def backfill_active(self, request_id: int) -> bool:
        """Whether the backfill ``request_id`` is still wanted."""
        return self._backfill_by_id(request_id) is not None

    def backfill_next(self, request_id: int) -> int | None:
        """The ``since`` of the next page to fetch, or ``None`` when no more is wanted."""
        bf = self._backfill_by_id(request_id)
        if bf is None:
            return None
        reached = self._reached(bf)
        if bf.until_offset is not None and reached >= bf.until_offset:
            return None
        return reached

    # -- connection lifecycle ------------------------------------------------------------------

    def connect_started(self, now: float) -> list[Action]:
        """The driver starts a connection attempt (first one, or after ``next_retry_at``)."""
        if isinstance(self._state, Disconnected):
            self.counters.reconnects += 1
        return self._move(Connecting(self._attempt))

    def connection_opened(self, now: float) -> list[Action]:
        """The transport is open (WS handshake done, SSE response 200): subscribe."""
        if not isinstance(self._state, Connecting) or self._opened:
            raise IllegalTransition(f"connection_opened in state {self._state!r}")
        self._opened = True
        self._acked = False
        self._pending_acks = set(self._requested)
        self._catchup.clear()
        self._last_rx = self._last_ping = now
        if self.wire != "sse":
            return [SendFrame(self.subscribe_frame())]
        return []

    def connection_failed(self, error: SdkError, now: float) -> list[Action]:
        """An attempt failed before the transport opened (refused, handshake rejected…)."""
        if not isinstance(self._state, _LIVE):
            return []
        return self._disconnect(error, now)

    def auth_failed(self, error: SdkError, now: float) -> list[Action]:
        """Getting credentials failed before connecting (token exchange or refresh hook).

        A retryable error (server down, 429, 5xx) backs off like a failed connection; any
        other (the key itself was refused) is final: refreshing again could not help.
        """
        if not isinstance(self._state, _LIVE):
            return []
        if error.retryable:
            return self._disconnect(error, now)
        return self._fail(error)

    def connection_lost(self, code: int | None, reason: str, now: float) -> list[Action]:
        """The transport closed: ``code`` is the WS close code, ``None`` if there was none.

        Ignored if the protocol already decided to disconnect (watchdog, error frame).
        """
        if not isinstance(self._state, _LIVE):
            return []
        return self._disconnect(error_for_close(code, reason), now)

    def close(self, now: float) -> list[Action]:
        """The owner closes the subscription; nothing more will be delivered."""
        if isinstance(self._state, Closed):
            return []
        self._opened = False
        self._backfills.clear()
        return self._move(Closed())

    # -- inbound traffic -----------------------------------------------------------------------

    def activity(self, now: float) -> None:
        """Any sign of life that is not a frame (an SSE comment, a WS ping)."""
        if self._opened:
            self._last_rx = now

    def text_received(self, text: str | bytes, now: float) -> list[Action]:
        """Decode one JSON text frame (or SSE data) and handle it."""
        if not self._opened:
            return []
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return self._fail(ProtocolError(f"server sent invalid JSON: {text[:80]!r}"))
        return self.frame_received(obj, now)

    def frame_received(self, obj: object, now: float) -> list[Action]:
        """Handle one decoded server frame; frames after a decision to disconnect are ignored."""
        if not (self._opened and isinstance(self._state, _LIVE)):
            return []
        self._last_rx = now
        if not isinstance(obj, dict):
            return self._fail(ProtocolError(f"server frame is not an object: {obj!r:.80}"))
        op = obj.get("op")
        if op is None and "offset" in obj:
            op = "message"  # tolerate SSE data without an op field
        match op:
            case "message":
                actions = self._on_message(obj)
            case "subscribed" if self.lane == "datagram":
                actions = self._on_lane_subscribed(obj)
            case "subscribed":
                actions = self._on_subscribed(obj)
            case "superseded":
                actions = self._on_superseded(obj)
            case "error":
                return self._on_error(obj, now)
            case _:
                actions = []  # pong, published, unsubscribed, and ops added later
        return actions + self._settle()

    def datagram_received(self, data: bytes, now: float) -> list[Action]:
        """One datagram of the WebTransport datagram lane: a native ``message`` object.

        Newest wins: a message at or below the last delivered offset of its epoch is stale
        and dropped (``datagrams_stale``); offsets skipped before a delivered one were lost or
        superseded (``datagrams_superseded`` and one :class:`Superseded`, on an unfiltered
        subscription) and are never fetched again. A datagram that is not a message is
        ignored: datagrams carry no part of the reliable protocol.
        """
        if self.lane != "datagram" or not (self._opened and isinstance(self._state, _LIVE)):
            return []
        self._last_rx = now
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(obj, dict) or obj.get("op", "message") != "message":
            return []
        try:
            msg = ClientMessage.from_json(obj, "live")
        except ProtocolError:
            return []
        if not self._covers(msg.channel):
            return []
        actions: list[Action] = []
        pos = self._positions.get(msg.channel)
        if pos is not None and pos.epoch == msg.epoch:
            if msg.offset <= pos.offset:
                self.counters.datagrams_stale += 1
                return []
            if msg.offset > pos.offset + 1 and self._filter is None:
                self.counters.datagrams_superseded += msg.offset - pos.offset - 1
                actions.append(Superseded(msg.channel, msg.epoch, pos.offset, msg.offset))
        self._positions[msg.channel] = Position(msg.epoch, msg.offset)
        self.counters.messages_delivered += 1
        actions.append(Deliver(msg))
        return actions + self._settle()

    def tick(self, now: float) -> list[Action]:
        """Timers: ping an idle WebSocket; declare the link dead after two silent intervals."""
        if not (self._opened and isinstance(self._state, _LIVE)):
            return []
        silent = now - self._last_rx
        if silent >= 2 * self.heartbeat_interval:
            return self._disconnect(
                TransportError(f"heartbeat timeout: nothing received for {silent:.1f}s"), now
            )
        if (
            self.wire != "sse"
            and now - max(self._last_rx, self._last_ping) >= self.heartbeat_interval
        ):
            self._last_ping = now
            return [SendFrame({"op": "ping"})]
        return []

    def unsubscribe(self, channels: Sequence[str], now: float) -> list[Action]:
        """Stop following some channels or patterns (on SSE: from the next connection on)."""
        gone = set(channels)
        self._requested = [c for c in self._requested if c not in gone]
        self._empty = {ch for ch in self._empty if self._covers(ch)}
        for ch in list(self._positions):
            if not self._covers(ch):
                del self._positions[ch]
                self._backfills.pop(ch, None)
                self._catchup.pop(ch, None)
        self._pending_acks -= gone
        actions: list[Action] = []
        if self.wire != "sse" and self._opened and isinstance(self._state, _LIVE):
            frame: dict[str, Json] = {"op": "unsubscribe", "channels": sorted(gone)}
            if self.lane == "datagram":
                frame["lane"] = "datagram"
            actions.append(SendFrame(frame))
        if self._opened:
            actions += self._settle()
        return actions

    # -- REST backfill results -----------------------------------------------------------------

    def backfill_page(
        self, request_id: int, epoch: str, messages: Sequence[ClientMessage], now: float
    ) -> list[Action]:
        """One page of ``GET /v1/channels/{channel}/messages`` for backfill ``request_id``."""
        bf = self._backfill_by_id(request_id)
        if bf is None:
            return []
        if epoch != bf.epoch:
            # The channel restarted again while we were catching up: start over in the new epoch.
            return self._start_backfill(bf.channel, epoch, 0, None, held=bf.held)
        actions: list[Action] = []
        for msg in messages:
            if msg.channel != bf.channel or msg.epoch != bf.epoch:
                continue
            if bf.until_offset is not None and msg.offset > bf.until_offset:
                break
            reached = self._reached(bf)
            if msg.offset > reached + 1:
                # History is contiguous, so a hole here was pruned before we could fetch it.
                self.counters.gaps_unrecovered += 1
                actions.append(GapDetected(bf.channel, bf.epoch, reached, msg.offset))
            if msg.offset > reached and not self._passes_filter(msg):
                # REST history is unfiltered: skip what the live stream would not have sent.
                self._positions[bf.channel] = Position(msg.epoch, msg.offset)
                continue
            actions += self._accept(msg.with_source("backfill"), from_backfill=True)
        return actions

    def backfill_done(
        self, request_id: int, now: float, error: SdkError | None = None
    ) -> list[Action]:
        """Backfill ``request_id`` finished (``error`` if it failed): release held messages."""
        bf = self._backfill_by_id(request_id)
        if bf is None:
            return []
        del self._backfills[bf.channel]
        reached = self._reached(bf)
        first_held = min((m.offset for m in bf.held if m.epoch == bf.epoch), default=None)
        end: int | None = None
        if bf.until_offset is not None:
            missing, end = reached < bf.until_offset, bf.until_offset + 1
        elif error is not None:
            missing, end = first_held is None or first_held > reached + 1, first_held
        else:
            missing = False  # fetched until the history ran out; held messages continue it
        actions: list[Action] = []
        if missing:
            self.counters.gaps_unrecovered += 1
            actions.append(GapDetected(bf.channel, bf.epoch, reached, end))
            if end is not None and end - 1 > reached:
                # Reported as lost: the position moves past the hole, so the messages after
                # it neither look like a new hole nor are asked for again.
                self._positions[bf.channel] = Position(bf.epoch, end - 1)
        elif error is None:
            self.counters.gaps_backfilled += 1
        for msg in bf.held:
            actions += self._accept(msg)
        return actions + self._settle()

    # -- internals -----------------------------------------------------------------------------

    def _move(self, new: State) -> list[Action]:
        if type(new) not in TRANSITIONS[type(self._state)]:
            raise IllegalTransition(f"{type(self._state).__name__} -> {type(new).__name__}")
        self._state = new
        return [StateChanged(new)]

    def _fail(self, error: SdkError) -> list[Action]:
        self._opened = False
        self._backfills.clear()
        return [*self._move(Closed(error)), Fail(error)]

    def _disconnect(self, error: SdkError, now: float) -> list[Action]:
        refresh = False
        if isinstance(error, AuthError) and self.can_refresh_auth and not self._auth_refreshed:
            refresh = self._auth_refreshed = True
        elif not error.retryable:
            return self._fail(error)
        delay = self.backoff.delay(self._attempt, self._rand())
        if isinstance(error, RateLimitedError) and error.retry_after is None:
            delay = max(delay, self.backoff.maximum)  # "retry later": do not come back soon
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        self._attempt += 1
        self._opened = False
        self._pending_acks.clear()
        self._catchup.clear()
        at = now + delay
        return [*self._move(Disconnected(error, at)), Reconnect(at, error, refresh)]

    def _settle(self) -> list[Action]:
        """Move between Connecting, Recovering and Connected as acks and history arrive."""
        if not (self._opened and isinstance(self._state, _LIVE)) or self._pending_acks:
            return []
        if not self._acked:
            self._acked = True
            self._attempt = 0  # a subscription that succeeded resets the backoff
            self._auth_refreshed = False
        catching_up = bool(self._catchup) and self.filter is None
        want: State = Recovering() if self._backfills or catching_up else Connected()
        if type(want) is type(self._state):
            return []
        return self._move(want)

    def _covers(self, channel: str) -> bool:
        for name in self._requested:
            if name == channel or (is_pattern(name) and pattern_matcher(name).fullmatch(channel)):
                return True
        return False

    def _on_error(self, obj: Mapping[str, object], now: float) -> list[Action]:
        code = obj.get("code")
        message = obj.get("message")
        err = error_for_code(
            code if isinstance(code, str) else "internal",
            message if isinstance(message, str) else "server error",
        )
        return self._disconnect(err, now)

    def _image_or_rate(self, name: str, obj: Mapping[str, object]) -> bool:
        """Note a per-key interval; take a snapshot image's position. True: nothing more to
        do for this answer (an image stands for the history it does not replay)."""
        if _is_int(obj.get("conflate_ms")) and obj.get("conflate_ms"):
            self._conflated.add(name)
        else:
            self._conflated.discard(name)
        if obj.get("image") is not True or obj.get("pattern"):
            return False
        epoch, offset = obj.get("epoch"), obj.get("offset")
        if not isinstance(epoch, str) or not isinstance(offset, int):
            return False
        self._empty.discard(name)
        self._catchup.pop(name, None)
        self._backfills.pop(name, None)
        if epoch:
            self._positions[name] = Position(epoch, offset)
        return True

    def _on_lane_subscribed(self, obj: Mapping[str, object]) -> list[Action]:
        """Datagram lane: live only, so nothing to recover; the next datagram's offset shows
        what was skipped meanwhile."""
        name = obj.get("channel")
        if not isinstance(name, str):
            return self._fail(ProtocolError("subscribed frame without a channel"))
        self._pending_acks.discard(name)
        return []

    def _on_subscribed(self, obj: Mapping[str, object]) -> list[Action]:
        name = obj.get("channel")
        if not isinstance(name, str):
            return self._fail(ProtocolError("subscribed frame without a channel"))
        recovered = obj.get("recovered", True) is not False
        self._pending_acks.discard(name)
        if self._image_or_rate(name, obj):
            return []
        if obj.get("pattern"):
            if recovered:
                return []
            matcher = pattern_matcher(name)
            actions: list[Action] = []
            for ch, known in sorted(self._positions.items()):
                if matcher.fullmatch(ch) and ch not in self._requested:
                    actions += self._history_lost(ch, known.epoch, known.offset, None)
            return actions
        epoch, offset = obj.get("epoch"), obj.get("offset")
        if not isinstance(epoch, str) or not _is_int(offset):
            return self._fail(ProtocolError(f"subscribed frame for {name!r} lacks epoch/offset"))
        assert isinstance(offset, int)
        pos = self._positions.get(name)
        if not epoch:
            # The channel has no history (and so no epoch) yet. A token cannot say "from the
            # start of whatever epoch comes", so remember it: if a later subscription finds
            # messages there that we never saw, they are fetched from offset 0.
            if pos is None:
                self._empty.add(name)
            return []
        if pos is None:
            if name in self._empty and offset > 0:
                self._empty.discard(name)
                self._positions[name] = Position(epoch, 0)
                return self._history_lost(name, epoch, 0, offset)
            self._empty.discard(name)
            self._positions[name] = Position(epoch, offset)  # fresh: start live from here
            return []
        if pos.epoch != epoch:
            self._positions[name] = Position(epoch, 0)
            return self._history_lost(name, epoch, 0, offset) if offset > 0 else []
        if not recovered:
            return self._history_lost(name, epoch, pos.offset, offset)
        if offset > pos.offset:
            self._catchup[name] = offset
        return []

    def _on_superseded(self, obj: Mapping[str, object]) -> list[Action]:
        channel, epoch, runs = obj.get("channel"), obj.get("epoch"), obj.get("offsets")
        if not isinstance(channel, str) or not isinstance(epoch, str) or not isinstance(runs,
                                                                                       list):
            return self._fail(ProtocolError(f"malformed superseded frame: {dict(obj)!r:.120}"))
        known = self._superseded.setdefault(channel, [])
        for run in runs:
            if (isinstance(run, list) and len(run) == 2 and all(_is_int(x) for x in run)):
                known.append((epoch, int(run[0]), int(run[1])))
        pos = self._positions.get(channel)
        if pos is not None:  # forget runs already behind us
            known[:] = [r for r in known if r[0] != pos.epoch or r[2] > pos.offset]
        del known[:-1000]  # bounded: the server merges them, this only guards
        return []

    def _skipped(self, channel: str, epoch: str, after: int, before: int) -> bool:
        """Whether every offset strictly between ``after`` and ``before`` was superseded."""
        runs = sorted((a, b) for e, a, b in self._superseded.get(channel, ()) if e == epoch)
        need = after + 1
        for first, last in runs:
            if first > need:
                break
            need = max(need, last + 1)
        if need < before:
            return False
        self.counters.messages_superseded += before - after - 1
        return True

    def _is_conflated(self, channel: str) -> bool:
        conflated = self._conflated
        return bool(conflated) and (channel in conflated or any(
            is_pattern(n) and pattern_matcher(n).fullmatch(channel) for n in conflated))

    def _on_message(self, obj: Mapping[str, object]) -> list[Action]:
        try:
            msg = ClientMessage.from_json(obj, "live")
        except ProtocolError as exc:
            return self._fail(exc)
        if not self._covers(msg.channel):
            return []  # e.g. in flight when we unsubscribed
        if obj.get("image") is True:
            self.counters.images_delivered += 1
            self.counters.messages_delivered += 1
            return [Deliver(msg.with_source("image"))]
        target = self._catchup.get(msg.channel)
        if target is not None:
            if msg.offset <= target:
                msg = msg.with_source("replay")
            if msg.offset >= target:
                del self._catchup[msg.channel]
        return self._accept(msg, live=True)

    def _accept(
        self, msg: ClientMessage, *, from_backfill: bool = False, live: bool = False
    ) -> list[Action]:
        """Dedupe, detect an epoch change or a hole, hold for a running backfill, or deliver.

        ``live``: the message just came off the stream (not a held or backfilled one), so on
        an unfiltered subscription an offset past the next one means the server skipped some.
        """
        bf = self._backfills.get(msg.channel)
        if bf is not None and not from_backfill:
            bf.held.append(msg)
            return []
        pos = self._positions.get(msg.channel)
        if pos is not None and pos.epoch == msg.epoch and msg.offset <= pos.offset:
            self.counters.duplicates_dropped += 1
            return []
        if pos is not None and pos.epoch != msg.epoch and msg.offset > 1:
            # The channel restarted under us: what came before this message is missing.
            self._positions[msg.channel] = Position(msg.epoch, 0)
            actions = self._history_lost(msg.channel, msg.epoch, 0, msg.offset - 1)
            return actions + self._accept(msg)
        if (
            live
            and self._filter is None
            and pos is not None
            and pos.epoch == msg.epoch
            and msg.offset > pos.offset + 1
            and not self._is_conflated(msg.channel)
            and not self._skipped(msg.channel, msg.epoch, pos.offset, msg.offset)
        ):
            # Offsets have no holes and nothing filters this stream: the server skipped
            # messages (e.g. a window around its restart). Fetch them before going on.
            self.counters.live_gaps += 1
            actions = self._history_lost(msg.channel, msg.epoch, pos.offset, msg.offset - 1)
            return actions + self._accept(msg)
        if pos is None:
            self._empty.discard(msg.channel)
        self._positions[msg.channel] = Position(msg.epoch, msg.offset)
        self.counters.messages_delivered += 1
        if msg.source != "live":
            self.counters.messages_recovered += 1
        return [Deliver(msg)]

    def _history_lost(
        self, channel: str, epoch: str, after: int, until: int | None
    ) -> list[Action]:
        """The server could not replay ``channel`` after ``after``: backfill or report."""
        if until is not None and until <= after:
            return []
        if self.backfill_enabled:
            running = self._backfills.get(channel)
            if running is not None and running.epoch == epoch:
                if until is None or running.until_offset is None:
                    running.until_offset = None
                else:
                    running.until_offset = max(running.until_offset, until)
                return []
            held = running.held if running is not None else []
            return self._start_backfill(channel, epoch, after, until, held=held)
        self.counters.gaps_unrecovered += 1
        if until is not None:
            self._positions[channel] = Position(epoch, until)
        return [GapDetected(channel, epoch, after, None if until is None else until + 1)]

    def _start_backfill(
        self,
        channel: str,
        epoch: str,
        after: int,
        until: int | None,
        *,
        held: list[ClientMessage],
    ) -> list[Action]:
        request_id = self._next_request_id
        self._next_request_id += 1
        self._backfills[channel] = Backfill(request_id, channel, epoch, after, until, held)
        if after == 0:
            self._positions[channel] = Position(epoch, 0)
        return [BackfillNeeded(request_id, channel, epoch, after, until)]

    def _passes_filter(self, msg: ClientMessage) -> bool:
        """Whether the subscription's filter lets ``msg`` through.

        A term on an attribute that neither the channel name implies nor the message carries
        (a server whose history does not include ``attrs``) cannot be decided: such a message
        is delivered rather than silently lost.
        """
        flt = self._filter
        if flt is None or flt.matches(msg.channel, msg.attrs):
            return True
        if msg.attrs is not None:
            return False
        implied = channel_attributes(msg.channel)
        return all(implied[key] in allowed for key, allowed in flt.terms if key in implied)

    def _reached(self, bf: Backfill) -> int:
        """The last offset delivered in the backfill's epoch."""
        pos = self._positions.get(bf.channel)
        return pos.offset if pos is not None and pos.epoch == bf.epoch else bf.after_offset

    def _backfill_by_id(self, request_id: int) -> Backfill | None:
        for bf in self._backfills.values():
            if bf.request_id == request_id:
                return bf
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
