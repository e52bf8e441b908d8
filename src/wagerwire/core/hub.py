"""The hub: publish → store append → broker → fan-out, and the subscription registry.

The fan-out is the hot path. :meth:`Hub.on_message` only collects the message into this
loop turn's batch; at the end of the turn each run of consecutive messages of one channel is
fanned out once: its messages are encoded once per frame format, the frames that pass a filter
are joined once per (filter, format), and every subscriber gets that one buffer through
:meth:`Sink.deliver_many`, which only queues it (the transport writes once per connection per
turn). A channel's subscribers (exact and by pattern) are kept grouped by (filter, format)
until its subscriptions change, so a group whose filter passes none of the run is skipped as a
whole: the cost of a selective filter is per group, not per subscriber. Runs keep the order in which messages arrived, across channels too. Under load (one
busy channel) the Python work is per message plus per subscriber, not per message ×
subscriber. Nothing on that path awaits.

Subscribing with a resume position replays from the store in pages, then registers the sink
synchronously once the replay has caught up with what was already delivered, so the switch from
replay to live has no gap; a per-channel floor drops the few messages that were committed (and
so replayed) but not yet delivered live when the sink registered, so there is no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import orjson

from wagerwire.core.broker import Broker
from wagerwire.core.channels import (
    Filter,
    is_pattern,
    pattern_matcher,
    validate_channel,
    validate_pattern,
)
from wagerwire.core.conflation import (
    MAX_CONFLATE_MS,
    Lane,
    LatestTable,
    PolicyTable,
    skipped_ranges,
)
from wagerwire.core.messages import Message, Position, PublishResult, SubscribeReply
from wagerwire.core.store import AppendDone, Store
from wagerwire.errors import (
    BadParameter,
    InvalidChannel,
    MalformedJson,
    PayloadTooLarge,
    TooManyChannels,
    Unavailable,
)
from wagerwire.types import Json, now_ms

# SubscribeReply lives in core/messages.py; re-exported here for existing importers.
__all__ = ["FrameEncoder", "Hub", "HubLimits", "HubObserver", "HubStats", "Rate", "Sink",
           "SubscribeReply", "append_soon", "check_rate"]

log = logging.getLogger("wagerwire.core.hub")

REPLAY_PAGE = 500


_APPENDS: set[asyncio.Task[None]] = set()  # append_soon's fallback tasks (strong refs)


def append_soon(store: Store, message: Message, done: AppendDone) -> None:
    """``store.append_soon(message, done)``, or ``append`` in a task for a store without it.

    Raises:
        Exception: whatever ``append_soon`` raises (the append was not queued).
    """
    soon: Callable[[Message, AppendDone], None] | None = getattr(store, "append_soon", None)
    if soon is not None:
        soon(message, done)
        return

    def finished(task: asyncio.Task[None]) -> None:
        _APPENDS.discard(task)
        done(Unavailable("the append was cancelled") if task.cancelled() else task.exception())

    task = asyncio.ensure_future(store.append(message))
    _APPENDS.add(task)
    task.add_done_callback(finished)


class FrameEncoder(Protocol):
    """Turns a message into the exact bytes a connection writes (one per wire format)."""

    def encode(self, message: Message) -> bytes: ...


class Sink(Protocol):
    """A connection as the hub sees it: a frame format and a non-blocking deliver."""

    encoder: FrameEncoder

    def deliver(self, frame: bytes, message: Message) -> None:
        """Queue ``frame`` (the encoding of ``message``); never blocks, never raises, and
        never closes the sink there and then (the hub is iterating its subscribers)."""

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        """``deliver(frames[i], messages[i])`` for each ``i``, in order; ``joined`` is the
        frames' concatenation, for sinks that queue bytes as they are."""

    async def drain(self) -> None:
        """Wait until the connection's queue is written (used between replay pages)."""


class HubObserver(Protocol):
    """What the observability layer hears from the hub: once per publish, per loop turn or
    per replay, never per subscriber (DESIGN: hot path rules). Times are ``perf_counter``."""

    def published(self, seconds: float) -> None:
        """A publish became durable ``seconds`` after it was accepted."""

    def turn(
        self, runs: list[tuple[str, list[Message]]], started: float, sent: int,
        encoders: Iterable[FrameEncoder],
    ) -> None:
        """One loop turn's channel runs were fanned out (``sent`` copies handed to sinks, in
        the frame formats ``encoders``); its first message reached the hub at ``started``."""

    def replayed(self, messages: int, seconds: float) -> None:
        """A subscription's replay sent ``messages`` in ``seconds``."""


@dataclass(slots=True)
class HubLimits:
    """Bounds that protect the hub from one client."""

    max_channels_per_sink: int = 100
    max_message_bytes: int = 65536
    idempotency_window_s: float = 300.0
    parse_cache_bytes: int = 1024 * 1024  # URL subscription parse caches (transports)


@dataclass(slots=True)
class HubStats:
    """Counters exported on ``/metrics``."""

    published: int = 0
    duplicates: int = 0
    delivered: int = 0
    replayed: int = 0
    encoded: int = 0
    # [message copies, bytes] handed to sinks per frame encoder, counted once per run of
    # sinks sharing a filter and format, not per subscriber; /metrics labels them.
    by_encoder: dict[FrameEncoder, list[int]] = field(default_factory=dict)


Group = tuple[Filter | None, FrameEncoder, list[Sink]]
"""The subscribers of one channel that share a (filter, format)."""
Rate = tuple[int, int]
"""``(conflate_ms, delay_ms)`` of a subscription; ``(0, 0)`` is the plain live stream."""
MAX_GROUPED_CHANNELS = 65536
MAX_DELAY_MS = 3_600_000


class _Persist:
    """The hub's ``persist``: the store append, counted so the flusher can tell a commit is
    about to land. ``soon`` (``core.broker.PersistSoon``) is the brokers' path: no task."""

    __slots__ = ("_hub",)

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    async def __call__(self, message: Message) -> None:
        hub = self._hub
        hub.persisting += 1
        try:
            await hub.store.append(message)
        finally:
            hub.persisting -= 1

    def soon(self, message: Message, done: Callable[[BaseException | None], None]) -> None:
        hub = self._hub
        hub.persisting += 1
        try:
            append_soon(hub.store, message, partial(self._done, done))
        except BaseException:
            hub.persisting -= 1
            raise

    def _done(self, done: Callable[[BaseException | None], None], error: BaseException | None
              ) -> None:
        self._hub.persisting -= 1
        done(error)


class Hub:
    """Owns local subscriptions and fans out what the broker delivers."""

    def __init__(self, store: Store, broker: Broker, limits: HubLimits | None = None,
                 policies: PolicyTable | None = None) -> None:
        self.store = store
        self.broker = broker
        self.limits = limits or HubLimits()
        self.policies = policies or PolicyTable()
        # Each conflating channel's latest message per key and recent lifecycle messages
        # (None: the channel does not conflate), for images and for subscribers that fell
        # behind: updated once per message, shared by every subscriber.
        self._latest: dict[str, LatestTable | None] = {}
        self._latest_ready: dict[str, asyncio.Future[None]] = {}
        # Subscriptions (channel or pattern -> sink) with a per-key interval or a delay: served
        # by one shared Lane per (channel, interval, delay), never per subscriber.
        self._rates: dict[str, dict[Sink, Rate]] = {}
        self._lane_groups: dict[str, dict[Rate, list[Group]]] = {}
        self._lanes: dict[tuple[str, int, int], Lane] = {}
        # each lane's one timer and the time (ms) it is armed for
        self._lane_timers: dict[tuple[str, int, int], tuple[int, asyncio.TimerHandle]] = {}
        self.stats = HubStats()
        self._exact: dict[str, dict[Sink, Filter | None]] = {}
        self._patterns: dict[str, dict[Sink, Filter | None]] = {}
        # channel -> its subscribers grouped by (filter, format); dropped when they change
        self._grouped: dict[str, list[Group]] = {}
        self._sink_subs: dict[Sink, set[str]] = {}
        self._floors: dict[str, dict[Sink, int]] = {}
        # What this hub has handed to its sinks, per channel. Kept here rather than read from
        # the broker: a broker's position may move by catching up (Redis, listen=local)
        # without delivering, and replay must be level with what sinks actually saw.
        self._delivered: dict[str, int] = {}
        self._listeners: list[Callable[[Message], None]] = []
        self._closed = False
        self.persisting = 0  # appends waiting for their commit (the flusher may wait for them)
        # This loop turn's messages as runs of one channel, in arrival order (_fan_out_turn).
        self._turn: list[tuple[str, list[Message]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._turn_at = 0.0
        self._turn_encoders: dict[FrameEncoder, None] = {}
        self.observer: HubObserver | None = None  # set by the composition root
        self._persist = _Persist(self)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start the broker seeded with the store's positions."""
        self._loop = asyncio.get_running_loop()
        await self.store.open()
        positions = await self.store.positions()
        self._delivered = {ch: pos.offset for ch, pos in positions.items()}
        await self.broker.start(self, positions)

    async def close(self) -> None:
        """Stop accepting publishes, stop the broker, flush and close the store."""
        self._closed = True
        await self.broker.close()
        await self.store.close()

    def add_listener(self, listener: Callable[[Message], None]) -> None:
        """Call ``listener`` for every message delivered to this node (e.g. domain state)."""
        self._listeners.append(listener)

    # -- publish ---------------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Json,
        *,
        attrs: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish ``data`` on ``channel``; returns once the message is durable.

        Raises:
            InvalidChannel, PayloadTooLarge, MalformedJson, BadParameter: the input is wrong.
            Unavailable: the hub is closing or the store failed; nothing was delivered.
        """
        if self._closed:
            raise Unavailable("the server is shutting down; publish again after restart")
        validate_channel(channel)
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 200
        ):
            raise BadParameter("idempotency_key must be a string of 1-200 characters")
        clean_attrs = _clean_attrs(attrs)
        try:
            payload = orjson.dumps(data)
        except TypeError as exc:
            raise MalformedJson(f"data is not JSON-serialisable: {exc}") from exc
        if len(payload) > self.limits.max_message_bytes:
            raise PayloadTooLarge(
                f"message data is {len(payload)} bytes; the limit is "
                f"{self.limits.max_message_bytes}"
            )
        ts = now_ms()
        accepted = time.perf_counter()
        if idempotency_key is not None:
            since = ts - int(self.limits.idempotency_window_s * 1000)
            earlier = await self.store.find_idempotent(channel, idempotency_key, since)
            if earlier is not None:
                self.stats.duplicates += 1
                return PublishResult(earlier, duplicate=True)
        result = await self.broker.publish(
            channel,
            payload,
            ts=ts,
            attrs=clean_attrs,
            idempotency_key=idempotency_key,
            persist=self._persist,
        )
        if result.duplicate:
            self.stats.duplicates += 1
        else:
            self.stats.published += 1
            if self.observer is not None:
                self.observer.published(time.perf_counter() - accepted)
        return result

    # -- fan-out (hot path) ----------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Take one message the broker delivers (in order); it reaches the subscribers at the
        end of this loop turn, together with the rest of its channel's turn."""
        channel = message.channel
        self._delivered[channel] = message.offset
        turn = self._turn
        if turn and turn[-1][0] == channel:
            turn[-1][1].append(message)
        else:
            if not turn:
                loop = self._loop or asyncio.get_running_loop()
                loop.call_soon(self._fan_out_turn)
                self._turn_at = time.perf_counter()
            turn.append((channel, [message]))
        latest = self._latest
        table = latest.get(channel, _UNSEEN)
        if table is _UNSEEN:
            table = latest[channel] = (
                LatestTable(message.epoch, message.offset - 1)
                if self.policies.conflates(channel) else None
            )
        if table is not None:
            assert isinstance(table, LatestTable)
            if table.epoch != message.epoch:  # history restarted: so does the table
                table = latest[channel] = LatestTable(message.epoch, message.offset - 1)
            table.add(message, self.policies.classify(message))
        if self._listeners:  # after the append: whatever they subscribe starts after it
            self._notify_listeners(message)

    def _fan_out_turn(self) -> None:
        turn = self._turn
        self._turn = []
        sent = 0
        for channel, messages in turn:
            sent += self._fan_out_channel(channel, messages)
        if self.observer is not None:
            encoders = self._turn_encoders
            self._turn_encoders = {}
            self.observer.turn(turn, self._turn_at, sent, encoders)

    def _fan_out_channel(self, channel: str, messages: list[Message]) -> int:
        groups = self._grouped.get(channel)
        if groups is None:
            groups = self._group_subscribers(channel)
        lanes = self._lane_groups.get(channel)
        if lanes:
            for rate in lanes:
                lane = self._lane(channel, rate)
                lane.offer(messages)
                self._run_lane(lane)
        if not groups:
            return 0
        return self._send(channel, groups, messages)

    def _send(self, channel: str, groups: list[Group], messages: list[Message]) -> int:
        floors = self._floors.get(channel)
        batch = _Batch(messages)
        sent = _fan_out(groups, batch, floors)
        if floors:
            self._release_floors(channel, floors, messages[-1].offset)
        stats = self.stats
        stats.delivered += sent
        stats.encoded += batch.encoded
        by_encoder = stats.by_encoder
        for enc, (copies, size) in batch.sent.items():
            entry = by_encoder.get(enc)
            if entry is None:
                entry = by_encoder[enc] = [0, 0]
            self._turn_encoders[enc] = None
            entry[0] += copies
            entry[1] += size
        return sent

    # -- lanes: per-key interval and delay, shared per (channel, interval, delay) -------------

    def _lane(self, channel: str, rate: Rate) -> Lane:
        ident = (channel, rate[0], rate[1])
        lane = self._lanes.get(ident)
        if lane is None:
            lane = self._lanes[ident] = Lane(channel, rate[0], rate[1],
                                             self._delivered.get(channel, 0),
                                             self.policies.classify)
        return lane

    def _run_lane(self, lane: Lane) -> None:
        """Deliver what the lane has due now, and arm its one timer for what comes next."""
        ident = (lane.channel, lane.interval_ms, lane.delay_ms)
        out = lane.due(now_ms())
        groups = self._lane_sinks(lane.channel, (lane.interval_ms, lane.delay_ms))
        if out and groups:
            self._send(lane.channel, groups, out)
        at = lane.next_at()
        armed = self._lane_timers.get(ident)
        if armed is not None:
            if armed[0] == at:
                return  # already armed for it (the usual case between two beats)
            del self._lane_timers[ident]
            armed[1].cancel()
        if at is None:
            if not groups:
                self._lanes.pop(ident, None)  # no subscriber left and nothing pending
            return
        loop = self._loop or asyncio.get_running_loop()
        self._lane_timers[ident] = (at, loop.call_later(max(0.0, (at - now_ms()) / 1000.0),
                                                        self._lane_timer, ident))

    def _lane_timer(self, ident: tuple[str, int, int]) -> None:
        self._lane_timers.pop(ident, None)
        lane = self._lanes.get(ident)
        if lane is not None:
            self._run_lane(lane)

    def _lane_sinks(self, channel: str, rate: Rate) -> list[Group]:
        lanes = self._lane_groups.get(channel)
        if lanes is None or channel not in self._grouped:
            self._group_subscribers(channel)
            lanes = self._lane_groups.get(channel)
        return (lanes or {}).get(rate) or []

    def lane_offset(self, channel: str, rate: Rate) -> int | None:
        """Where a new subscriber of a delayed lane starts (what the lane let through)."""
        if not rate[1]:
            return None
        return self._lane(channel, rate).released

    # -- image tables ---------------------------------------------------------------------

    async def _latest_table(self, channel: str) -> LatestTable:
        """The channel's latest-per-key table, filled from the store the first time (while
        live messages already update it: the newer one of each key wins)."""
        table = self._latest.get(channel)
        if table is None:
            top = self.broker.position(channel)
            table = self._latest[channel] = LatestTable(top.epoch if top else "",
                                                        self._delivered.get(channel, 0))
        if table.filled:
            return table
        filling = self._latest_ready.get(channel)
        if filling is not None:
            await asyncio.shield(filling)
            return self._latest.get(channel) or table
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._latest_ready[channel] = ready
        try:
            until, after = self._delivered.get(channel, 0), 0
            classify = self.policies.classify
            while after < until:
                page = await self.store.read(channel, after, REPLAY_PAGE)
                if not page:
                    break
                for message in page:
                    key, lifecycle = classify(message)
                    if key is not None and not lifecycle and message.epoch == table.epoch:
                        table.put(key, message)
                after = page[-1].offset
            table.filled = True
        finally:
            del self._latest_ready[channel]
            ready.set_result(None)
        return table

    def catch_up(self, sink: Sink, channel: str, after: int
                 ) -> tuple[list[Message], list[list[int]], str, int] | None:
        """For ``sink``, which fell behind on conflating ``channel`` at offset ``after``: the
        messages that stand for everything since (the newest per key, every lifecycle
        message, through its filter, in offset order), the offsets it will not get, the
        epoch, and the offset this brings it to (live delivery goes on after it). None when
        the channel's table cannot tell: the sink is then a plain slow consumer."""
        table = self._latest.get(channel)
        if table is None:
            return None
        items = table.since(after)
        if items is None:
            return None
        upto = self._delivered.get(channel, 0)
        entries = self._exact.get(channel)
        name = channel
        flt = entries.get(sink, _UNSEEN) if entries else _UNSEEN
        if flt is _UNSEEN:
            for pattern, subs in self._patterns.items():
                if sink in subs and pattern_matcher(pattern).fullmatch(channel):
                    flt, name = subs[sink], pattern
                    break
        if flt is _UNSEEN:
            return [], [], table.epoch, upto  # unsubscribed meanwhile
        rate = (self._rates.get(name) or {}).get(sink) if self._rates else None
        if rate is not None and rate[1]:
            return None  # the live table would show a delayed plan the present
        if flt is not None:
            assert isinstance(flt, Filter)
            items = [m for m in items if flt.matches(channel, m.attrs)]
        return items, skipped_ranges(after, upto, [m.offset for m in items]), table.epoch, upto

    async def image(self, channel: str) -> tuple[int, list[Message]]:
        """The latest message per key of a conflating channel, and the offset it stands at
        (REST's snapshot; the same as a subscription's image)."""
        if not self.policies.conflates(channel):
            raise BadParameter(f"{channel} does not conflate: it has no image; read its "
                               "history instead")
        table = await self._latest_table(channel)
        return self._delivered.get(channel, 0), table.snapshot()

    def _send_image(self, sink: Sink, channel: str, flt: Filter | None) -> None:
        table = self._latest.get(channel)
        if table is None:
            return
        encode = getattr(sink.encoder, "encode_image", None) or sink.encoder.encode
        for message in table.snapshot():
            if flt is None or flt.matches(channel, message.attrs):
                sink.deliver(encode(message), message)

    def _notify_listeners(self, message: Message) -> None:
        for listener in self._listeners:
            try:
                listener(message)
            except Exception:  # a listener bug must not stop delivery
                log.exception("listener failed on %s #%d", message.channel, message.offset)

    def _release_floors(self, channel: str, floors: dict[Sink, int], offset: int) -> None:
        for sink in [s for s, floor in floors.items() if floor <= offset]:
            del floors[sink]
        if not floors:
            del self._floors[channel]

    def _group_subscribers(self, channel: str) -> list[Group]:
        """``channel``'s subscribers, exact then by pattern (a sink subscribed both ways is
        served once, with its exact subscription's filter), grouped by (filter, format)."""
        matched: dict[Sink, Filter | None] = dict(self._exact.get(channel) or {})
        rates: dict[Sink, Rate] = {}
        if self._rates:
            rates.update(self._rates.get(channel) or {})
        for pattern, entries in self._patterns.items():
            if pattern_matcher(pattern).fullmatch(channel):
                pattern_rates = self._rates.get(pattern) if self._rates else None
                for sink, flt in entries.items():
                    if sink not in matched:
                        matched[sink] = flt
                        if pattern_rates and sink in pattern_rates:
                            rates[sink] = pattern_rates[sink]
        conflates = self.policies.conflates(channel)
        by_key: dict[tuple[Filter | None, FrameEncoder, Rate], list[Sink]] = {}
        for sink, flt in matched.items():
            rate = rates.get(sink) if rates else None
            if rate is not None and not conflates:
                rate = (0, rate[1])  # an interval only means something per key
            key = (flt, sink.encoder, rate or (0, 0))
            sinks = by_key.get(key)
            if sinks is None:
                by_key[key] = [sink]
            else:
                sinks.append(sink)
        result: list[Group] = []
        lanes: dict[Rate, list[Group]] = {}
        for (flt, enc, rate), sinks in by_key.items():
            if rate == (0, 0):
                result.append((flt, enc, sinks))
            else:
                lanes.setdefault(rate, []).append((flt, enc, sinks))
        if len(self._grouped) >= MAX_GROUPED_CHANNELS:
            self._grouped.clear()
            self._lane_groups.clear()
        self._grouped[channel] = result
        if lanes:
            self._lane_groups[channel] = lanes
        else:
            self._lane_groups.pop(channel, None)
        return result

    def _regroup(self, name: str) -> None:
        """Subscriptions to ``name`` changed: its channels' groups are rebuilt when next used."""
        if is_pattern(name):
            self._grouped.clear()
            self._lane_groups.clear()
        else:
            self._grouped.pop(name, None)
            self._lane_groups.pop(name, None)

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self,
        sink: Sink,
        channels: Iterable[object],
        *,
        filter: Filter | None = None,
        since: Mapping[str, Position] | None = None,
        announce: Callable[[SubscribeReply], None] | None = None,
        max_channels: int | None = None,
        image: bool = False,
        rate: Rate = (0, 0),
    ) -> list[SubscribeReply]:
        """Subscribe ``sink``; replay from ``since`` first, then go live with no gap.

        ``announce`` is called with each channel's reply before that channel's replayed
        messages are delivered, so a client sees ``subscribed`` first.

        ``image``: on a conflating channel, send the latest message per key first (and do so
        anyway when ``since`` is older than the channel's history). ``rate``: ``(conflate_ms,
        delay_ms)``, served by the channel's shared lane of that rate.

        Raises:
            InvalidChannel, TooManyChannels, BadParameter: nothing was subscribed.
        """
        names = self.validate_subscription(channels, since, sink, max_channels)
        rate = check_rate(rate)
        since = since or {}
        await self._check_resume_latest(names, since)
        replies: list[SubscribeReply] = []
        for name in names:
            if is_pattern(name):
                reply = await self._subscribe_pattern(sink, name, filter, since, announce, rate)
            else:
                reply = await self._subscribe_exact(
                    sink, name, filter, since.get(name), announce, image, rate
                )
            replies.append(reply)
        return replies

    def subscribe_live(
        self,
        sink: Sink,
        channels: Iterable[object],
        *,
        filter: Filter | None = None,
        max_channels: int | None = None,
        rate: Rate = (0, 0),
    ) -> list[SubscribeReply] | None:
        """Subscribe without a resume position, synchronously, when nothing needs awaiting.

        Returns None (and changes nothing) when a channel has no local subscriber yet, since
        the broker must then be told first: call :meth:`subscribe` instead. This is the
        common case of a connect storm onto busy channels, and it costs no task.

        Raises:
            InvalidChannel, TooManyChannels, BadParameter: nothing was subscribed.
        """
        names = self.validate_subscription(channels, None, sink, max_channels)
        rate = check_rate(rate)
        if any(not is_pattern(n) and n not in self._exact for n in names):
            return None
        replies: list[SubscribeReply] = []
        for name in names:
            if is_pattern(name):
                self._register(self._patterns, sink, name, filter, rate)
                replies.append(SubscribeReply(name, "", 0, True, pattern=True,
                                              conflate_ms=rate[0], delay_ms=rate[1]))
            else:
                top = self.broker.position(name)
                offset = self.lane_offset(name, rate)
                if offset is None:
                    offset = top.offset if top else 0
                self._register(self._exact, sink, name, filter, rate)
                replies.append(SubscribeReply(name, top.epoch if top else "", offset, True,
                                              conflate_ms=self._interval(name, rate),
                                              delay_ms=rate[1]))
        return replies

    def _interval(self, channel: str, rate: Rate) -> int:
        return rate[0] if rate[0] and self.policies.conflates(channel) else 0

    def validate_subscription(
        self,
        channels: Iterable[object],
        since: Mapping[str, Position] | None,
        sink: Sink | None = None,
        max_channels: int | None = None,
    ) -> list[str]:
        """Check a subscription without applying it; returns the de-duplicated names.

        Raises:
            InvalidChannel, TooManyChannels, BadParameter.
        """
        limit = self.check_channel_count(channels, max_channels)
        names = _validate_names(channels)
        current = self._sink_subs.get(sink, _NO_NAMES) if sink is not None else _NO_NAMES
        new = [n for n in names if n not in current]
        if len(current) + len(new) > limit:
            raise TooManyChannels(
                f"a connection may hold at most {limit} channels; it has {len(current)} "
                f"and asked for {len(new)} more"
            )
        for channel, pos in _resumed(names, since):
            if self.broker.knows_latest(channel):
                _check_not_ahead(channel, pos, self.broker.position(channel))
        return names

    def check_channel_count(self, channels: object, max_channels: int | None = None) -> int:
        """Refuse a list of more names than a connection may hold, before any is read (each
        name costs a validation; a refusal must cost nothing per name). Returns the limit.

        Raises:
            TooManyChannels.
        """
        limit = self.limits.max_channels_per_sink
        if max_channels is not None:
            limit = min(limit, max_channels)
        if isinstance(channels, Sized) and not isinstance(channels, (str, bytes)):
            if len(channels) > limit:
                raise TooManyChannels(
                    f"a connection may hold at most {limit} channels; {len(channels)} were "
                    "asked for at once"
                )
        return limit

    async def _check_resume_latest(self, names: list[str], since: Mapping[str, Position]
                                   ) -> None:
        """Judge resume positions :meth:`validate_subscription` could not: on a scale-out
        broker this node's position may lag behind a position another node delivered (or
        not be kept at all for a channel nobody here listens to), so a resume position ahead
        of it is checked against the channel's latest position anywhere before it is refused.

        Raises:
            BadParameter: nothing was subscribed.
        """
        broker = self.broker
        for channel, pos in _resumed(names, since):
            if broker.knows_latest(channel):
                continue  # judged by validate_subscription
            top = broker.position(channel)
            if top is None or pos.epoch != top.epoch or pos.offset > top.offset:
                _check_not_ahead(channel, pos, await broker.latest(channel))

    async def _subscribe_exact(
        self,
        sink: Sink,
        channel: str,
        flt: Filter | None,
        pos: Position | None,
        announce: Callable[[SubscribeReply], None] | None,
        image: bool = False,
        rate: Rate = (0, 0),
    ) -> SubscribeReply:
        if channel not in self._exact:
            # First local subscriber: the broker starts listening (and catches up) before
            # positions are read and history replayed, so a per-channel broker misses nothing.
            await self.broker.subscribe(channel)
        top = self.broker.position(channel)
        epoch, offset = (top.epoch, top.offset) if top else ("", 0)
        interval = self._interval(channel, rate)
        if rate[1]:
            # Delayed: the lane's position, never newer; what lies before it (a resume) is
            # for REST, which applies the same delay. No image: it would show the present.
            released = self.lane_offset(channel, rate) or 0
            ok = pos is None or (pos.epoch == epoch and pos.offset >= released)
            reply = SubscribeReply(channel, epoch, released, ok, conflate_ms=interval,
                                   delay_ms=rate[1])
            if announce is not None:
                announce(reply)
            self._register(self._exact, sink, channel, flt, rate)
            return reply
        page, recovered = (None, True) if pos is None else await self._first_page(channel, pos)
        if self.policies.conflates(channel) and (
            (image and pos is None) or (pos is not None and not recovered)
        ):
            # A snapshot image: the latest message per key, then live, with nothing awaited
            # in between (messages of this turn not yet fanned out are in the image, and the
            # registration's floor keeps them from coming twice).
            await self._latest_table(channel)
            top = self.broker.position(channel)
            reply = SubscribeReply(channel, top.epoch if top else epoch,
                                   self._delivered.get(channel, 0), recovered, image=True,
                                   conflate_ms=interval)
            if announce is not None:
                announce(reply)
            self._send_image(sink, channel, flt)
            self._register(self._exact, sink, channel, flt, rate)
            return reply
        reply = SubscribeReply(channel, epoch, offset, recovered, conflate_ms=interval)
        if announce is not None:
            announce(reply)
        after = None
        if page is not None and pos is not None:
            started, before = time.perf_counter(), self.stats.replayed
            after = await self._replay_pages(sink, channel, flt, pos.offset, page)
            if self.observer is not None:
                self.observer.replayed(self.stats.replayed - before,
                                       time.perf_counter() - started)
        self._register(self._exact, sink, channel, flt, rate)
        if after is not None:
            self._set_floor(sink, channel, after)
        return reply

    async def _subscribe_pattern(
        self,
        sink: Sink,
        pattern: str,
        flt: Filter | None,
        since: Mapping[str, Position],
        announce: Callable[[SubscribeReply], None] | None,
        rate: Rate = (0, 0),
    ) -> SubscribeReply:
        matcher = pattern_matcher(pattern)
        recovered = True
        pages: list[tuple[str, Position, list[Message]]] = []
        for channel, pos in since.items():
            if matcher.fullmatch(channel):
                page, ok = await self._first_page(channel, pos)
                recovered = recovered and ok
                if page is not None:
                    pages.append((channel, pos, page))
        reply = SubscribeReply(pattern, "", 0, recovered, pattern=True, conflate_ms=rate[0],
                               delay_ms=rate[1])
        if announce is not None:
            announce(reply)
        afters: dict[str, int] = {}
        started, before = time.perf_counter(), self.stats.replayed
        for channel, pos, page in pages:
            afters[channel] = await self._replay_pages(sink, channel, flt, pos.offset, page)
        # A channel replayed early moves on while the later ones are replayed: catch every
        # one up again until all are level with what was delivered live, then go live with
        # no await in between (the pattern covers them all at once).
        while behind := [c for c, a in afters.items() if a < self._delivered.get(c, 0)]:
            for channel in behind:
                page = await self.store.read(channel, afters[channel], REPLAY_PAGE)
                afters[channel] = await self._replay_pages(
                    sink, channel, flt, afters[channel], page
                )
        if pages and self.observer is not None:
            self.observer.replayed(self.stats.replayed - before, time.perf_counter() - started)
        self._register(self._patterns, sink, pattern, flt, rate)
        for channel, after in afters.items():
            self._set_floor(sink, channel, after)
        return reply

    def _register(
        self,
        table: dict[str, dict[Sink, Filter | None]],
        sink: Sink,
        name: str,
        flt: Filter | None,
        rate: Rate = (0, 0),
    ) -> None:
        table.setdefault(name, {})[sink] = flt
        if rate != (0, 0):
            self._rates.setdefault(name, {})[sink] = rate
        elif self._rates:
            self._forget_rate(sink, name)
        self._regroup(name)
        self._sink_subs.setdefault(sink, set()).add(name)
        if self.policies.may_conflate(name):
            enable = getattr(sink, "enable_conflation", None)
            if enable is not None:
                enable(self.policies)
        # Messages of this turn not yet fanned out were delivered before this subscription
        # in the order of things (its reply already counts them): never hand them over.
        # (A delayed subscription's reply counts only what its lane let through: it gets them.)
        if rate[1]:
            return
        for channel, messages in self._turn:
            if channel == name or (is_pattern(name) and pattern_matcher(name).fullmatch(channel)):
                floors = self._floors.setdefault(channel, {})
                floors[sink] = max(floors.get(sink, 0), messages[-1].offset)

    async def _first_page(
        self, channel: str, pos: Position
    ) -> tuple[list[Message] | None, bool]:
        """Decide whether ``pos`` can be resumed; returns the first replay page and that."""
        top = self.broker.position(channel)
        if top is None:
            return None, pos.offset == 0
        if top.epoch != pos.epoch:
            return None, False
        page = await self.store.read(channel, pos.offset, REPLAY_PAGE)
        if pos.offset < self._delivered.get(channel, 0):
            if not page or page[0].offset != pos.offset + 1:
                return None, False  # history no longer reaches back to the position
        return page, True

    async def _replay_pages(
        self, sink: Sink, channel: str, flt: Filter | None, after: int, page: list[Message]
    ) -> int:
        """Send what ``sink`` missed after ``after``, page by page, until caught up.

        Returns the last offset sent, once it is level with everything delivered live so
        far; the caller then registers the sink without awaiting, so nothing falls between.
        """
        while True:
            for message in page:
                if flt is None or flt.matches(channel, message.attrs):
                    sink.deliver(sink.encoder.encode(message), message)
                after = message.offset
            self.stats.replayed += len(page)
            if page:
                await sink.drain()
            if after >= self._delivered.get(channel, 0) and len(page) < REPLAY_PAGE:
                return after
            page = await self.store.read(channel, after, REPLAY_PAGE)

    def _set_floor(self, sink: Sink, channel: str, after: int) -> None:
        """Committed and replayed, but not yet delivered live: drop those live copies."""
        if after > self._delivered.get(channel, 0):
            self._floors.setdefault(channel, {})[sink] = after

    async def unsubscribe(self, sink: Sink, channels: Iterable[object]) -> list[str]:
        """Remove ``sink`` from ``channels``; returns the names it was subscribed to."""
        self.check_channel_count(channels)
        names = _validate_names(channels)
        removed = [n for n in names if self._drop(sink, n)]
        for name in removed:
            if not is_pattern(name) and name not in self._exact:
                await self.broker.unsubscribe(name)
        return removed

    def remove_sink(self, sink: Sink) -> list[str]:
        """Forget a closed connection; returns exact channels left with no local subscriber."""
        names = list(self._sink_subs.get(sink, ()))
        orphaned = [n for n in names if self._drop(sink, n) and not is_pattern(n)
                    and n not in self._exact]
        self._sink_subs.pop(sink, None)
        for floors in self._floors.values():
            floors.pop(sink, None)
        return orphaned

    def _drop(self, sink: Sink, name: str) -> bool:
        table = self._patterns if is_pattern(name) else self._exact
        entries = table.get(name)
        if entries is None or sink not in entries:
            return False
        del entries[sink]
        if not entries:
            del table[name]
        if self._rates:
            self._forget_rate(sink, name)
        self._regroup(name)
        subs = self._sink_subs.get(sink)
        if subs is not None:
            subs.discard(name)
        return True

    def _forget_rate(self, sink: Sink, name: str) -> None:
        rates = self._rates.get(name)
        if rates is not None and rates.pop(sink, None) is not None and not rates:
            del self._rates[name]

    def local_subscriber_counts(self) -> dict[str, int]:
        """Subscribers per exact channel on this node (patterns not expanded)."""
        return {name: len(entries) for name, entries in self._exact.items()}

    def subscriptions(self, sink: Sink) -> frozenset[str]:
        return frozenset(self._sink_subs.get(sink, ()))

    @property
    def subscriber_count(self) -> int:
        return len(self._sink_subs)


class _Batch:
    """One channel's messages of one loop turn: frames per format and the joined frames per
    (filter, format), each computed once, whatever the number of subscribers."""

    __slots__ = ("messages", "encoded", "sent", "_frames", "_groups")

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        self.encoded = 0
        # [copies, bytes] handed per format (_fan_out: once per group of sinks, not per sink)
        self.sent: dict[FrameEncoder, list[int]] = {}
        self._frames: dict[FrameEncoder, list[bytes]] = {}
        self._groups: dict[tuple[Filter | None, FrameEncoder], _Group | None] = {}

    def tally(self, enc: FrameEncoder, copies: int, size: int) -> None:
        """``copies`` messages in ``size`` bytes went to sinks in format ``enc`` (once per
        group of subscribers, not per subscriber)."""
        if copies:
            entry = self.sent.get(enc)
            if entry is None:
                entry = self.sent[enc] = [0, 0]
            entry[0] += copies
            entry[1] += size

    def frames(self, enc: FrameEncoder) -> list[bytes]:
        frames = self._frames.get(enc)
        if frames is None:
            frames = self._frames[enc] = [enc.encode(m) for m in self.messages]
            self.encoded += len(frames)
        return frames

    def group(self, flt: Filter | None, enc: FrameEncoder) -> _Group | None:
        """:meth:`select` without a floor, once per (filter, format) however many share it."""
        key = (flt, enc)
        if key not in self._groups:
            self._groups[key] = self.select(flt, enc)
        return self._groups[key]

    def select(self, flt: Filter | None, enc: FrameEncoder, floor: int = 0) -> _Group | None:
        """What a subscriber with ``flt`` in format ``enc`` gets, past offset ``floor`` (what
        its replay already sent); None when nothing passes."""
        frames = self.frames(enc)
        messages = self.messages
        if flt is None and floor == 0:
            picked_frames, picked = frames, messages
        else:
            idx = [i for i, m in enumerate(messages) if m.offset > floor
                   and (flt is None or flt.matches(m.channel, m.attrs))]
            if not idx:
                return None
            picked_frames = [frames[i] for i in idx]
            picked = [messages[i] for i in idx]
        joined = picked_frames[0] if len(picked_frames) == 1 else b"".join(picked_frames)
        return _Group(picked_frames, joined, picked)


@dataclass(frozen=True, slots=True)
class _Group:
    frames: list[bytes]
    joined: bytes
    messages: list[Message]


def _fan_out(groups: list[Group], batch: _Batch, floors: dict[Sink, int] | None) -> int:
    """Hand the batch to each group of subscribers; returns the number of message copies.

    A group's buffer is chosen once (:meth:`_Batch.group`); a group it leaves empty is
    skipped without visiting its subscribers. Subscribers with a floor (their replay already
    sent part of the batch) get their own selection.
    """
    sent = 0
    for flt, enc, sinks in groups:
        shared = batch.group(flt, enc)
        if floors:
            copies = size = 0
            for sink in sinks:
                floor = floors.get(sink)
                group = shared if floor is None else batch.select(flt, enc, floor)
                if group is not None:
                    sink.deliver_many(group.frames, group.joined, group.messages)
                    copies += len(group.messages)
                    size += len(group.joined)
            sent += copies
            batch.tally(enc, copies, size)
            continue
        if shared is None:
            continue
        frames, joined, picked = shared.frames, shared.joined, shared.messages
        for sink in sinks:
            sink.deliver_many(frames, joined, picked)
        n = len(sinks)
        sent += len(picked) * n
        batch.tally(enc, len(picked) * n, len(joined) * n)
    return sent


_NO_NAMES: frozenset[str] = frozenset()
_UNSEEN: object = object()


def check_rate(rate: Rate) -> Rate:
    """``(conflate_ms, delay_ms)`` within bounds.

    Raises:
        BadParameter.
    """
    interval, delay = rate
    if not (isinstance(interval, int) and 0 <= interval <= MAX_CONFLATE_MS):
        raise BadParameter(f"conflate_ms must be an integer from 0 to {MAX_CONFLATE_MS}")
    if not (isinstance(delay, int) and 0 <= delay <= MAX_DELAY_MS):
        raise BadParameter(f"a delay must be from 0 to {MAX_DELAY_MS} ms")
    return rate


def _resumed(names: list[str], since: Mapping[str, Position] | None
             ) -> Iterator[tuple[str, Position]]:
    """The (channel, resume position) pairs a subscription to ``names`` asks for."""
    if not since:
        return
    for name in names:
        if not is_pattern(name):
            pos = since.get(name)
            if pos is not None:
                yield name, pos
            continue
        matcher = pattern_matcher(name)
        for channel, pos in since.items():
            if matcher.fullmatch(channel):
                yield channel, pos


def _check_not_ahead(channel: str, pos: Position, top: Position | None) -> None:
    if top is not None and pos.epoch == top.epoch and pos.offset > top.offset:
        raise BadParameter(
            f"resume position {pos.offset} of {channel} is ahead of the channel "
            f"(latest offset {top.offset})"
        )


def _validate_names(channels: Iterable[object]) -> list[str]:
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Iterable):
        raise InvalidChannel("channels must be a list of channel names or patterns")
    # dict.fromkeys: de-duplicated in one pass, order kept (a list's `in` was quadratic)
    names = list(dict.fromkeys(validate_pattern(raw) for raw in channels))
    if not names:
        raise InvalidChannel("channels must name at least one channel")
    return names


def _clean_attrs(attrs: Mapping[str, str] | None) -> dict[str, str] | None:
    if attrs is None:
        return None
    if not isinstance(attrs, Mapping) or len(attrs) > 32:
        raise BadParameter("attrs must be an object of at most 32 string attributes")
    clean: dict[str, str] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise BadParameter("attrs must map strings to strings")
        clean[key] = value if isinstance(value, str) else str(value).lower()
    return clean or None
