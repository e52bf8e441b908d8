"""Plans: what a key may read and how much it may use, defined in config.

The default set mirrors the seed feeds: ``free`` (one stream, 30 stream tokens a day, like
OddsStream's free plan), ``pro`` (REST only: OddsStream's Pro has no WebSocket), ``pro+`` and
``allstar`` (SportsGameOdds' streaming tier), ``pro+rt`` and ``pro+live`` (OddsStream's
unlimited streaming tiers: no daily token or concurrent-stream limit), plus ``open`` for anonymous use when auth is
``open`` and ``internal`` for publisher/admin keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from wagerwire.core.channels import MAX_CHANNEL_LENGTH, pattern_matcher
from wagerwire.errors import BadParameter

__all__ = ["DEFAULT_PLANS", "Plan", "parse_plans", "plan_allows"]

UNLIMITED = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Plan:
    """Limits of one plan; ``channels`` are patterns (``*`` wildcards) the plan may read."""

    name: str
    channels: tuple[str, ...] = ("*",)
    stream: bool = True
    max_streams: int = UNLIMITED
    token_requests_per_day: int = UNLIMITED
    rest_per_minute: int = UNLIMITED
    max_subscriptions: int = 100
    delay_ms: int = 0  # every stream of the plan runs this far behind (free odds tiers)
    min_conflate_ms: int = 0  # and gets at most one update per key per this interval

    def allows(self, channel: str) -> bool:
        return plan_allows(self.channels, channel)


def plan_allows(patterns: tuple[str, ...], channel: str) -> bool:
    """Whether ``channel`` matches one of a plan's patterns (cached: every subscribe asks).

    Only names of a valid length are cached: a subscribe frame's names reach here before the
    hub validates them, and a 60 KB "name" must not be kept (16,384 entries of at most
    ~400 bytes: the cache stays under ~7 MiB whatever clients send).
    """
    if len(channel) > MAX_CHANNEL_LENGTH:
        return _plan_allows(patterns, channel)
    return _plan_allows_cached(patterns, channel)


def _plan_allows(patterns: tuple[str, ...], channel: str) -> bool:
    return any(pattern_matcher(p).fullmatch(channel) for p in patterns)


_plan_allows_cached = lru_cache(maxsize=16384)(_plan_allows)


PUBLIC = ("game:*", "fairness:*", "sports:*", "odds:*", "events:*")

DEFAULT_PLANS: dict[str, Plan] = {
    "open": Plan("open", ("*",), max_subscriptions=100),
    "free": Plan("free", ("game:crash", "game:double", "fairness:*", "sports:*", "odds:*"),
                 max_streams=1, token_requests_per_day=30, rest_per_minute=60,
                 max_subscriptions=10),
    "pro": Plan("pro", PUBLIC, stream=False, rest_per_minute=600, max_subscriptions=50),
    "pro+": Plan("pro+", PUBLIC, max_streams=5, token_requests_per_day=1000,
                 rest_per_minute=1200, max_subscriptions=50),
    "pro+rt": Plan("pro+rt", PUBLIC, rest_per_minute=1200),
    "pro+live": Plan("pro+live", PUBLIC, rest_per_minute=1200),
    "allstar": Plan("allstar", ("*",), max_streams=50, token_requests_per_day=100_000,
                    rest_per_minute=6000, max_subscriptions=100),
    "internal": Plan("internal", ("*",)),
}


def parse_plans(raw: Mapping[str, Any] | None) -> dict[str, Plan]:
    """Plans from a config table ``[plans.NAME]`` merged over the defaults.

    Raises:
        BadParameter: a plan field has the wrong type.
    """
    plans = dict(DEFAULT_PLANS)
    for name, fields in (raw or {}).items():
        if not isinstance(fields, Mapping):
            raise BadParameter(f"plan {name!r} must be a table")
        try:
            base = plans.get(name, Plan(name))
            plans[name] = Plan(
                name=name,
                channels=tuple(str(c) for c in fields.get("channels", base.channels)),
                stream=bool(fields.get("stream", base.stream)),
                max_streams=int(fields.get("max_streams", base.max_streams)),
                token_requests_per_day=int(
                    fields.get("token_requests_per_day", base.token_requests_per_day)
                ),
                rest_per_minute=int(fields.get("rest_per_minute", base.rest_per_minute)),
                max_subscriptions=int(fields.get("max_subscriptions", base.max_subscriptions)),
                delay_ms=int(float(fields.get("delay_s", base.delay_ms / 1000)) * 1000),
                min_conflate_ms=int(fields.get("min_conflate_ms", base.min_conflate_ms)),
            )
        except (TypeError, ValueError) as exc:
            raise BadParameter(f"plan {name!r}: {exc}") from exc
        plan = plans[name]
        if not 0 <= plan.delay_ms <= 3_600_000 or not 0 <= plan.min_conflate_ms <= 120_000:
            raise BadParameter(f"plan {name!r}: delay_s must be 0-3600 and min_conflate_ms "
                               "0-120000")
    return plans
