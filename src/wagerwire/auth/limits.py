"""Plan limits behind one interface: :class:`Limits`, kept in this process or in Redis.

A plan limits three things per API key (the *subject*):

Stream slots (concurrent streams)
    Every open keyed stream (WebSocket or SSE, any dialect) holds one *stream slot*.
    :meth:`Limits.acquire_stream` grants one while the subject holds fewer than ``limit``
    (answering the slot's id) and answers ``None`` at the limit. A slot counts until it is
    released, or until it has gone ``slot_ttl_s`` without being renewed: the node that holds
    it renews all of its slots at once (:meth:`Limits.renew_streams`, one call per renewal
    tick, one round trip in Redis), so the slots of a node that died stop counting after the
    TTL. Renewing a slot that had already expired counts it again (its stream is still open),
    which may briefly put the subject over its limit after an outage; new slots are refused
    until it is back under.
Rate (REST requests per minute)
    A token bucket holding ``per_minute`` tokens, refilled at ``per_minute / 60`` per second:
    :meth:`Limits.take_rate` answers 0 and takes a token, or the seconds until one is there.
Daily quota (stream tokens per UTC day)
    :meth:`Limits.take_daily` answers 0 and counts one use, or the seconds until the next
    UTC day once ``per_day`` uses were counted today.
Single use (stream tokens)
    :meth:`Limits.spend_once` answers True the first time a credential is spent and False
    after, for ``ttl_s`` seconds: the rest of the token's life, whatever the calendar says
    (a token spent at 23:59 UTC stays spent after midnight; daily counters would forget it).

Backend failure: every method either answers or raises
:class:`~wagerwire.errors.LimitsUnavailable` (HTTP 503, code ``limits_unavailable``), never
another exception, so the HTTP layer answers it like any other documented error. The gate
fails closed (a stream or request that cannot be counted is refused with that 503), except
that releasing and renewing slots of open streams is best effort: open streams are never
closed because of it (see ``KeyGate``).

:class:`LocalLimits` keeps everything in this process (one node; its coroutines never
suspend); ``wagerwire.brokers.redis_limits.RedisLimits`` keeps it in Redis, so limits hold across
nodes. The pure, clock-injected :class:`RateBucket` and :class:`DailyQuota` are the local
arithmetic, tested exactly at their numbers with no sleeping.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DAY",
    "DailyQuota",
    "Limits",
    "LocalLimits",
    "RateBucket",
    "SLOT_TTL_S",
    "SlotRef",
    "TokenBucket",
]

DAY = 86400.0
SLOT_TTL_S = 30.0  # a stream slot not renewed for this long stops counting

SlotRef = tuple[str, str]
"""One granted stream slot: ``(subject, slot id)``."""


class Limits(Protocol):
    """Concurrent stream slots, a per-minute rate and a daily quota per subject.

    See the module docstring for the contract; every method raises ``LimitsUnavailable``
    when the backend cannot answer.
    """

    async def acquire_stream(self, subject: str, limit: int) -> str | None:
        """A new slot's id if ``subject`` holds fewer than ``limit`` slots, else ``None``."""
        ...

    async def renew_streams(self, slots: Sequence[SlotRef]) -> None:
        """Count every one of ``slots`` for another ``slot_ttl_s`` (re-adding expired ones)."""
        ...

    async def release_streams(self, slots: Sequence[SlotRef]) -> None:
        """Stop counting ``slots`` (unknown or expired ones are ignored)."""
        ...

    async def take_rate(self, subject: str, per_minute: int) -> float:
        """0 after taking one of ``per_minute`` tokens, else seconds until one is there."""
        ...

    async def take_daily(self, subject: str, per_day: int) -> float:
        """0 after counting one use today, else seconds until the next UTC day."""
        ...

    async def spend_once(self, credential: str, ttl_s: float) -> bool:
        """True if ``credential`` was not spent in the last ``ttl_s`` seconds (and spend it
        now), else False."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (connections)."""
        ...


@dataclass(slots=True)
class RateBucket:
    """``rate`` requests per ``period`` seconds, bursting up to ``rate`` (in-process)."""

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


TokenBucket = RateBucket  # deprecated name (the Redis module had another TokenBucket)


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


class LocalLimits:
    """:class:`Limits` kept in this process: right for one node, never fails.

    Args:
        clock: seconds since the epoch (injected by tests); rates, days and slot expiry.
        slot_ttl_s: a slot not renewed for this long stops counting.
    """

    __slots__ = ("clock", "slot_ttl_s", "_slots", "_buckets", "_quotas", "_day", "_spent",
                 "_spent_sweep")

    def __init__(
        self, clock: Callable[[], float] = time.time, slot_ttl_s: float = SLOT_TTL_S
    ) -> None:
        if slot_ttl_s <= 0:
            raise ValueError("slot_ttl_s must be > 0")
        self.clock = clock
        self.slot_ttl_s = slot_ttl_s
        self._slots: dict[str, dict[str, float]] = {}  # subject -> slot id -> expiry
        self._buckets: dict[str, RateBucket] = {}
        self._quotas: dict[str, DailyQuota] = {}
        self._day = -1
        self._spent: dict[str, float] = {}  # credential -> when it may be forgotten
        self._spent_sweep = 0.0

    def _live(self, subject: str, now: float) -> dict[str, float]:
        slots = self._slots.get(subject)
        if slots is None:
            slots = self._slots[subject] = {}
        else:
            for slot_id in [s for s, expiry in slots.items() if expiry <= now]:
                del slots[slot_id]
        return slots

    async def acquire_stream(self, subject: str, limit: int) -> str | None:
        now = self.clock()
        slots = self._live(subject, now)
        if len(slots) >= limit:
            return None
        slot_id = secrets.token_hex(8)
        slots[slot_id] = now + self.slot_ttl_s
        return slot_id

    async def renew_streams(self, slots: Sequence[SlotRef]) -> None:
        expiry = self.clock() + self.slot_ttl_s
        for subject, slot_id in slots:
            self._slots.setdefault(subject, {})[slot_id] = expiry

    async def release_streams(self, slots: Sequence[SlotRef]) -> None:
        for subject, slot_id in slots:
            held = self._slots.get(subject)
            if held is not None:
                held.pop(slot_id, None)
                if not held:
                    del self._slots[subject]

    async def take_rate(self, subject: str, per_minute: int) -> float:
        bucket = self._buckets.get(subject)
        if bucket is None:
            bucket = self._buckets[subject] = RateBucket(per_minute, 60.0)
        return bucket.take(self.clock())

    async def take_daily(self, subject: str, per_day: int) -> float:
        day = int(self.clock() // DAY)
        if day != self._day:  # yesterday's counts are over: forget them (spent tokens too)
            self._day = day
            self._quotas = {k: q for k, q in self._quotas.items() if q.day >= day}
        quota = self._quotas.get(subject)
        if quota is None:
            quota = self._quotas[subject] = DailyQuota(per_day)
        return quota.take(self.clock())

    async def spend_once(self, credential: str, ttl_s: float) -> bool:
        now = self.clock()
        if now >= self._spent_sweep:  # forget expired credentials, at most once a minute
            self._spent = {c: t for c, t in self._spent.items() if t > now}
            self._spent_sweep = now + 60.0
        until = self._spent.get(credential)
        if until is not None and until > now:
            return False
        self._spent[credential] = now + ttl_s
        return True

    async def aclose(self) -> None:
        return None


_: type[Limits] = LocalLimits
