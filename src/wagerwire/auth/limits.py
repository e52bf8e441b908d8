"""In-process limiters: token buckets, daily quotas, concurrent-stream counters.

Pure and clock-injected (``now`` in seconds is passed in), so limits are tested exactly at
their numbers with no sleeping. Each refusal says how long to wait (``Retry-After``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DailyQuota", "StreamCounter", "TokenBucket"]

DAY = 86400.0


@dataclass(slots=True)
class TokenBucket:
    """``rate`` requests per ``period`` seconds, bursting up to ``rate``."""

    rate: int
    period: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """Take one token; returns 0 when allowed, else seconds until one is available."""
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.rate), now
        refill = (now - self.stamp) * self.rate / self.period
        self.tokens = min(float(self.rate), self.tokens + refill)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * self.period / self.rate


@dataclass(slots=True)
class DailyQuota:
    """At most ``limit`` uses per UTC day."""

    limit: int
    day: int = -1
    used: int = 0

    def take(self, now: float) -> float:
        """Use one; returns 0 when allowed, else seconds until the next UTC day."""
        day = int(now // DAY)
        if day != self.day:
            self.day, self.used = day, 0
        if self.used >= self.limit:
            return (day + 1) * DAY - now
        self.used += 1
        return 0.0


class StreamCounter:
    """Open streams per key; acquire is synchronous, so no burst can overshoot."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[str, int] = {}

    def acquire(self, key_id: str, limit: int) -> bool:
        n = self._open.get(key_id, 0)
        if n >= limit:
            return False
        self._open[key_id] = n + 1
        return True

    def release(self, key_id: str) -> None:
        n = self._open.get(key_id, 0) - 1
        if n > 0:
            self._open[key_id] = n
        else:
            self._open.pop(key_id, None)

    def count(self, key_id: str) -> int:
        return self._open.get(key_id, 0)
