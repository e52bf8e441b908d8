"""RedisLink.call_many against a real Redis: the commit path's own pipelined connection.

It bypasses redis-py's ``Pipeline``, so what the pipeline guaranteed is checked here: each
reply goes to its own command (a refused one included), an unknown script is loaded and run
again, and a broken or cancelled batch leaves no stale reply for the next one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from servers import RedisServer, own_redis, redis_server
from wagerwire.brokers.redis_link import RedisLink
from wagerwire.brokers.redis_records import ChannelKeys
from wagerwire.errors import Unavailable

__all__ = ["own_redis", "redis_server"]


async def open_link(server: RedisServer) -> RedisLink:
    link = RedisLink(server.url, f"p{uuid.uuid4().hex[:8]}", "test-node", 0.2, 5.0)
    await link.connect()
    return link


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def init_call(link: RedisLink, channel: str, top: int) -> tuple[list[object], list[object]]:
    keys = ChannelKeys(link.prefix, channel)
    return [keys.meta, keys.stream, keys.lease], ["e1", top]


async def test_each_reply_goes_to_its_command_a_refused_one_included(
    redis_server: RedisServer,
) -> None:
    link = await open_link(redis_server)
    try:
        key = f"{link.prefix}:k"
        replies = await link._pipelined([("SET", key, "v"), ("INCR", key), ("GET", key),
                                          ("APPEND", key, "w"), ("GET", key)])
        assert replies[0] in (True, b"OK")
        assert isinstance(replies[1], redis_errors.ResponseError)
        assert replies[2:] == [b"v", 2, b"vw"]
        # The same held connection answers the next batch with its own replies.
        assert await link._pipelined([("GET", key)]) == [b"vw"]
    finally:
        await link.aclose()


async def test_an_unknown_script_is_loaded_and_run_again(
    redis_server: RedisServer, admin: Redis,
) -> None:
    link = await open_link(redis_server)
    try:
        assert await link.call_many("init", [init_call(link, "a", 3)]) == [1]
        await admin.script_flush()  # as after a Redis restart or a failover
        replies = await link.call_many("init", [init_call(link, "b", 5), init_call(link, "a", 3)])
        assert replies == [1, 0]  # b created; a known already (same epoch, not behind)
        assert await admin.hget(ChannelKeys(link.prefix, "b").meta, "top") == b"5"
    finally:
        await link.aclose()


async def test_a_killed_connection_is_unavailable_then_replaced(
    redis_server: RedisServer, admin: Redis,
) -> None:
    link = await open_link(redis_server)
    try:
        key = f"{link.prefix}:n"
        assert await link._pipelined([("INCR", key)]) == [1]
        [client_id] = await link._pipelined([("CLIENT", "ID")])
        assert await admin.execute_command("CLIENT", "KILL", "ID", client_id) == 1
        with pytest.raises(Unavailable):
            await link.call_many("init", [init_call(link, "c", 1)])
        assert link.batch_conn is None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not link.cmd_ok:  # the probe reconnects
            assert loop.time() < deadline, "the link did not come back"
            await asyncio.sleep(0.02)
        assert await link._pipelined([("INCR", key)]) == [2]
    finally:
        await link.aclose()


async def test_a_cancelled_batch_leaves_no_reply_behind(
    redis_server: RedisServer, admin: Redis,
) -> None:
    link = await open_link(redis_server)
    try:
        key = f"{link.prefix}:slow"
        await link._pipelined([("SET", key, "before")])
        await admin.execute_command("CLIENT", "PAUSE", 300, "ALL")  # replies held back
        task = asyncio.create_task(link._pipelined([("GET", key)] * 50))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert link.batch_conn is None  # its unread replies went with it
        await link._pipelined([("SET", key, "after")])
        assert await link._pipelined([("GET", key), ("STRLEN", key)]) == [b"after", 5]
    finally:
        await link.aclose()


async def test_a_connection_closed_while_idle_is_replaced_unseen(
    redis_server: RedisServer, admin: Redis,
) -> None:
    """The server may close an idle client (its ``timeout`` setting, a proxy): the next batch
    after a second of idleness takes a connection the pool has checked, and succeeds."""
    link = await open_link(redis_server)
    try:
        key = f"{link.prefix}:idle"
        [client_id] = await link._pipelined([("CLIENT", "ID")])
        assert await admin.execute_command("CLIENT", "KILL", "ID", client_id) == 1
        await asyncio.sleep(1.1)
        assert await link.call_many("init", [init_call(link, "d", 2)]) == [1]
        assert await link._pipelined([("INCR", key)]) == [1]
        assert link.cmd_ok
    finally:
        await link.aclose()
