"""The Redis broker's listener: the Pub/Sub fan-out, reconnection and resync.

The listener subscribes to every channel's fan-out (``PSUBSCRIBE <prefix>:p:*``) or, with
``subscribe_all=False``, only to channels with local subscribers, and hands each batch other
nodes committed to ``redis_delivery`` (this node's own commits are delivered when they
return). When the connection drops it reconnects with exponential backoff; after every
(re)connection it resyncs: channels Redis forgot (a restarted Redis) are re-seeded from the
store, and every channel's top in Redis is compared with what this node delivered, so holes
are filled before anything newer is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

import orjson
from redis.asyncio.client import PubSub

from wagerwire.brokers.redis_delivery import OrderedDelivery
from wagerwire.brokers.redis_link import REDIS_ERRORS, RedisLink
from wagerwire.brokers.redis_records import (
    ChannelKeys,
    batch_of,
    decode_records,
    fanout_prefix,
)
from wagerwire.core.store import Store
from wagerwire.errors import Unavailable

__all__ = ["FanoutListener"]

log = logging.getLogger("wagerwire.brokers.redis")

_SYNC_BATCH = 500


class FanoutListener:
    """Receives the fan-out of every node and keeps this node's positions in step."""

    def __init__(self, link: RedisLink, delivery: OrderedDelivery, store: Store | None, *,
                 subscribe_all: bool) -> None:
        self.link = link
        self.delivery = delivery
        self.store = store
        self.subscribe_all = subscribe_all
        self.subscribed: set[str] = set()  # channels with local subscribers
        self.listening = asyncio.Event()  # set after the first (re)connection's resync
        self.resyncs = 0  # completed (re)connections, for tests and metrics
        self.task: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._listen())

    async def subscribe(self, channel: str) -> None:
        """Local subscribers to ``channel``: listen (per channel) and catch up with Redis."""
        self.subscribed.add(channel)
        self.delivery.order(channel)
        if not self.subscribe_all and self._pubsub is not None and self.link.sub_ok:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._pubsub.subscribe(self._fanout(channel))
        with contextlib.suppress(*REDIS_ERRORS, Unavailable):
            await self.sync_channels([channel])
        # The sync may have started filling up to Redis' top: positions and replays read
        # after this return must see it (bounded: a fill retries while Redis is away).
        await self.delivery.caught_up(channel, self.link.connect_timeout_s)

    async def unsubscribe(self, channel: str) -> None:
        """The last local subscriber of ``channel`` left: stop listening (per channel)."""
        if channel not in self.subscribed:
            return
        self.subscribed.discard(channel)
        if not self.subscribe_all and self._pubsub is not None and self.link.sub_ok:
            with contextlib.suppress(*REDIS_ERRORS):
                await self._pubsub.unsubscribe(self._fanout(channel))

    def _fanout(self, channel: str) -> str:
        return fanout_prefix(self.link.prefix) + channel

    async def _listen(self) -> None:
        """Receive the fan-out; reconnect with backoff; resync after every (re)connection."""
        link = self.link
        delay = 0.05
        redis = link.redis
        assert redis is not None
        skip = len(fanout_prefix(link.prefix))
        while not link.closed:
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                if self.subscribe_all:
                    await pubsub.psubscribe(fanout_prefix(link.prefix) + "*")
                else:
                    names = [self._fanout(name) for name in self.subscribed]
                    await pubsub.subscribe(fanout_prefix(link.prefix), *names)
                self._pubsub = pubsub
                # Drain the subscribe confirmations so the subscription is live.
                await pubsub.get_message(timeout=0.5)
                link.sub_ok = True
                link.cmd_ok = True
                link.note_primary()
                await self._resync()
                self.resyncs += 1
                link.set_ready()
                self.listening.set()
                delay = 0.05
                while not link.closed:
                    # No timeout: nothing is done between messages, so no timer per message
                    # is set up and torn down; close() cancels this task.
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None or msg["type"] not in ("message", "pmessage"):
                        continue
                    channel = msg["channel"][skip:].decode()
                    self._on_fanout(channel, msg["data"])
            except asyncio.CancelledError:
                raise
            except (*REDIS_ERRORS, Unavailable) as exc:
                if link.sub_ok:
                    log.warning("Redis fan-out connection lost: %s", exc)
                link.sub_ok = False
                link.set_ready()
                link.down(exc)
            except Exception:
                log.exception("Redis listener failed")
                link.sub_ok = False
                link.set_ready()
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            if not link.closed:
                await asyncio.sleep(delay)
                delay = min(delay * 2, link.retry_max_s)

    def _on_fanout(self, channel: str, payload: bytes) -> None:
        if batch_of(self.link.node_id, payload):
            return  # our own commit: delivered when it returned, no need to decode it
        try:
            records = decode_records(channel, payload)
        except (ValueError, struct.error, orjson.JSONDecodeError):
            log.exception("undecodable fan-out on %s", channel)
            return
        node_id = self.link.node_id
        offer = self.delivery.offer
        for node, message in records:
            if node != node_id:  # our own commits are delivered when they return
                offer(channel, message, None)

    async def _resync(self) -> None:
        """After (re)connecting: re-seed what Redis forgot, then fill every hole."""
        names = [name for name in self.delivery.known()
                 if self.subscribe_all or name in self.subscribed]
        await self.sync_channels(names)

    async def sync_channels(self, names: list[str]) -> None:
        """Bring ``names`` up to their tops in Redis (seeding those Redis forgot)."""
        redis = self.link.redis
        assert redis is not None
        prefix = self.link.prefix
        for start in range(0, len(names), _SYNC_BATCH):
            chunk = names[start:start + _SYNC_BATCH]
            async with redis.pipeline(transaction=False) as pipe:
                for name in chunk:
                    pipe.hmget(ChannelKeys(prefix, name).meta, ["epoch", "top"])
                metas = await pipe.execute()
            missing = [n for n, (epoch, _) in zip(chunk, metas, strict=True) if epoch is None]
            if missing and self.store is not None:
                positions = await self.store.positions()
                seeds = [(n, positions[n]) for n in missing if n in positions]
                await self.link.seed(seeds)
                for name, pos in seeds:
                    self.delivery.sync(name, pos.epoch, pos.offset)
                for name in missing:
                    if name not in positions:  # nowhere yet: deliver it from offset 1
                        self.delivery.order(name).expect_new()
            for name, (epoch, top) in zip(chunk, metas, strict=True):
                if epoch is not None:
                    self.delivery.sync(name, epoch.decode(), int(top))
