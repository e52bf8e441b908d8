"""Where Redis is: one server (``redis://``) or a Sentinel-managed primary (``redis+sentinel://``).

URL forms (wagerwire's own query options such as ``prefix`` are taken off before this module
sees the URL, see ``node/backends.py``):

``redis://[:password@]host:port/db`` (``rediss://`` for TLS)
    One Redis server, as redis-py understands it.

``redis+sentinel://[:password@]host:port[,host:port…]/service[/db]``
    The primary named ``service`` as the listed Sentinels report it (``db`` defaults to 0).
    The password, if any, is the data servers' (``requirepass``); Sentinels are asked without
    one. Every connection asks the Sentinels for the current primary when it (re)connects,
    so after a failover the broker and the limits follow the promoted replica by themselves.

:func:`parse_redis_url` is pure (no I/O); :func:`connection_pool` and :func:`client` make the
redis-py objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

__all__ = [
    "SENTINEL_SCHEME",
    "RedisTarget",
    "client",
    "close_pool",
    "connection_pool",
    "is_redis_url",
    "parse_redis_url",
    "primary_address",
]

SENTINEL_SCHEME = "redis+sentinel"
_SCHEMES = ("redis", "rediss", SENTINEL_SCHEME)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL: ``url`` for one server, else ``sentinels`` and ``service``."""

    url: str | None
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None

    @property
    def sentinel(self) -> bool:
        return self.url is None


def is_redis_url(url: str) -> bool:
    """Whether ``url`` names Redis (one server or through Sentinel)."""
    return urlsplit(url).scheme in _SCHEMES


def parse_redis_url(url: str) -> RedisTarget:
    """Parse ``url`` (see the module docstring).

    Raises:
        ValueError: a malformed ``redis+sentinel://`` URL (no Sentinel, a bad port, no
            service name, a bad db).
    """
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return RedisTarget(url)
    netloc = parts.netloc
    password: str | None = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        password = unquote(userinfo.partition(":")[2]) or None
    sentinels = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"Sentinel address {item!r} must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the path must be /<service>[/<db>] (the Sentinels' primary name)")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"db {path[1]!r} must be a number")
    return RedisTarget(None, tuple(sentinels), unquote(path[0]),
                       int(path[1]) if len(path) == 2 else 0, password)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's primary discovery with a bounded pool that makes callers wait."""


def connection_pool(target: RedisTarget, *, max_connections: int, timeout: float,
                    **kwargs: Any) -> BlockingConnectionPool:
    """A bounded pool (callers wait ``timeout`` for a free connection) for ``target``."""
    if target.url is not None:
        return BlockingConnectionPool.from_url(target.url, max_connections=max_connections,
                                               timeout=timeout, **kwargs)
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    pool: BlockingConnectionPool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
        target.service, manager, max_connections=max_connections, timeout=timeout,
        db=target.db, password=target.password, **kwargs,
    )
    return pool


async def close_pool(pool: Any) -> None:
    """Close the Sentinel clients behind ``pool`` (the pool itself closes with its client)."""
    manager = getattr(pool, "sentinel_manager", None)
    if isinstance(manager, Sentinel):
        await manager.aclose()


def primary_address(pool: Any) -> tuple[str, int] | None:
    """The primary ``pool`` last connected to, as Sentinel named it (``None``: no Sentinel)."""
    address = getattr(pool, "master_address", None)
    return None if address is None else (str(address[0]), int(address[1]))


def client(target: RedisTarget, **kwargs: Any) -> Redis:
    """A client for ``target`` with its own (unbounded) pool; closing it closes the pool."""
    if target.url is not None:
        return Redis.from_url(target.url, **kwargs)
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)
    pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
        target.service, manager, db=target.db, password=target.password, **kwargs
    )
    return Redis.from_pool(pool)
