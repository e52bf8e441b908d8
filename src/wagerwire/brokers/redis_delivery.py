"""The Redis broker's delivery: each channel's messages to the hub once, in offset order.

Messages arrive from this node's commits (``redis_writer``, with the publish to settle), from
the fan-out of other nodes (``redis_listener``) and from pages fetched to fill holes. The
decision (deliver, hold, fill, skip) is :class:`~wagerwire.brokers.ordering.ChannelOrder`'s;
this module performs it: it calls the handler, settles publishes, runs fills (the Redis
stream first, the store when the stream no longer reaches back, retrying while Redis is
down) and, when neither has a hole, tells the handler's optional ``on_reset(channel)`` so its
subscribers resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from wagerwire.brokers.inflight import Publish
from wagerwire.brokers.ordering import Action, ChannelOrder, Deliver, Duplicate, StartFill
from wagerwire.brokers.redis_link import REDIS_ERRORS, RedisLink
from wagerwire.brokers.redis_records import ChannelKeys, decode_record
from wagerwire.core.broker import BrokerHandler
from wagerwire.core.messages import Message, Position
from wagerwire.core.store import Store
from wagerwire.errors import Unavailable

__all__ = ["OrderedDelivery", "read_stream"]

log = logging.getLogger("wagerwire.brokers.redis")

FILL_PAGE = 500

Held = tuple[Message, Publish | None]  # a message, and this node's publish of it if any


async def read_stream(link: RedisLink, channel: str, after: int, limit: int
                      ) -> list[Message] | None:
    """Committed messages with offset > ``after`` from the Redis stream, ascending.

    ``None`` when the stream cannot answer for the whole range (it no longer reaches back to
    ``after + 1``, or Redis lost the channel): read the store instead.
    """
    redis = link.redis
    if redis is None or limit <= 0:
        return [] if limit <= 0 else None
    keys = ChannelKeys(link.prefix, channel)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hmget(keys.meta, ["epoch", "top"])
        pipe.xrange(keys.stream, min=str(after + 1), max="+", count=limit)
        (epoch, top), entries = await pipe.execute()
    if epoch is None:
        return None
    if not entries:
        return [] if int(top) <= after else None
    out = []
    expected = after + 1
    for entry_id, fields in entries:
        offset = int(entry_id.split(b"-", 1)[0])
        if offset != expected:
            return None
        out.append(decode_record(channel, fields[b"m"])[1])
        expected += 1
    return out


class OrderedDelivery:
    """Per-channel in-order delivery to ``handler`` on this node."""

    def __init__(self, link: RedisLink, store: Store | None) -> None:
        self.link = link
        self.store = store
        self.handler: BrokerHandler | None = None
        self.orders: dict[str, ChannelOrder[Held]] = {}
        self._filled: dict[str, asyncio.Event] = {}  # set when the channel's fill ends

    def order(self, channel: str) -> ChannelOrder[Held]:
        """The delivery state of ``channel`` (made on first use)."""
        order = self.orders.get(channel)
        if order is None:
            order = self.orders[channel] = ChannelOrder(FILL_PAGE)
        return order

    def position(self, channel: str) -> Position | None:
        """The last position of ``channel`` delivered on this node."""
        order = self.orders.get(channel)
        if order is None or order.epoch is None or order.delivered <= 0:
            return None
        return Position(order.epoch, order.delivered)

    def known(self) -> list[str]:
        """The channels whose epoch this node knows (seeded, synced or delivered)."""
        return [name for name, order in self.orders.items() if order.epoch is not None]

    def seed(self, channel: str, position: Position) -> None:
        """``channel`` was delivered up to ``position`` (the store's, at start)."""
        self.order(channel).seed(position.epoch, position.offset)

    def offer(self, channel: str, message: Message, pub: Publish | None) -> None:
        """Deliver ``message`` in order: now, after a hole is filled, or never (seen)."""
        order = self.order(channel)
        self._run(channel, order, order.offer(message.epoch, message.offset, (message, pub)))

    def sync(self, channel: str, epoch: str, top: int) -> None:
        """Redis says ``channel`` is at (``epoch``, ``top``): fill up to it."""
        order = self.order(channel)
        self._run(channel, order, order.sync(epoch, top))

    def _run(self, channel: str, order: ChannelOrder[Held], actions: Iterable[Action[Held]]
             ) -> None:
        for action in actions:  # isinstance, most frequent first: once per message
            if isinstance(action, Deliver):
                self._deliver(*action.item)
            elif isinstance(action, Duplicate):
                pub = action.item[1]
                if pub is not None:  # another copy got there first (a fill)
                    pub.delivered_now()
            elif isinstance(action, StartFill):
                self._filled.setdefault(channel, asyncio.Event()).clear()
                self.link.spawn(self._fill(channel, order))
            else:
                self._skip(channel, action.first, action.last)

    def _deliver(self, message: Message, pub: Publish | None) -> None:
        handler = self.handler
        if handler is not None and not self.link.closed:
            try:
                handler.on_message(message)
            except Exception:  # a handler bug must not stall the channel
                log.exception("handler failed on %s #%d", message.channel, message.offset)
        if pub is not None:
            pub.delivered_now()

    async def _fill(self, channel: str, order: ChannelOrder[Held]) -> None:
        """Fetch the missing offsets (stream, then store) and deliver them in order."""
        delay = 0.05
        try:
            while not self.link.closed:
                asked = order.fetch_range()
                if asked is None:
                    break
                try:
                    page = await self._fetch(channel, asked.epoch, asked.after, asked.limit)
                except (*REDIS_ERRORS, Unavailable) as exc:
                    log.warning("filling %s failed (%s); retrying", channel, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.link.retry_max_s)
                    continue
                held = [(m.offset, (m, None)) for m in page]
                self._run(channel, order, order.fetched(asked, held))
        finally:
            ended = order.fill_ended()
        if not self.link.closed:
            self._run(channel, order, ended)
        if not order.filling:
            self._filled.pop(channel, asyncio.Event()).set()

    async def caught_up(self, channel: str, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) until no hole of ``channel`` is being filled:
        everything up to the last top synced or offered is delivered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        order = self.orders.get(channel)
        while order is not None and order.filling and not self.link.closed:
            event = self._filled.setdefault(channel, asyncio.Event())
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), left)

    def _skip(self, channel: str, first: int, last: int) -> None:
        """History no longer has offsets ``first`` to ``last``: make subscribers resume (the
        hub's ``on_reset`` when it has one)."""
        log.error("%s: offsets %d-%d are in neither Redis nor the store; subscribers must "
                  "resume", channel, first, last)
        reset = getattr(self.handler, "on_reset", None)
        if callable(reset):
            try:
                reset(channel)
            except Exception:
                log.exception("on_reset failed for %s", channel)

    async def _fetch(
        self, channel: str, epoch: str | None, after: int, limit: int
    ) -> list[Message]:
        """Contiguous messages after ``after``: from the stream, else from the store."""
        page = await read_stream(self.link, channel, after, limit)
        if page is not None and page and page[0].epoch == epoch:
            return page
        if self.store is not None:
            stored = await self.store.read(channel, after, limit)
            if stored and stored[0].offset == after + 1 and stored[0].epoch == epoch:
                return stored
        return []
