"""Redis broker: offsets, history and fan-out shared by every node of a scale-out hub.

The Broker contract (``core/broker.py``) holds across nodes: a message is delivered (on any
node) only after ``persist`` made it durable, offsets have no holes and are the same on every
node, a failed persist reuses its offset.

Why not one script per publish
------------------------------
Centrifugo's Redis engine assigns the offset, appends to the history stream and PUBLISHes in
one Lua script, because Redis *is* its history. Here the durable history is the store
(PostgreSQL), and the contract says "persist, then deliver; a failed persist delivers nothing
and its offset is reused". A script that published first could not take a message back when
the store then refused it, and two nodes appending offsets n and n+1 of one channel to
PostgreSQL in the wrong order would break the store's no-hole rule. So a publish is split at
the one place it must be: offsets are *assigned* under a per-channel writer lease, and the
atomic script runs *after* the store commit: ``commit.lua`` checks the lease (fencing) and
that the offsets follow the channel's top, appends every message to the capped history
stream, records idempotency keys, moves the top and PUBLISHes the batch, all at once.

Writer lease (``acquire.lua``, ``renew.lua``, ``release.lua``)
    One node at a time assigns a channel's offsets. The holder assigns locally with no round
    trip (exactly like ``MemoryBroker``: the offset is taken synchronously, persists run in
    parallel and reach the store in offset order, so the store's group commit stays
    pipelined), commits persisted messages in offset order, one script call per channel at
    a time (batches grow under load), and releases the lease once idle for ``linger_s``.
    The commits of every channel ready in one event-loop turn go to Redis together, one
    pipelined round trip (``RedisLink.call_many``): each script still succeeds or fails
    for its own channel.
    Another node that wants the channel marks it *wanted*; the holder then stops assigning,
    drains and releases. Leases expire after ``lease_ttl_s`` unless renewed, so a SIGKILLed
    holder blocks its channels for at most that long. A lease that was not released cleanly
    (``dirty``) makes the next holder *reconcile* with the store first: messages the dead
    holder persisted but never committed are read back from the store and committed (hence
    delivered everywhere) before new offsets are assigned. The store's own per-channel
    advisory lock (``stores/postgres.py``) keeps the no-hole rule even if two nodes ever
    overlapped.

Delivery
    Each node listens on Redis Pub/Sub (``P:p:<channel>``). By default a node listens to
    every channel (``PSUBSCRIBE P:p:*``) so that ``position()`` is current for every channel
    (the hub's resume checks and pattern subscriptions need that); ``subscribe_all=False``
    listens only to channels with local subscribers (SUBSCRIBE on the first, UNSUBSCRIBE
    when the last leaves), which needs the hub to subscribe before it replays (see
    ``subscribe``). The publishing node delivers its own messages when its commit returns (so
    the handler gets the very ``Message`` that was persisted); other nodes deliver the
    PUBLISHed copy. Delivery is per channel in offset order: a message ahead of the next
    expected offset is held while the hole is filled from the Redis stream, or from the store
    when the stream no longer reaches back; only if neither has it is the hole skipped, and
    then the handler's optional ``on_reset(channel)`` is called so subscribers resume.

Outages
    Losing Redis makes the broker not ready (``ready``, ``on_ready_change``): publishes fail
    at once with ``Unavailable``, in-flight ones fail too (their persisted messages are
    reconciled later, so they may still be delivered: a retry with an idempotency key is
    safe). The listener reconnects with exponential backoff; on reconnection it re-seeds
    channels Redis forgot (a restarted Redis) from the store, compares every channel's top
    with what this node delivered and fills the holes before delivering anything newer.

Failover (Redis Sentinel, ``redis+sentinel://``, see ``redis_url.py``)
    Every connection asks the Sentinels for the current primary when it (re)connects. The
    primary's death is an outage as above (leases dropped, in-flight publishes failed,
    ``generation`` bumped); the promoted replica may miss the last commits (replication is
    asynchronous), so after reconnecting the listener fills holes from the stream and the
    store, and the first lease of every channel since the reconnection reconciles with the
    store (``redis_writer``: ``checked`` vs ``generation``), committing what the store has and
    the new primary lost. Two writers of one channel (a replica promoted without the lease
    key) cannot fork offsets: the store accepts offset n only after n - 1 under the channel's
    advisory lock, so the loser's persist is refused, and the commit script checks the lease
    and that offsets follow the top again.

History (``history``)History (``history``)
    The stream holds the newest ``history_size`` messages of each channel, ids = offsets.
    ``history(channel, after, limit)`` returns them, or ``None`` when the stream does not
    reach back to ``after + 1`` (then read the store); ``HistoryStore``
    (``brokers/redis_history.py``) wraps a store so the hub's replays read Redis first.

Idempotency
    Within a node as in ``MemoryBroker`` (a retry gets the first publish's very result);
    across nodes a key is claimed in Redis (``claim.lua``) before the offset is assigned, a
    retry on another node waits for the claim to settle and returns the committed message.

Modules, one per role
    ``redis.py`` (this one) the public ``RedisBroker``: configuration, lifecycle, wiring;
    ``redis_link.py`` the connection, scripts and readiness; ``redis_writer.py`` key claims,
    the writer lease, persist and commit; ``redis_delivery.py`` in-order delivery and hole
    filling (the decision itself is ``ordering.ChannelOrder``, pure); ``redis_listener.py``
    the Pub/Sub fan-out and resync; ``redis_records.py`` key names and the record codec;
    ``redis_history.py`` the store that reads history from Redis first. Publishes in flight
    and the idempotency window are ``inflight.py``'s, shared with ``MemoryBroker``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Unpack

from wagerwire.brokers.inflight import IDEMPOTENCY_WINDOW_BYTES
from wagerwire.brokers.redis_delivery import OrderedDelivery, read_stream
from wagerwire.brokers.redis_link import RedisLink
from wagerwire.brokers.redis_listener import FanoutListener
from wagerwire.brokers.redis_records import ChannelKeys, decode_records, encode_record
from wagerwire.brokers.redis_writer import LeaseWriter
from wagerwire.core.broker import BrokerHandler, PublishArgs
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.core.store import Store
from wagerwire.errors import Unavailable

if TYPE_CHECKING:
    from wagerwire.core.broker import Broker

__all__ = ["RedisBroker", "decode_records", "encode_record"]

log = logging.getLogger("wagerwire.brokers.redis")

CLOSE_TIMEOUT_S = 2.0


class RedisBroker:
    """The Broker for many nodes over one Redis; see the module docstring.

    Args:
        url: ``redis://host:port/db`` or ``redis+sentinel://host:port,…/service[/db]``.
        store: the durable store of this node (the one ``persist`` writes to); used to seed
            channels Redis does not know, to reconcile after a dead lease holder, and to fill
            holes the stream no longer covers. ``None`` trusts Redis alone.
        prefix: namespace of every Redis key (several hubs can share one Redis).
        idempotency_window_s: as in ``MemoryBroker``, measured on the messages' ``ts``.
        idempotency_window_bytes: what this node's window of keys may weigh, as in
            ``MemoryBroker`` (across nodes the claims in Redis expire with the window).
        lease_ttl_s: how long a channel's writer lease outlives a silent holder.
        linger_s: an idle holder keeps the lease this long (saves a round trip per publish
            for a steady publisher).
        history_size: messages kept per channel in the Redis stream (approximate, at least).
        subscribe_all: listen to every channel (default) or only to those with local
            subscribers.
        retry_max_s: longest pause between reconnection attempts.
        acquire_timeout_s: a publish waits at most this long for a channel's lease.
    """

    def __init__(
        self,
        url: str,
        *,
        store: Store | None = None,
        prefix: str = "ww",
        idempotency_window_s: float = 300,
        idempotency_window_bytes: int = IDEMPOTENCY_WINDOW_BYTES,
        lease_ttl_s: float = 3.0,
        linger_s: float = 0.05,
        history_size: int = 10_000,
        subscribe_all: bool = True,
        retry_max_s: float = 2.0,
        acquire_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if idempotency_window_s < 0 or lease_ttl_s <= 0 or history_size < 1:
            raise ValueError("idempotency_window_s >= 0, lease_ttl_s > 0, history_size >= 1")
        self.url = url
        self.store = store
        self.prefix = prefix
        self.idempotency_window_s = idempotency_window_s
        self.node_id = f"{os.getpid():x}-{secrets.token_hex(4)}"
        self.subscribe_all = subscribe_all
        self.history_size = history_size
        self.link = RedisLink(url, prefix, self.node_id, retry_max_s, connect_timeout_s)
        self.delivery = OrderedDelivery(self.link, store)
        self.writer = LeaseWriter(
            self.link, self.delivery, store, window_ms=int(idempotency_window_s * 1000),
            lease_ms=int(lease_ttl_s * 1000), linger_s=linger_s, history_size=history_size,
            acquire_timeout_s=acquire_timeout_s, window_bytes=idempotency_window_bytes,
        )
        self.listener = FanoutListener(self.link, self.delivery, store,
                                       subscribe_all=subscribe_all)
        self.link.on_down = self.writer.lost_redis

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Connected to Redis (commands and fan-out): publishes are accepted."""
        return self.link.ready

    @property
    def on_ready_change(self) -> Callable[[bool], None] | None:
        """Called with the new ``ready`` whenever it changes (``/readyz`` follows it)."""
        return self.link.on_ready_change

    @on_ready_change.setter
    def on_ready_change(self, callback: Callable[[bool], None] | None) -> None:
        self.link.on_ready_change = callback

    @property
    def failovers(self) -> int:
        """Redis failovers this node followed (Sentinel named a new primary), for metrics."""
        return self.link.failovers

    @property
    def resyncs(self) -> int:
        """Completed (re)connections of the listener, for tests and metrics."""
        return self.listener.resyncs

    async def start(self, handler: BrokerHandler, positions: Mapping[str, Position]) -> None:
        """Connect, seed Redis from ``positions`` (the store's), start listening."""
        link = self.link
        if link.closed:
            raise Unavailable("the broker is closed")
        self.delivery.handler = handler
        link.opened = True
        await link.connect()
        for name, position in positions.items():
            self.writer.seeds[name] = position
            self.delivery.seed(name, position)
        await link.seed(list(positions.items()))
        link.started = True
        self.listener.start()
        self.writer.start()
        try:
            await asyncio.wait_for(self.listener.listening.wait(), link.connect_timeout_s)
        except TimeoutError as exc:
            await self.close()
            raise Unavailable("cannot subscribe to Redis fan-out") from exc

    async def close(self) -> None:
        """Stop delivering; publishes still in flight fail with ``Unavailable``."""
        link = self.link
        if link.closed:
            return
        link.closed = True
        link.set_ready()
        self.writer.stop()
        tasks = [t for t in (self.listener.task, self.writer.renewer, link.probe)
                 if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: a task blocked inside redis-py may swallow one cancellation (seen as a
            # rare hang at close); it is abandoned after the timeout rather than awaited.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for task in stuck:
                task.cancel()
                log.warning("redis broker task %s did not stop in time", task.get_name())
        if link.redis is not None:
            await self.writer.release_all()
            await link.aclose()

    def position(self, channel: str) -> Position | None:
        """The last position of ``channel`` delivered on this node."""
        return self.delivery.position(channel)

    def knows_latest(self, channel: str) -> bool:
        """False: another node's commit reaches this one through the fan-out, later (and not
        at all for a channel nobody here listens to when listening per channel)."""
        return False

    async def latest(self, channel: str) -> Position | None:
        """The channel's top in Redis (moved before any node delivers), else the store's.

        A node listening per channel keeps no current position of channels nobody here
        listens to, so a client's resume position is judged against this, not ``position``.
        ``None`` when Redis and the store cannot tell now (then nothing is refused).
        """
        link = self.link
        if link.redis is not None and link.cmd_ok:
            meta = await link.quiet(link.redis.hmget(ChannelKeys(self.prefix, channel).meta,
                                                     ["epoch", "top"]))
            if meta is None:
                return None
            epoch, top = meta
            if isinstance(epoch, bytes) and isinstance(top, bytes):
                return Position(epoch.decode(), int(top)) if int(top) > 0 else None
        if self.store is not None:  # Redis forgot the channel (restarted): the store has it
            try:
                info = await self.store.channel_info(channel)
            except Exception:
                log.exception("reading the position of %s from the store failed", channel)
                return None
            if info is not None and info.last_offset > 0:
                return Position(info.epoch, info.last_offset)
        return self.position(channel)

    async def subscribe(self, channel: str) -> None:
        """Listen to ``channel`` (when listening per channel) and catch up with Redis.

        On return, this node has delivered everything of ``channel`` up to Redis' top and
        will deliver everything after it. With ``subscribe_all=False`` the hub must call this
        *before* it replays history for a new subscriber (positions of channels nobody here
        listens to are not kept current).
        """
        await self.listener.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """The last local subscriber left: stop listening (when listening per channel)."""
        await self.listener.unsubscribe(channel)

    async def publish(self, channel: str, data: bytes, **args: Unpack[PublishArgs]
                      ) -> PublishResult:
        """Assign the next offset under the channel's lease, persist, commit, deliver.

        Raises:
            Unavailable: not started, closed, Redis unreachable, the lease could not be had
                in time, or an earlier publish of the channel failed while this one was in
                flight (its offset is reused).
            Exception: whatever ``persist`` raised; nothing was delivered.
        """
        return await self.writer.publish(channel, data, **args)

    async def history(self, channel: str, after: int, limit: int) -> list[Message] | None:
        """Committed messages with offset > ``after`` from the Redis stream, ascending.

        ``None`` when the stream cannot answer for the whole range (it no longer reaches
        back to ``after + 1``, or Redis lost the channel): read the store instead.
        """
        return await read_stream(self.link, channel, after, limit)


if TYPE_CHECKING:
    _conforms: Broker = RedisBroker("redis://")
