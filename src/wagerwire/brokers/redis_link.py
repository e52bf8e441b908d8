"""The Redis broker's connection: client, Lua scripts, readiness and background tasks.

One :class:`RedisLink` per broker, shared by its roles (``redis_writer``, ``redis_delivery``,
``redis_listener``). A command that fails for want of Redis calls :meth:`RedisLink.down`:
the broker is not ready (``ready`` false, ``on_ready_change(False)``), the writer gives up
its leases and in-flight publishes (``on_down``), and a probe pings Redis with exponential
backoff until it answers. The listener owns the other half of readiness (``sub_ok``).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from wagerwire.brokers.redis_records import ChannelKeys
from wagerwire.brokers.redis_url import (
    close_pool,
    connection_pool,
    parse_redis_url,
    primary_address,
)
from wagerwire.core.messages import Position
from wagerwire.errors import Unavailable

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["REDIS_ERRORS", "RedisLink"]

log = logging.getLogger("wagerwire.brokers.redis")

T = TypeVar("T")

REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
"""Errors that mean "Redis is unreachable" (as opposed to a refused command)."""

_SCRIPTS = ("acquire", "init", "commit", "release", "renew", "claim", "unclaim")
_SEED_BATCH = 500
_BATCH_IDLE_S = 1.0  # call_many's held connection is swapped for a checked one after this


def _load_script(name: str) -> str:
    return importlib.resources.files("wagerwire.brokers").joinpath(f"lua/{name}.lua").read_text()


@dataclass(eq=False, slots=True)
class RedisLink:
    """This node's connection to Redis and the broker's lifecycle flags."""

    url: str
    prefix: str
    node_id: str
    retry_max_s: float
    connect_timeout_s: float
    redis: Redis | None = None
    scripts: dict[str, AsyncScript] = field(default_factory=dict)
    opened: bool = False  # start() was called
    started: bool = False  # start() seeded Redis
    closed: bool = False
    cmd_ok: bool = False  # the last command reached Redis
    sub_ok: bool = False  # the listener is subscribed
    ready: bool = False
    on_ready_change: Callable[[bool], None] | None = None
    on_down: Callable[[BaseException], None] | None = None  # the writer gives up its leases
    probe: asyncio.Task[None] | None = None
    generation: int = 0  # bumped whenever Redis is lost: leases must be reconciled again
    primary: tuple[str, int] | None = None  # with Sentinel: the primary we last reached
    failovers: int = 0  # primary changes seen (Sentinel promoted another server)
    bg: set[asyncio.Future[Any]] = field(default_factory=set)  # our own background work
    # ``call_many``'s own connection from the pool, held between calls, one call at a time;
    # the generation it was taken in and when it was last used (a stale one is replaced).
    batch_conn: AbstractConnection | None = None
    batch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    batch_generation: int = 0
    batch_used: float = 0.0

    async def connect(self) -> None:
        """Make the client and its scripts and wait (``connect_timeout_s``) for a ping."""
        # A bounded pool that makes callers wait for a free connection rather than fail.
        pool = connection_pool(
            parse_redis_url(self.url), max_connections=64, timeout=10,
            retry=Retry(NoBackoff(), 0), socket_timeout=5, socket_connect_timeout=2,
            decode_responses=False,
        )
        redis = self.redis = Redis.from_pool(pool)  # closing the client closes the pool
        for name in _SCRIPTS:
            self.scripts[name] = redis.register_script(_load_script(name))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout_s
        while True:
            try:
                await redis.ping()
                break
            except REDIS_ERRORS as exc:
                if loop.time() > deadline:
                    await redis.aclose()
                    raise Unavailable(f"cannot reach Redis at {self.url}: {exc}") from exc
                await asyncio.sleep(0.2)
        self.cmd_ok = True
        self.note_primary()

    def note_primary(self) -> None:
        """Count a failover when Sentinel now names another primary than before."""
        if self.redis is None:
            return
        address = primary_address(self.redis.connection_pool)
        if address is None:
            return
        if self.primary is not None and address != self.primary:
            self.failovers += 1
            log.warning("Redis failover: the primary is now %s:%d (was %s:%d)",
                        *address, *self.primary)
        self.primary = address

    async def aclose(self) -> None:
        """Cancel the background work and close the client."""
        for bg in list(self.bg):
            bg.cancel()
        if self.redis is not None:
            pool = self.redis.connection_pool
            await self._drop_batch_conn()
            await self.redis.aclose()
            await close_pool(pool)

    # -- readiness -------------------------------------------------------------------------

    def set_ready(self) -> None:
        """Recompute ``ready`` and tell ``on_ready_change`` when it changed."""
        ready = self.started and not self.closed and self.cmd_ok and self.sub_ok
        if ready != self.ready:
            self.ready = ready
            if ready:
                log.info("Redis broker ready")
            elif not self.closed:
                log.warning("Redis broker NOT ready: Redis is unreachable; retrying")
            if self.on_ready_change is not None:
                try:
                    self.on_ready_change(ready)
                except Exception:
                    log.exception("on_ready_change failed")

    def check_ready(self) -> None:
        """Raise ``Unavailable`` unless publishes are accepted now."""
        if self.closed or not self.opened:
            raise Unavailable("the broker is closed" if self.closed else "broker not started")
        if not self.ready:
            raise Unavailable(
                "Redis is unreachable: publishing is refused until the broker reconnects "
                "(it retries with backoff); retry later"
            )

    def down(self, exc: BaseException) -> None:
        """A command failed for want of Redis: not ready until a probe gets through."""
        if self.closed:
            return
        if self.cmd_ok:
            log.warning("Redis command failed: %s", exc)
        self.cmd_ok = False
        self.generation += 1
        self.set_ready()
        if self.on_down is not None:
            self.on_down(exc)
        if self.probe is None or self.probe.done():
            self.probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        delay = 0.05
        redis = self.redis
        assert redis is not None
        while not self.closed:
            try:
                await redis.ping()
            except REDIS_ERRORS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            self.cmd_ok = True
            self.note_primary()
            self.set_ready()
            return

    # -- commands --------------------------------------------------------------------------

    async def call(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        """Run one script; a connection failure marks Redis down and raises ``Unavailable``."""
        try:
            return await self.scripts[name](keys=keys, args=args)
        except REDIS_ERRORS as exc:
            self.down(exc)
            raise Unavailable(f"Redis is unreachable: {exc}") from exc

    async def call_many(self, name: str, calls: list[tuple[list[Any], list[Any]]]
                        ) -> list[Any]:
        """Run script ``name`` once per (keys, args) in one pipelined round trip.

        Each call succeeds or fails alone (the pipeline is not a transaction): the result list
        holds each call's reply, or the ``RedisError`` it raised. A script Redis does not know
        (a restarted or newly promoted Redis) is loaded and those calls are run again. A
        connection failure marks Redis down and raises ``Unavailable`` for all of them.
        """
        script = self.scripts[name]
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        try:
            results = await self._pipelined(commands)
            for i, result in enumerate(results):
                if isinstance(result, redis_errors.NoScriptError):
                    keys, args = calls[i]
                    results[i] = await script(keys=keys, args=args)  # loads it, once
        except REDIS_ERRORS as exc:
            self.down(exc)
            raise Unavailable(f"Redis is unreachable: {exc}") from exc
        return results

    async def _pipelined(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` in one write on the held connection and read every reply (a
        refused command's reply is its ``ResponseError``).

        This is the commit path of every publish, so it skips what redis-py's ``Pipeline``
        does per call (a pool checkout and health check, a retry wrapper, a timer per reply,
        response callbacks): one pack, one write, the replies read under one timeout. The
        connection comes from the client's pool (with Sentinel: the current primary's); after
        any failure or cancellation its state is unknown and it is dropped.
        """
        redis = self.redis
        assert redis is not None
        async with self.batch_lock:
            now = asyncio.get_running_loop().time()
            if self.batch_conn is not None and (
                self.batch_generation != self.generation or now - self.batch_used > _BATCH_IDLE_S
            ):
                # Redis was lost since (a restart or failover closed it), or it sat idle
                # (the server may have closed it): take one the pool has checked.
                await self._drop_batch_conn()
            conn = self.batch_conn
            if conn is None:
                checkout: Callable[[], Awaitable[AbstractConnection]] = (
                    redis.connection_pool.get_connection  # untyped in redis-py
                )
                conn = self.batch_conn = await checkout()
                self.batch_generation = self.generation
            self.batch_used = now
            results: list[Any] = []
            try:
                async with asyncio.timeout(conn.socket_timeout):
                    await conn.send_packed_command(conn.pack_commands(commands),
                                                   check_health=False)
                    for _ in commands:
                        try:
                            results.append(await conn.read_response(timeout=math.inf))
                        except redis_errors.ResponseError as exc:
                            results.append(exc)
            except TimeoutError as exc:
                await self._drop_batch_conn()
                raise redis_errors.TimeoutError("Redis did not answer a pipelined batch") from exc
            except BaseException:
                await self._drop_batch_conn()
                raise
            return results

    async def _drop_batch_conn(self) -> None:
        """Close and return call_many's connection (only ever under ``batch_lock`` or at
        close, so no batch is using it)."""
        conn, self.batch_conn = self.batch_conn, None
        if conn is not None and self.redis is not None:
            await conn.disconnect(nowait=True)
            await self.redis.connection_pool.release(conn)

    async def seed(self, items: list[tuple[str, Position]]) -> None:
        """Create (or raise) Redis positions from the store's (SETNX-like, in batches)."""
        redis = self.redis
        assert redis is not None
        script = self.scripts["init"]
        for start in range(0, len(items), _SEED_BATCH):
            async with redis.pipeline(transaction=False) as pipe:
                for name, pos in items[start:start + _SEED_BATCH]:
                    keys = ChannelKeys(self.prefix, name)
                    await script(keys=[keys.meta, keys.stream, keys.lease],
                                 args=[pos.epoch, pos.offset], client=pipe)
                await pipe.execute()

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background (cancelled at close)."""
        task = asyncio.ensure_future(coro)
        self.bg.add(task)
        task.add_done_callback(self.bg.discard)

    @staticmethod
    async def quiet(coro: Awaitable[T]) -> T | None:
        """``coro``'s result, or ``None`` if Redis failed it."""
        try:
            return await coro
        except (*REDIS_ERRORS, redis_errors.RedisError):
            return None
