"""Pusher occupancy, presence and connection counts of every node, in Redis: :class:`RedisPusher`.

Why Redis and not the hub: subscriber counts and member lists are *state* that every node
must read synchronously-enough to answer ``GET /apps/{id}/channels/{name}``, to put the
cluster-wide member list into a presence ``subscription_succeeded`` and to decide *once*
whether a change is ``channel_occupied``/``member_added`` (a webhook must not fire on every
node). Hub messages are an ordered log of events; rebuilding counts from them would need
every node to read every channel's log from the start. A Redis hash per channel, changed by
one Lua script per update (atomic, so two nodes never both see "first"), answers all of it in
one round trip.

Keys (``P`` = ``<prefix>:pusher``; hub channel names in keys):

* ``P:nodes`` sorted set, node id → lease expiry (ms, Redis' clock). A node renews it every
  :data:`HEARTBEAT_S`; a node that stops renewing is *dead* after :data:`LEASE_MS` and every
  read ignores its entries at once. The first live node whose heartbeat sees it expired reaps
  it (``pusher_reap.lua``; ``ZREM`` makes the claim single): its entries are deleted and the
  webhooks and ``member_removed`` events its death implies are returned to that node to send.
* ``P:occ:<hub>`` hash, node → subscriptions;  ``P:chans:<app>`` set of occupied names.
* ``P:mem:<hub>`` hash, ``node|user`` → ``connections|user_info JSON``.
* ``P:node:<node>`` set of ``app\\tname\\thub`` the node touched (what to reap).
* ``P:conns`` hash, ``node|app`` → connections (the apps' ``max_connections``, 4004).
* ``P:control`` Pub/Sub channel: ``terminate_connections`` for every node.

Every call raises :class:`~wagerwire.errors.Unavailable` when Redis cannot answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wagerwire.dialects.pusher_presence import HEARTBEAT_S, Heartbeat, Members, Reaped
from wagerwire.errors import Unavailable

__all__ = ["HEARTBEAT_S", "LEASE_MS", "Heartbeat", "Reaped", "RedisPusher"]

log = logging.getLogger("wagerwire.brokers.redis_pusher")

LEASE_MS = 20_000
TIMEOUT_S = 2.0


def _script(name: str) -> str:
    return importlib.resources.files("wagerwire.brokers").joinpath(f"lua/{name}.lua").read_text()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisPusher:
    """The Redis side of :class:`~wagerwire.node.pusher_state.PusherState`."""

    def __init__(self, redis: Redis, *, prefix: str = "ww", node: str | None = None,
                 lease_ms: int = LEASE_MS) -> None:
        self.redis = redis
        self.p = f"{prefix}:pusher"
        self.node = node or secrets.token_hex(8)
        self.lease_ms = lease_ms
        self._occupy = redis.register_script(_script("pusher_occupy"))
        self._join = redis.register_script(_script("pusher_join"))
        self._leave = redis.register_script(_script("pusher_leave"))
        self._read = redis.register_script(_script("pusher_read"))
        self._heartbeat = redis.register_script(_script("pusher_heartbeat"))
        self._reap = redis.register_script(_script("pusher_reap"))
        self._listener: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "ww") -> RedisPusher:
        client = Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 1))
        return cls(client, prefix=prefix)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(f"Pusher cluster state unavailable (Redis: "
                              f"{type(exc).__name__}); retry shortly") from exc

    def _touched(self, app_id: str, name: str, hub: str) -> str:
        return f"{app_id}\t{name}\t{hub}"

    # -- updates ---------------------------------------------------------------------------

    async def occupy(self, app_id: str, name: str, hub: str, delta: int) -> tuple[int, int]:
        before, after = await self._run(
            self._occupy,
            [f"{self.p}:occ:{hub}", f"{self.p}:nodes", f"{self.p}:chans:{app_id}",
             f"{self.p}:node:{self.node}"],
            [self.node, delta, name, self._touched(app_id, name, hub)])
        return int(before), int(after)

    async def join(self, app_id: str, name: str, hub: str, user_id: str, info: str
                   ) -> tuple[bool, Members]:
        out = await self._run(
            self._join, [f"{self.p}:mem:{hub}", f"{self.p}:nodes", f"{self.p}:node:{self.node}"],
            [self.node, user_id, info, self._touched(app_id, name, hub)])
        pairs = [_text(x) for x in out[1:]]
        return int(out[0]) == 1, list(zip(pairs[::2], pairs[1::2], strict=True))

    async def leave(self, app_id: str, name: str, hub: str, user_id: str) -> bool:
        return int(await self._run(self._leave, [f"{self.p}:mem:{hub}", f"{self.p}:nodes"],
                                   [self.node, user_id])) == 1

    # -- reads -----------------------------------------------------------------------------

    async def members(self, hub: str) -> Members:
        out = await self._run(self._read, [f"{self.p}:nodes", f"{self.p}:mem:{hub}"], ["m"])
        pairs = [_text(x) for x in out]
        return list(zip(pairs[::2], pairs[1::2], strict=True))

    async def counts(self, app_id: str, hubs: Callable[[str], str]) -> dict[str, int]:
        """Pusher name → subscriptions on live nodes, of the app's occupied channels
        (``hubs`` maps a name to its hub channel)."""
        try:
            names = sorted(_text(n) for n in await self.redis.smembers(
                f"{self.p}:chans:{app_id}"))
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(f"Pusher cluster state unavailable (Redis: "
                              f"{type(exc).__name__}); retry shortly") from exc
        if not names:
            return {}
        out = await self._run(self._read, [f"{self.p}:nodes",
                                           *(f"{self.p}:occ:{hubs(n)}" for n in names)], ["c"])
        return {name: int(n) for name, n in zip(names, out, strict=True) if int(n) > 0}

    async def count(self, hub: str) -> int:
        out = await self._run(self._read, [f"{self.p}:nodes", f"{self.p}:occ:{hub}"], ["c"])
        return int(out[0])

    # -- liveness --------------------------------------------------------------------------

    async def heartbeat(self, connections: Mapping[str, int]) -> Heartbeat:
        """Renew this node's lease, publish its connections per app, reap dead nodes."""
        args: list[Any] = [self.node, self.lease_ms]
        for app_id, n in connections.items():
            args += [app_id, n]
        new, expired, flat = await self._run(
            self._heartbeat, [f"{self.p}:nodes", f"{self.p}:conns"], args)
        others = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        reaped: list[Reaped] = []
        for dead in (_text(d) for d in expired):
            out = await self._run(self._reap, [f"{self.p}:nodes", f"{self.p}:conns",
                                               f"{self.p}:node:{dead}"], [dead, self.p])
            i = 0
            while i < len(out):
                n = int(out[i + 4])
                reaped.append(Reaped(_text(out[i]), _text(out[i + 1]), _text(out[i + 2]),
                                     int(out[i + 3]) == 1,
                                     tuple(_text(u) for u in out[i + 5:i + 5 + n])))
                i += 5 + n
            log.info("Pusher state: reaped dead node %s (%d channels)", dead, len(reaped))
        return Heartbeat(others, tuple(reaped), int(new) == 1)

    async def release(self) -> None:
        """A clean stop: the lease ends now, so the next heartbeat anywhere reaps this
        node (its channels' vacated and member_removed events are sent from there)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await self.redis.zadd(f"{self.p}:nodes", {self.node: 0})

    # -- terminate_connections -------------------------------------------------------------

    async def terminate(self, app_id: str, user_id: str) -> None:
        body = orjson.dumps({"node": self.node, "app": app_id, "user": user_id})
        try:
            await self.redis.publish(f"{self.p}:control", body)
        except (RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(f"terminate_connections cannot reach the other nodes (Redis: "
                              f"{type(exc).__name__}); retry shortly") from exc

    def listen(self, on_terminate: Callable[[str, str], None]) -> None:
        """Call ``on_terminate(app_id, user_id)`` for other nodes' terminations (a task that
        resubscribes after a Redis outage)."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(on_terminate))

    async def _listen(self, on_terminate: Callable[[str, str], None]) -> None:
        delay = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(f"{self.p}:control")
                delay = 0.1
                while True:
                    item = await pubsub.get_message(ignore_subscribe_messages=True,
                                                    timeout=1.0)
                    if item is None or item.get("type") != "message":
                        continue
                    try:
                        msg = orjson.loads(item["data"])
                        if msg["node"] != self.node:
                            on_terminate(str(msg["app"]), str(msg["user"]))
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        log.warning("Pusher control: unreadable message %r", item["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("Pusher control channel lost (%s); resubscribing", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
