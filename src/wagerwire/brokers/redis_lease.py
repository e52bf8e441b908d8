"""A named lease in Redis: one node at a time does a job (the SportsGameOdds bridge).

``take()`` takes the lease when nobody holds it, or keeps it (renews the expiry) for its
holder; one Lua script, so two nodes never both win. A holder that stops renewing (killed,
paused) loses it after ``ttl_s``; the holder trusts its lease for only ``trust`` of that
(measured on its own monotonic clock from before the call), so a paused holder stops before
another node can have taken over.
"""

from __future__ import annotations

import importlib.resources
import secrets
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["RedisLease"]

TIMEOUT_S = 2.0


class RedisLease:
    """One lease (key ``name``) as seen by one holder."""

    def __init__(self, redis: Redis, name: str, *, ttl_s: float = 10.0, trust: float = 0.8,
                 holder: str | None = None) -> None:
        self.redis = redis
        self.name = name
        self.ttl_s = ttl_s
        self.trust = trust
        self.holder = holder or secrets.token_hex(8)
        self.until = 0.0  # monotonic time up to which this holder may act
        script = importlib.resources.files("wagerwire.brokers").joinpath("lua/lease_take.lua")
        self._take = redis.register_script(script.read_text())

    @classmethod
    def from_url(cls, url: str, name: str, *, ttl_s: float = 10.0) -> RedisLease:
        client = Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                socket_connect_timeout=TIMEOUT_S, retry=Retry(NoBackoff(), 1))
        return cls(client, name, ttl_s=ttl_s)

    def held(self) -> bool:
        return time.monotonic() < self.until

    async def take(self) -> bool:
        """Take or renew; False (and not held) when another holder has it or Redis fails."""
        started = time.monotonic()
        try:
            ok = int(await self._take(keys=[self.name],
                                      args=[self.holder, int(self.ttl_s * 1000)])) == 1
        except (RedisError, OSError, TimeoutError):
            ok = False
        self.until = started + self.ttl_s * self.trust if ok else 0.0
        return ok

    async def aclose(self) -> None:
        """Give the lease up (if held) and close the client."""
        try:
            if self.held():
                await self.redis.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                    "return redis.call('DEL', KEYS[1]) end return 0", 1, self.name,
                    self.holder)
            await self.redis.aclose()
        except (RedisError, OSError):
            pass
