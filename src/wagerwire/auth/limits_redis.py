"""Plan limits shared by every node: concurrent-stream leases and token buckets in Redis.

For the auth gate of a scale-out hub (a plan's "concurrent streams" and "REST rate" must hold
across nodes, not per node). Both are single Lua scripts, so each check-and-update is atomic,
and both use Redis' own clock (``TIME``), so nodes with skewed clocks agree.

* :class:`StreamLeases`: at most ``limit`` open streams per subject (API key or user). Each
  open stream holds a lease (a member of a sorted set scored by its expiry); a node renews
  the leases of its live streams every ``ttl/3`` and releases them on close, so the streams
  of a node that died stop counting after ``ttl``.
* :class:`TokenBucket`: ``rate`` requests per second with bursts up to ``burst``;
  ``take`` answers whether a request may go now and, if not, when to retry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

__all__ = ["BucketAnswer", "SharedLimits", "StreamLeases", "TokenBucket"]

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

_LEASE_ACQUIRE = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, redis.call('ZCARD', KEYS[1])}
end
return {0, redis.call('ZCARD', KEYS[1])}
"""

_LEASE_RENEW = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 1
end
return 0
"""

_LEASE_COUNT = _NOW_MS + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

_BUCKET_TAKE = _NOW_MS + """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local allowed = 0
local wait_ms = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait_ms = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait_ms, tostring(tokens)}
"""


class StreamLeases:
    """Concurrent streams per subject across nodes (see the module docstring).

    Args:
        redis: a ``redis.asyncio.Redis`` client.
        prefix: namespace of the keys (``<prefix>:streams:<subject>``).
        ttl_s: a lease not renewed for this long stops counting.
    """

    def __init__(self, redis: Redis, *, prefix: str = "ww", ttl_s: float = 30.0) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = int(ttl_s * 1000)
        self._acquire = redis.register_script(_LEASE_ACQUIRE)
        self._renew = redis.register_script(_LEASE_RENEW)
        self._count = redis.register_script(_LEASE_COUNT)

    def _key(self, subject: str) -> str:
        return f"{self.prefix}:streams:{subject}"

    async def acquire(self, subject: str, limit: int, lease_id: str | None = None) -> str | None:
        """Open one stream for ``subject``: its lease id, or ``None`` at the limit."""
        lease = lease_id or secrets.token_hex(8)
        ok, _ = await self._acquire(keys=[self._key(subject)], args=[lease, limit, self.ttl_ms])
        return lease if int(ok) else None

    async def renew(self, subject: str, lease_id: str) -> bool:
        """Keep a live stream counted; ``False`` if its lease had already expired."""
        return bool(int(await self._renew(keys=[self._key(subject)],
                                          args=[lease_id, self.ttl_ms])))

    async def release(self, subject: str, lease_id: str) -> None:
        """The stream closed."""
        await self.redis.zrem(self._key(subject), lease_id)

    async def count(self, subject: str) -> int:
        """Open streams of ``subject`` on every node."""
        return int(await self._count(keys=[self._key(subject)], args=[]))


@dataclass(frozen=True, slots=True)
class BucketAnswer:
    """``allowed``: go ahead; else retry after ``retry_after_s``. ``tokens`` left."""

    allowed: bool
    retry_after_s: float
    tokens: float


class TokenBucket:
    """A token bucket per subject across nodes: ``rate`` per second, bursts of ``burst``."""

    def __init__(self, redis: Redis, *, prefix: str = "ww") -> None:
        self.redis = redis
        self.prefix = prefix
        self._take = redis.register_script(_BUCKET_TAKE)

    async def take(
        self, subject: str, *, rate: float, burst: float, cost: float = 1.0
    ) -> BucketAnswer:
        """Take ``cost`` tokens if there are enough (refilled at ``rate`` per second)."""
        if rate <= 0 or burst <= 0 or cost <= 0:
            raise ValueError("rate, burst and cost must be > 0")
        allowed, wait_ms, tokens = await self._take(
            keys=[f"{self.prefix}:bucket:{subject}"], args=[rate, burst, cost]
        )
        return BucketAnswer(bool(int(allowed)), int(wait_ms) / 1000, float(tokens))


_QUOTA_TAKE = """
local used = redis.call('INCR', KEYS[1])
if used == 1 then redis.call('EXPIRE', KEYS[1], 172800) end
if used > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"""


class SharedLimits:
    """The auth gate's limits kept in Redis, so they hold across every node and worker.

    Synchronous on purpose: the gate decides at the handshake, before the upgrade, in plain
    functions; each decision is one Lua script, one loopback round trip (~0.1–0.3 ms) paid
    only by keyed requests, never by anonymous ones or on the fan-out path. The scripts are
    the ones :class:`StreamLeases` and :class:`TokenBucket` run.
    """

    def __init__(self, url: str, *, prefix: str = "ww", lease_ttl_s: float = 30.0) -> None:
        from redis import Redis as SyncRedis

        self.redis = SyncRedis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self.prefix = prefix
        self.lease_ttl_ms = int(lease_ttl_s * 1000)
        self._acquire = self.redis.register_script(_LEASE_ACQUIRE)
        self._renew = self.redis.register_script(_LEASE_RENEW)
        self._bucket = self.redis.register_script(_BUCKET_TAKE)
        self._quota = self.redis.register_script(_QUOTA_TAKE)

    def acquire_stream(self, subject: str, limit: int) -> str | None:
        """A lease id for one more open stream of ``subject``, or None at ``limit``."""
        lease = secrets.token_hex(8)
        ok, _ = self._acquire(keys=[f"{self.prefix}:streams:{subject}"],
                              args=[lease, limit, self.lease_ttl_ms])
        return lease if int(ok) else None

    def renew_stream(self, subject: str, lease_id: str) -> bool:
        return bool(int(self._renew(keys=[f"{self.prefix}:streams:{subject}"],
                                    args=[lease_id, self.lease_ttl_ms])))

    def release_stream(self, subject: str, lease_id: str) -> None:
        self.redis.zrem(f"{self.prefix}:streams:{subject}", lease_id)

    def take_rate(self, subject: str, per_minute: int) -> float:
        """0 when a request may go now, else seconds to wait (token bucket, burst = rate)."""
        allowed, wait_ms, _ = self._bucket(keys=[f"{self.prefix}:bucket:{subject}"],
                                           args=[per_minute / 60.0, per_minute, 1])
        return 0.0 if int(allowed) else int(wait_ms) / 1000

    def take_daily(self, subject: str, limit: int, day: int) -> bool:
        """Count one use of a per-UTC-day quota; False when ``limit`` is reached."""
        return bool(int(self._quota(keys=[f"{self.prefix}:quota:{subject}:{day}"],
                                    args=[limit])))

    def close(self) -> None:
        self.redis.close()
