"""RedisBroker across nodes: shared offsets, lease takeover, listening per channel, outages.

The contract suite (``tests/contract``) checks one node at a time; these check what only
several nodes (brokers on one Redis prefix) over one PostgreSQL store can show.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from servers import PostgresServer, RedisServer, own_redis, postgres_server, redis_server
from wagerwire.brokers.redis import RedisBroker
from wagerwire.brokers.redis_history import HistoryStore
from wagerwire.core.messages import Message
from wagerwire.errors import Unavailable
from wagerwire.stores.postgres import PostgresStore

__all__ = ["own_redis", "postgres_server", "redis_server"]


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.resets: list[str] = []

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_reset(self, channel: str) -> None:
        self.resets.append(channel)

    def offsets(self, channel: str) -> list[int]:
        return [m.offset for m in self.messages if m.channel == channel]


Node = tuple[RedisBroker, Recorder, PostgresStore]
MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(
    postgres_server: PostgresServer,
) -> AsyncIterator[Callable[[RedisServer, str, str], Awaitable[Node]]]:
    made: list[Node] = []

    async def make(redis: RedisServer, prefix: str, schema: str, **kw: Any) -> Node:
        store = PostgresStore(postgres_server.url(), schema=schema)
        await store.open()
        recorder = Recorder()
        broker = RedisBroker(redis.url, store=store, prefix=prefix, **kw)
        await broker.start(recorder, await store.positions())
        made.append((broker, recorder, store))
        return broker, recorder, store

    yield make
    for broker, _, store in made:
        await broker.close()
        await store.close()


def names() -> tuple[str, str]:
    return f"p{uuid.uuid4().hex[:8]}", f"s{uuid.uuid4().hex[:8]}"


async def publish(node: Node, channel: str, n: int, key: str | None = None) -> Message:
    broker, _, store = node
    result = await broker.publish(channel, b'{"n":%d}' % n, ts=1_000 + n, attrs=None,
                                  idempotency_key=key, persist=store.append)
    return result.message


async def settle(check: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_two_nodes_share_offsets_and_deliver_identically(
    make_node: MakeNode, redis_server: RedisServer
) -> None:
    prefix, schema = names()
    a = await make_node(redis_server, prefix, schema)
    b = await make_node(redis_server, prefix, schema)
    jobs = [publish((a, b)[n % 2], f"c{n % 3}", n) for n in range(300)]
    results = await asyncio.gather(*jobs)
    for channel in ("c0", "c1", "c2"):
        mine = sorted(m.offset for m in results if m.channel == channel)
        assert mine == list(range(1, 101))
        await settle(lambda ch=channel: len(a[1].offsets(ch)) == len(b[1].offsets(ch)) == 100)
        assert a[1].offsets(channel) == b[1].offsets(channel) == list(range(1, 101))
        assert [m.data for m in a[1].messages if m.channel == channel] == \
            [m.data for m in b[1].messages if m.channel == channel]
    stored = await a[2].read("c0", 0, 1000)
    assert [m.offset for m in stored] == list(range(1, 101))
    assert a[0].position("c1") == b[0].position("c1")


async def test_a_dead_holders_persisted_message_is_reconciled(
    make_node: MakeNode, redis_server: RedisServer
) -> None:
    prefix, schema = names()
    a = await make_node(redis_server, prefix, schema, lease_ttl_s=0.3)
    first = await publish(a, "x", 1)
    # A node took the lease, made offset 2 durable, and died before its commit.
    keys = f"{prefix}:{{x}}"
    redis = a[0].link.redis
    assert redis is not None
    await redis.set(f"{keys}:l", "dead-node", px=300)
    await redis.hset(f"{keys}:m", "dirty", 1)
    orphan = Message("x", 2, first.epoch, 1_002, b'{"orphan":true}')
    await a[2].append(orphan)
    b = await make_node(redis_server, prefix, schema, lease_ttl_s=0.3)
    third = await publish(b, "x", 3)  # waits for the lease to expire, then reconciles
    assert third.offset == 3
    # The running node gets the orphan, in order, before the new message; the new node
    # started from the store's position 2, so it takes 2 as history and delivers 3.
    await settle(lambda: a[1].offsets("x") == [1, 2, 3])
    assert [m.data for m in a[1].messages if m.offset == 2] == [b'{"orphan":true}']
    await settle(lambda: b[1].offsets("x") == [3])
    assert a[0].position("x") == b[0].position("x")


async def test_listening_per_channel_subscribes_on_demand(
    make_node: MakeNode, redis_server: RedisServer
) -> None:
    prefix, schema = names()
    pub = await make_node(redis_server, prefix, schema)
    lazy = await make_node(redis_server, prefix, schema, subscribe_all=False)
    await publish(pub, "q", 1)
    await asyncio.sleep(0.1)
    assert lazy[1].offsets("q") == []  # nobody here listens to q
    await lazy[0].subscribe("q")  # catches up to Redis' top, then listens
    assert lazy[0].position("q") is not None and lazy[0].position("q") == pub[0].position("q")
    await publish(pub, "q", 2)
    await settle(lambda: lazy[1].offsets("q") == [2])
    await lazy[0].unsubscribe("q")
    await publish(pub, "q", 3)
    await asyncio.sleep(0.1)
    assert lazy[1].offsets("q") == [2]


async def test_history_reads_the_stream_until_it_no_longer_reaches_back(
    make_node: MakeNode, redis_server: RedisServer
) -> None:
    prefix, schema = names()
    node = await make_node(redis_server, prefix, schema, history_size=5)
    for n in range(1, 201):
        await publish(node, "h", n)
    broker = node[0]
    newest = await broker.history("h", 195, 10)
    assert newest is not None and [m.offset for m in newest] == [196, 197, 198, 199, 200]
    assert await broker.history("h", 200, 10) == []
    assert await broker.history("h", 0, 10) is None  # trimmed: read the store
    assert await broker.history("unknown", 0, 10) is None


async def test_history_store_reads_the_stream_first_then_the_store(
    make_node: MakeNode, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, schema = names()
    node = await make_node(redis_server, prefix, schema, history_size=5)
    for n in range(1, 201):
        await publish(node, "h", n)
    broker, _, store = node
    history = HistoryStore(store, broker)
    assert history.inner is store  # what is not the Store protocol is read there
    store_reads: list[int] = []
    read = store.read

    async def counted(channel: str, after: int, limit: int) -> list[Message]:
        store_reads.append(after)
        return await read(channel, after, limit)

    monkeypatch.setattr(store, "read", counted)
    newest = await history.read("h", 195, 10)
    assert [m.offset for m in newest] == [196, 197, 198, 199, 200] and store_reads == []
    oldest = await history.read("h", 0, 3)  # trimmed from the stream: the store answers
    assert [m.offset for m in oldest] == [1, 2, 3] and store_reads == [0]
    assert [m.offset for m in await history.read_last("h", 2)] == [199, 200]


@pytest.mark.timeout(60)
async def test_redis_outage_refuses_publishes_then_recovers_without_a_hole(
    make_node: MakeNode, own_redis: RedisServer
) -> None:
    prefix, schema = names()
    a = await make_node(own_redis, prefix, schema, retry_max_s=0.2)
    b = await make_node(own_redis, prefix, schema, retry_max_s=0.2)
    states: list[bool] = []
    a[0].on_ready_change = states.append
    for n in range(1, 6):
        await publish(a, "o", n)
    epoch = a[0].position("o")
    own_redis.kill()
    await settle(lambda: not a[0].ready and not b[0].ready)
    with pytest.raises(Unavailable, match="Redis is unreachable"):
        await publish(a, "o", 6)
    own_redis.start()  # empty: Redis forgot everything
    await settle(lambda: a[0].ready and b[0].ready, timeout=10)
    assert states[:2] == [False, True]
    for n in range(6, 11):
        await publish((a, b)[n % 2], "o", n)
    assert a[0].position("o") is not None and epoch is not None
    assert a[0].position("o").epoch == epoch.epoch  # type: ignore[union-attr]
    for _, recorder, _ in (a, b):
        await settle(lambda r=recorder: r.offsets("o")[-1:] == [10])
        assert recorder.offsets("o") == list(range(1, 11))
    assert not a[1].resets and not b[1].resets
