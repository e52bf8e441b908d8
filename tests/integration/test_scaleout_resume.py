"""Resuming on another node of a scale-out hub whose broker listens per channel.

A node listening per channel (``listen=local``) keeps no current position of a channel
nobody there subscribes to, so a client's valid resume position (delivered by another node)
may be ahead of it: the hub must judge it against the channel's latest position anywhere,
not refuse it as "ahead of the channel". Two real hubs, one Redis, one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from servers import PostgresServer, RedisServer, postgres_server, redis_server
from wagerwire.brokers.redis import RedisBroker
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message, Position
from wagerwire.errors import BadParameter
from wagerwire.stores.postgres import PostgresStore

__all__ = ["postgres_server", "redis_server"]


class Encoder:
    def encode(self, message: Message) -> bytes:
        return b"%d;" % message.offset


class Sink:
    def __init__(self) -> None:
        self.encoder = Encoder()
        self.offsets: list[int] = []

    def deliver(self, frame: bytes, message: Message) -> None:
        self.offsets.append(message.offset)

    def deliver_many(self, frames: list[bytes], joined: bytes, messages: list[Message]) -> None:
        self.offsets += [m.offset for m in messages]

    async def drain(self) -> None:
        return None


MakeHub = Callable[[], Awaitable[Hub]]


@pytest.fixture
async def make_hub(
    redis_server: RedisServer, postgres_server: PostgresServer
) -> AsyncIterator[MakeHub]:
    prefix, schema = f"p{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"
    hubs: list[Hub] = []

    async def make() -> Hub:
        store = PostgresStore(postgres_server.url(), schema=schema)
        broker = RedisBroker(redis_server.url, store=store, prefix=prefix,
                             subscribe_all=False)
        hub = Hub(store, broker)
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.close()


async def test_a_resume_position_from_another_node_is_not_ahead_of_a_stale_node(
    make_hub: MakeHub,
) -> None:
    a, b = await make_hub(), await make_hub()
    first = (await b.publish("rs:x", {"n": 1})).message  # b delivers its own commit: 1
    for n in range(2, 6):
        await a.publish("rs:x", {"n": n})
    # Nobody on b listens to rs:x: b's own position is stale (1), the channel is at 5.
    stale = b.broker.position("rs:x")
    assert stale is not None and stale.offset == 1
    token = {"rs:x": Position(first.epoch, 4)}  # what a subscriber of a had seen
    b.validate_subscription(["rs:x"], token)  # the synchronous check does not refuse it
    sink = Sink()
    [reply] = await b.subscribe(sink, ["rs:x"], since=token)
    assert reply.recovered and reply.offset == 5
    assert sink.offsets == [5]
    await a.publish("rs:x", {"n": 6})
    assert await _eventually(lambda: sink.offsets == [5, 6])


async def test_a_resume_position_ahead_of_every_node_is_still_refused(
    make_hub: MakeHub,
) -> None:
    a, b = await make_hub(), await make_hub()
    first = (await b.publish("rs:y", {"n": 1})).message
    for n in range(2, 4):
        await a.publish("rs:y", {"n": n})
    sink = Sink()
    with pytest.raises(BadParameter, match="ahead of the channel"):
        await b.subscribe(sink, ["rs:y"], since={"rs:y": Position(first.epoch, 9)})
    with pytest.raises(BadParameter, match="ahead of the channel"):
        await b.subscribe(sink, ["rs:*"], since={"rs:y": Position(first.epoch, 9)})
    assert b.subscriptions(sink) == frozenset()  # nothing was subscribed
    assert sink.offsets == []


async def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
