"""A subscription given in a stream's URL: ``?channels=a,b&filter=<json>&since=<token>``
(and, for conflating channels, ``&image=true&conflate_ms=500``).

SSE needs it (a browser's EventSource can send nothing else); the native WebSocket accepts
the same query so a client is subscribed in the handshake, one round trip sooner, with the
``subscribed`` replies right behind the 101. Everything is checked before the stream opens,
so a bad query is a plain HTTP 4xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from wagerwire.auth.identity import Gate, Identity
from wagerwire.core.bounded import ByteLru
from wagerwire.core.channels import Filter, validate_pattern
from wagerwire.core.conflation import MAX_CONFLATE_MS
from wagerwire.core.messages import Position
from wagerwire.core.tokens import decode_token
from wagerwire.errors import BadParameter, MalformedJson

if TYPE_CHECKING:
    from wagerwire.core.hub import Hub
    from wagerwire.transports.http import HttpRequest

__all__ = ["UrlSubscription", "cached_bytes", "url_subscription"]

CHANNELS_HINT = "channels is required: ?channels=game:crash,odds:football:*"


@dataclass(frozen=True, slots=True)
class UrlSubscription:
    channels: list[str]
    filter: Filter | None
    since: dict[str, Position] | None
    image: bool = False
    conflate_ms: int = 0


def url_subscription(
    request: HttpRequest,
    gate: Gate,
    hub: Hub,
    identity: Identity,
    *,
    token: str | None = None,
) -> UrlSubscription | None:
    """The subscription in ``request``'s query, checked; None when it names no channels.

    ``token`` (e.g. SSE's ``Last-Event-ID``) takes precedence over ``?since=``.

    Raises:
        BadParameter, InvalidChannel, TooManyChannels, BadResumeToken, MalformedJson,
        Forbidden: answered as HTTP 4xx before the stream opens.
    """
    raw_channels = request.query_one("channels")
    if raw_channels is None:
        if request.query_one("filter") or request.query_one("since"):
            raise BadParameter(f"filter and since need channels; {CHANNELS_HINT}")
        return None
    # Counted before anything is validated: a refusal costs one split, not a regex per name.
    # Spaces around commas are allowed; any other whitespace is part of a (bad) name.
    names = [c for c in (part.strip(" ") for part in raw_channels.split(",")) if c]
    limit = gate.max_subscriptions(identity)
    hub.check_channel_count(names, limit)
    _resize(hub)
    channels = [gate.resolve_channel(identity, c) for c in _channel_names(raw_channels, names)]
    if not channels:
        raise BadParameter(CHANNELS_HINT)
    token = token or request.query_one("since")
    since = decode_token(token) if token else None
    raw_filter = request.query_one("filter")
    flt = _filter(raw_filter) if raw_filter else None
    hub.validate_subscription(channels, since, max_channels=limit)
    image = request.query_one("image") or "false"
    if image not in ("true", "false", "1", "0"):
        raise BadParameter("image must be true or false")
    raw_ms = request.query_one("conflate_ms") or "0"
    if not raw_ms.isdigit() or not 0 <= int(raw_ms) <= MAX_CONFLATE_MS:
        raise BadParameter(f"conflate_ms must be an integer from 0 to {MAX_CONFLATE_MS}")
    return UrlSubscription(channels, flt, since, image in ("true", "1"), int(raw_ms))


# Both are pure, and a connect storm repeats the same few queries: parse each text once. The
# caches are bounded in bytes (``HubLimits.parse_cache_bytes``, from ``parse_cache_bytes``),
# split evenly; an entry weighs its text twice (text and parse) plus a per-entry overhead.

_ENTRY_OVERHEAD = 200
_NAMES: ByteLru[str, tuple[str, ...]] = ByteLru(512 * 1024)
_FILTERS: ByteLru[str, Filter | None] = ByteLru(512 * 1024)


def cached_bytes() -> int:
    """What both caches weigh now (for tests and metrics)."""
    return _NAMES.nbytes + _FILTERS.nbytes


def _resize(hub: Hub) -> None:
    half = hub.limits.parse_cache_bytes // 2
    if _NAMES.budget != half:
        _NAMES.resize(half)
        _FILTERS.resize(half)


def _channel_names(raw: str, names: list[str]) -> tuple[str, ...]:
    known = _NAMES.get(raw)
    if known is None:
        known = tuple(validate_pattern(c) for c in names)
        _NAMES.put(raw, known, 2 * len(raw) + _ENTRY_OVERHEAD + 60 * len(known))
    return known


def _filter(raw: str) -> Filter | None:
    known = _FILTERS.get(raw)
    if known is not None:
        return known
    try:
        flt = Filter.parse(orjson.loads(raw))
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(f"filter must be a JSON object: {exc}") from exc
    if flt is not None:
        _FILTERS.put(raw, flt, 3 * len(raw) + _ENTRY_OVERHEAD)
    return flt
