"""Redis-backed plan limits: concurrent-stream leases and token buckets across nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from servers import RedisServer, redis_server
from wagerwire.auth.limits_redis import StreamLeases, TokenBucket

__all__ = ["redis_server"]


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def test_leases_cap_concurrent_streams_across_nodes(redis: Redis) -> None:
    prefix = uuid.uuid4().hex
    node_a = StreamLeases(redis, prefix=prefix)
    node_b = StreamLeases(redis, prefix=prefix)
    first = await node_a.acquire("key-1", limit=2)
    second = await node_b.acquire("key-1", limit=2)
    assert first and second and first != second
    assert await node_a.acquire("key-1", limit=2) is None  # the plan allows two
    assert await node_b.acquire("key-2", limit=2) is not None  # per subject
    assert await node_a.count("key-1") == 2
    await node_b.release("key-1", second)
    assert await node_a.acquire("key-1", limit=2) is not None
    assert await node_a.renew("key-1", first)


async def test_leases_of_a_dead_node_expire(redis: Redis) -> None:
    leases = StreamLeases(redis, prefix=uuid.uuid4().hex, ttl_s=0.2)
    lease = await leases.acquire("k", limit=1)
    assert lease is not None
    assert await leases.acquire("k", limit=1) is None
    await asyncio.sleep(0.3)  # never renewed: the node is gone
    assert await leases.count("k") == 0
    assert not await leases.renew("k", lease)
    assert await leases.acquire("k", limit=1) is not None


async def test_concurrent_acquires_never_exceed_the_limit(redis: Redis) -> None:
    leases = StreamLeases(redis, prefix=uuid.uuid4().hex)
    got = await asyncio.gather(*(leases.acquire("k", limit=5) for _ in range(50)))
    assert sum(1 for g in got if g is not None) == 5


async def test_token_bucket_allows_bursts_then_the_rate(redis: Redis) -> None:
    bucket = TokenBucket(redis, prefix=uuid.uuid4().hex)
    answers = [await bucket.take("k", rate=10, burst=5) for _ in range(6)]
    assert [a.allowed for a in answers] == [True] * 5 + [False]
    assert 0 < answers[-1].retry_after_s <= 0.1
    await asyncio.sleep(0.25)  # ~2.5 tokens back
    again = [await bucket.take("k", rate=10, burst=5) for _ in range(3)]
    assert [a.allowed for a in again] == [True, True, False]
    other = await bucket.take("other", rate=10, burst=5)
    assert other.allowed and other.tokens == pytest.approx(4)


async def test_token_bucket_is_shared_by_nodes(redis: Redis) -> None:
    prefix = uuid.uuid4().hex
    nodes = [TokenBucket(redis, prefix=prefix) for _ in range(3)]
    answers = await asyncio.gather(
        *(nodes[n % 3].take("k", rate=1, burst=10) for n in range(30))
    )
    assert sum(a.allowed for a in answers) == 10
