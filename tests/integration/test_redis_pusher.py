"""The Redis side of Pusher state with a real Redis: first/last decided across nodes, reads
that ignore a node whose lease expired, a dead node reaped once, the bridge's lease."""

from __future__ import annotations

import asyncio
import uuid

from servers import RedisServer, redis_server
from wagerwire.brokers.redis_lease import RedisLease
from wagerwire.brokers.redis_pusher import RedisPusher

__all__ = ["redis_server"]

HUB = "pusher:42:presence-r"


def node(redis: RedisServer, prefix: str, name: str, lease_ms: int = 60_000) -> RedisPusher:
    n = RedisPusher.from_url(redis.url, prefix=prefix)
    n.node, n.lease_ms = name, lease_ms
    return n


async def test_first_and_last_across_nodes_and_a_dead_node_reaped(
    redis_server: RedisServer,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a, b = node(redis_server, prefix, "a"), node(redis_server, prefix, "b")
    c = node(redis_server, prefix, "c")
    for n in (a, b, c):
        await n.heartbeat({"42": 1})
    assert await a.occupy("42", "presence-r", HUB, 1) == (0, 1)  # occupied
    assert await b.occupy("42", "presence-r", HUB, 1) == (1, 2)
    first, members = await a.join("42", "presence-r", HUB, "u1", '{"n":1}')
    assert first and members == [("u1", '{"n":1}')]
    first, members = await b.join("42", "presence-r", HUB, "u1", '{"n":1}')
    assert not first  # the same user on another node is not a new member
    first, members = await b.join("42", "presence-r", HUB, "u2", "null")
    assert first and sorted(members) == [("u1", '{"n":1}'), ("u2", "null")]
    assert not await a.leave("42", "presence-r", HUB, "u1")  # u1 still on node b
    assert not await a.leave("42", "presence-r", HUB, "nobody")  # never joined: no-op
    assert await c.counts("42", lambda n: HUB) == {"presence-r": 2}
    beat = await c.heartbeat({})
    assert beat.others == {"42": 2} and not beat.was_reaped
    # node b's last heartbeat takes a 300 ms lease (not from the start: a stall of the
    # machine among the calls above would drop it early), then it stops renewing
    b.lease_ms = 300
    await b.heartbeat({"42": 1})
    await asyncio.sleep(0.5)
    assert await a.count(HUB) == 1  # reads ignore it at once
    assert sorted(await a.members(HUB)) == []  # u1's and u2's connections were on b
    beat = await a.heartbeat({})
    assert beat.others == {"42": 1}  # node c's
    assert len(beat.reaped) == 1
    gone = beat.reaped[0]
    assert (gone.app_id, gone.name, gone.hub, gone.vacated) == ("42", "presence-r", HUB, False)
    assert sorted(gone.removed) == ["u1", "u2"]
    assert (await c.heartbeat({})).reaped == ()  # reaped once
    assert await a.occupy("42", "presence-r", HUB, -1) == (1, 0)  # vacated
    assert await a.counts("42", lambda n: HUB) == {}
    assert (await b.heartbeat({})).was_reaped  # b comes back: it knows it was dropped
    for n in (a, b, c):
        await n.aclose()


async def test_terminate_reaches_the_other_nodes(redis_server: RedisServer) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a, b = node(redis_server, prefix, "a"), node(redis_server, prefix, "b")
    got: list[tuple[str, str]] = []
    b.listen(lambda app, user: got.append((app, user)))
    a.listen(lambda app, user: got.append(("self", user)))  # a's own: not for a
    for _ in range(50):
        await a.terminate("42", "u9")
        await asyncio.sleep(0.1)
        if got:
            break
    assert got and set(got) == {("42", "u9")}
    await a.aclose()
    await b.aclose()


async def test_one_lease_holder(redis_server: RedisServer) -> None:
    name = f"t{uuid.uuid4().hex[:8]}:sgo:bridge"
    a = RedisLease.from_url(redis_server.url, name, ttl_s=0.5)
    b = RedisLease.from_url(redis_server.url, name, ttl_s=0.5)
    assert await a.take() and a.held()
    assert not await b.take() and not b.held()
    assert await a.take()  # renewed by its holder
    await asyncio.sleep(0.7)  # a stops renewing
    assert not a.held()
    assert await b.take() and b.held()
    await b.aclose()  # gives it up
    assert await a.take()
    await a.aclose()
