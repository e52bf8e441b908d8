"""Plan limits kept in Redis, so that they hold across every node: :class:`RedisLimits`.

The :class:`~wagerwire.auth.limits.Limits` contract over ``redis.asyncio`` (never a blocking
call on the event loop). It lives beside the Redis broker, not in ``auth/``, because auth/
only states the contract and imports no Redis (the layering test holds it). Each
check-and-update is one Lua script (``brokers/lua/``), so it is atomic, and uses Redis' own
clock (``TIME``), so nodes with skewed clocks agree:

* ``slot_acquire.lua``: a subject's stream slots are a sorted set scored by expiry;
* ``slot_renew.lua`` / ``slot_release.lua``: every slot of the node in one call;
* ``rate_take.lua``: a token bucket per subject (hash: tokens, stamp);
* ``daily_take.lua``: a per-UTC-day counter per subject (hash: day, used);
* single use: ``SET <prefix>:spent:<credential> 1 NX PX <ttl>`` (atomic without a script).

Any Redis error (refused connection, timeout, script error) is raised as
``LimitsUnavailable`` (HTTP 503 ``limits_unavailable``).
"""

from __future__ import annotations

import importlib.resources
import secrets
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from wagerwire.auth.limits import SLOT_TTL_S, Limits, SlotRef
from wagerwire.brokers.redis_url import client, close_pool, parse_redis_url
from wagerwire.errors import LimitsUnavailable

__all__ = ["RedisLimits"]

TIMEOUT_S = 2.0  # connect and reply timeout; one immediate retry (a connection Redis reset)


def _load_script(name: str) -> str:
    return importlib.resources.files("wagerwire.brokers").joinpath(f"lua/{name}.lua").read_text()


def _batch(prefix: str, slots: Sequence[SlotRef]) -> tuple[list[str], list[str]]:
    """KEYS (one per subject) and ARGV (a count per key, then the ids) of a batch script."""
    by_subject: dict[str, list[str]] = {}
    for subject, slot_id in slots:
        by_subject.setdefault(subject, []).append(slot_id)
    keys = [f"{prefix}:streams:{subject}" for subject in by_subject]
    counts = [str(len(ids)) for ids in by_subject.values()]
    return keys, counts + [slot_id for ids in by_subject.values() for slot_id in ids]


class RedisLimits:
    """:class:`~wagerwire.auth.limits.Limits` in Redis (see the module docstring).

    Args:
        redis: a ``redis.asyncio.Redis`` client (:meth:`from_url` makes one with timeouts).
        prefix: namespace of the keys (``<prefix>:streams:<subject>``, ``:rate:``, ``:daily:``).
        slot_ttl_s: a stream slot not renewed for this long stops counting.
    """

    def __init__(self, redis: Redis, *, prefix: str = "ww", slot_ttl_s: float = SLOT_TTL_S) -> None:
        if slot_ttl_s <= 0:
            raise ValueError("slot_ttl_s must be > 0")
        self.redis = redis
        self.prefix = prefix
        self.slot_ttl_s = slot_ttl_s
        self._ttl_ms = int(slot_ttl_s * 1000)
        self._acquire = redis.register_script(_load_script("slot_acquire"))
        self._renew = redis.register_script(_load_script("slot_renew"))
        self._release = redis.register_script(_load_script("slot_release"))
        self._rate = redis.register_script(_load_script("rate_take"))
        self._daily = redis.register_script(_load_script("daily_take"))

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "ww", slot_ttl_s: float = SLOT_TTL_S
                 ) -> RedisLimits:
        """A client for ``url`` (``redis://`` or ``redis+sentinel://``, see
        ``brokers/redis_url.py``: it follows the primary across failovers) that gives up after :data:`TIMEOUT_S` (connect or reply),
        retried once at once: a stalled Redis is answered with 503 within 2 x TIMEOUT_S."""
        redis = client(parse_redis_url(url), socket_timeout=TIMEOUT_S,
                       socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 1))
        return cls(redis, prefix=prefix, slot_ttl_s=slot_ttl_s)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimitsUnavailable(
                f"plan limits cannot be checked now (Redis: {type(exc).__name__}); "
                "retry shortly"
            ) from exc

    async def acquire_stream(self, subject: str, limit: int) -> str | None:
        slot_id = secrets.token_hex(8)
        ok = await self._run(self._acquire, [f"{self.prefix}:streams:{subject}"],
                             [slot_id, limit, self._ttl_ms])
        return slot_id if int(ok) else None

    async def renew_streams(self, slots: Sequence[SlotRef]) -> None:
        if slots:
            keys, args = _batch(self.prefix, slots)
            await self._run(self._renew, keys, [self._ttl_ms, *args])

    async def release_streams(self, slots: Sequence[SlotRef]) -> None:
        if slots:
            keys, args = _batch(self.prefix, slots)
            await self._run(self._release, keys, args)

    async def take_rate(self, subject: str, per_minute: int) -> float:
        wait_ms = await self._run(self._rate, [f"{self.prefix}:rate:{subject}"],
                                  [per_minute / 60.0, per_minute])
        return int(wait_ms) / 1000

    async def take_daily(self, subject: str, per_day: int) -> float:
        wait_ms = await self._run(self._daily, [f"{self.prefix}:daily:{subject}"], [per_day])
        return int(wait_ms) / 1000

    async def spend_once(self, credential: str, ttl_s: float) -> bool:
        key = f"{self.prefix}:spent:{credential}"
        try:
            done = await self.redis.set(key, 1, nx=True, px=max(1, int(ttl_s * 1000)))
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimitsUnavailable(
                f"plan limits cannot be checked now (Redis: {type(exc).__name__}); "
                "retry shortly"
            ) from exc
        return bool(done)

    async def aclose(self) -> None:
        try:
            pool = self.redis.connection_pool
            await self.redis.aclose()
            await close_pool(pool)
        except (RedisError, OSError):
            pass


_: type[Limits] = RedisLimits
