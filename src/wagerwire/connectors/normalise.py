"""Each dialect's frames, as a client receives them, into the hub's model (no I/O).

Rounds become the simulators' round schema (``sources/casino.py``: ``round_id``, ``index``,
``game_slug``, ``game_type``, ``result``, ``finished_at``, ``timestamp``, ``fairness`` when the
frame reveals it, ``source``, ``raw``) on ``game:{slug}``, so the fairness, statistics and
dialect encoders work on relayed rounds; the source's own frame is kept under ``raw`` when the
round schema has no place for it. Each function returns ``None`` for a frame that is not what
the dialect documents (the connector counts and skips it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from wagerwire.analytics.fairness import (
    ROOBET_MODULUS,
    STAKE_EDGE,
    STYLE_ROOBET,
    STYLE_STAKE,
    sha256_hex,
)
from wagerwire.connectors.model import Publication
from wagerwire.dialects.oddsstream import MARKET_TYPES, OddsCatalog, default_catalog
from wagerwire.errors import BadParameter

__all__ = [
    "channel_part",
    "content_digest",
    "datastream_round",
    "native_publication",
    "oddsstream_price",
    "parse_rfc3339_ms",
    "round_attrs",
    "round_identity",
    "sgo_event_publication",
    "stake_publication",
    "trackersino_round",
]

_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)
_EXTRAS_TYPES: Final = (("point", "crash"), ("reels", "slot"), ("color", "double"),
                        ("trending", "wallstreet"))
_CATEGORY: Final = {"crash": "multiplier", "slot": "multiplier", "double": "color",
                    "wallstreet": "trending"}


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339_ms(text: object) -> int | None:
    """Milliseconds since the epoch of an RFC 3339 time; None if it is not one."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        return None
    y, mo, d, h, mi, s = (int(match.group(i)) for i in range(1, 7))
    frac = (match.group(7) or "").ljust(3, "0")[:3]
    zone = match.group(8)
    offset = 0
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 60 + int(zone[4:6]))
    seconds = _days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset * 60
    return seconds * 1000 + int(frac)


def round_identity(data: Any) -> str | None:
    """``round:{slug}:{index}`` for a round of the hub's schema (the same from any feed that
    carries that round, so failover peers deduplicate); None for anything else."""
    if not isinstance(data, Mapping):
        return None
    slug, index = data.get("game_slug"), data.get("index")
    if isinstance(slug, str) and isinstance(index, int) and not isinstance(index, bool):
        return f"round:{slug}:{index}"
    return None


def round_attrs(data: Mapping[str, Any]) -> dict[str, str]:
    """The attributes the simulators publish a round with."""
    attrs = {"game": str(data.get("game_slug")), "game_type": str(data.get("game_type"))}
    if data.get("provider"):
        attrs["provider"] = str(data["provider"])
    return attrs


def native_publication(channel: str, epoch: str, offset: int, ts: int, data: Any,
                       attrs: Mapping[str, str] | None, source: str) -> Publication:
    """A native hub message as it is: rounds keyed by their round, anything else by the
    upstream's (channel, epoch, offset). Two attributes are added: ``src`` (the source's
    name) and ``src_pos`` (``epoch:offset`` upstream), from which a restarted connector reads
    back exactly where it was (not on a message that already has 31 or 32 attributes, the
    hub's limit: its position then comes from the cursor alone)."""
    tagged = dict(attrs or {})
    if len(tagged) <= 30:
        tagged.update(src=source, src_pos=f"{epoch}:{offset}")
    identity = round_identity(data)
    if identity is None:
        return Publication(channel, data, f"msg:{channel}:{epoch}:{offset}", tagged, ts)
    return Publication(channel, data, identity, tagged, ts, data["index"])


def stake_publication(frame: Any) -> Publication | None:
    """A Stake ``{"channel", "payload"}`` frame: the payload is the hub's data as it is."""
    if not isinstance(frame, Mapping) or "payload" not in frame:
        return None
    channel, payload = frame.get("channel"), frame.get("payload")
    if not isinstance(channel, str):
        return None
    identity = round_identity(payload)
    if identity is None:
        return None  # balances and score updates carry no identifier to resume or dedupe by
    ts = payload.get("timestamp") if isinstance(payload, Mapping) else None
    attrs = round_attrs(payload) if isinstance(payload, Mapping) else {}
    assert isinstance(payload, Mapping)
    return Publication(channel, payload, identity, attrs, ts if isinstance(ts, int) else None,
                       payload["index"])


def _fairness_from_raw(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a Stake or Roobet envelope reveals of the round's provable fairness: the revealed
    hash (the link played before it is its SHA-256) and the public seed, so the result
    recomputes; the chain commitment is not in the frame."""
    if raw.get("__typename") == "CrashGame":
        digest = raw.get("hash")
        game_hash = digest.get("hash") if isinstance(digest, Mapping) else None
        if isinstance(game_hash, str) and isinstance(raw.get("seed"), str):
            return {"style": STYLE_STAKE, "game_hash": game_hash,
                    "previous_hash": sha256_hex(game_hash), "salt": raw["seed"],
                    "house_edge": str(STAKE_EDGE)}
    inner = raw.get("data")
    if raw.get("event") == "crash:finished" and isinstance(inner, Mapping):
        if isinstance(inner.get("hash"), str) and isinstance(inner.get("clientSeed"), str):
            return {"style": STYLE_ROOBET, "game_hash": inner["hash"],
                    "previous_hash": sha256_hex(inner["hash"]),
                    "client_seed": inner["clientSeed"], "modulus": ROOBET_MODULUS}
    return None


def trackersino_round(frame: Any, source: str) -> Publication | None:
    """A TrackerSino round frame (or one item of its ``/rounds`` answer) as a hub round."""
    if not isinstance(frame, Mapping):
        return None
    slug, index, multiplier = frame.get("game_id"), frame.get("round_index"), frame.get("multiplier")
    if not isinstance(slug, str) or not isinstance(index, int) or not isinstance(multiplier, str):
        return None
    raw = frame.get("raw") if isinstance(frame.get("raw"), Mapping) else {}
    assert isinstance(raw, Mapping)
    finished = frame.get("finalized_at")
    ts = parse_rfc3339_ms(finished)
    data: dict[str, Any] = {
        "round_id": f"{slug}-{index}",
        "index": index,
        "game_slug": slug,
        "game_type": "crash",
        "category": "multiplier",
        "provider": str(frame.get("multiplier_source") or slug.split("-")[0]),
        "result": {"multiplier": multiplier, "crash_point": _number(multiplier)},
        "finished_at": finished,
        "timestamp": ts,
        "source": source,
        "upstream_round_id": frame.get("round_id"),
        "raw": dict(raw),
        "extras": {"point": multiplier},
    }
    fairness = _fairness_from_raw(raw)
    if fairness is not None:
        data["fairness"] = fairness
    return Publication(f"game:{slug}", data, f"round:{slug}:{index}", round_attrs(data), ts,
                       index)


def _number(text: object) -> float | None:
    """The simulators' float ``crash_point`` of a decimal string."""
    try:
        return float(str(text))
    except ValueError:
        return None


def _result_from_extras(game_type: str, extras: Mapping[str, Any]) -> dict[str, Any]:
    if game_type == "crash":
        return {"multiplier": extras.get("point"), "crash_point": _number(extras.get("point"))}
    if game_type == "slot":
        return {"reels": extras.get("reels"), "multiplier": extras.get("multiplier")}
    if game_type == "double":
        return {"color": extras.get("color"), "number": extras.get("number")}
    return {"direction": extras.get("trending")}


def datastream_round(frame: Any, source: str) -> Publication | None:
    """A Data Stream ``Round`` (``extras`` a JSON string) as a hub round."""
    if not isinstance(frame, Mapping):
        return None
    index, slug, extras_text = frame.get("round_id"), frame.get("game_slug"), frame.get("extras")
    if not isinstance(index, int) or not isinstance(slug, str) or not isinstance(extras_text, str):
        return None
    try:
        extras = orjson.loads(extras_text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(extras, Mapping):
        return None
    game_type = next((t for key, t in _EXTRAS_TYPES if key in extras), None)
    if game_type is None:
        return None
    finished = frame.get("finished_at")
    ts = parse_rfc3339_ms(finished)
    data: dict[str, Any] = {
        "round_id": f"{slug}-{index}",
        "index": index,
        "game_id": frame.get("game_id"),
        "game_slug": slug,
        "game_type": game_type,
        "category": frame.get("game_type") or _CATEGORY[game_type],
        "result": _result_from_extras(game_type, extras),
        "finished_at": finished,
        "timestamp": ts,
        "source": source,
        "raw": dict(frame),
        "extras": dict(extras),
    }
    sent = frame.get("timestamp")
    return Publication(f"game:{slug}", data, f"round:{slug}:{index}", round_attrs(data),
                       sent if isinstance(sent, int) else ts, index)


_CATALOG: Final = default_catalog()
_CHANNEL_UNSAFE: Final = re.compile(r"[^a-z0-9:_.\-]+")


def channel_part(text: object) -> str:
    """``text`` as a piece of a hub channel name (lowercase, ``[a-z0-9:_.-]``)."""
    return _CHANNEL_UNSAFE.sub("-", str(text).lower()).strip("-")[:100] or "unknown"


def content_digest(obj: Any) -> str:
    """A short stable digest of a JSON value (key order ignored)."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def _team_name(team: Any) -> str | None:
    names = team.get("names") if isinstance(team, Mapping) else None
    if isinstance(names, Mapping):
        for key in ("long", "medium", "short"):
            if isinstance(names.get(key), str):
                return str(names[key])
    return None


def sgo_event_publication(event: Any, source: str) -> Publication | None:
    """A SportsGameOdds Event object as a hub event on ``sports:event:{id}``.

    The hub's fields it carries (teams, score, status, start, period) are mapped; the whole
    Event, odds included, is kept under ``raw``. The identity is the event id plus a digest of
    its content, so a refetch of an unchanged event is a duplicate and a change is published.
    """
    if not isinstance(event, Mapping) or not isinstance(event.get("eventID"), str):
        return None
    event_id = event["eventID"]
    status = event.get("status") if isinstance(event.get("status"), Mapping) else {}
    teams = event.get("teams") if isinstance(event.get("teams"), Mapping) else {}
    assert isinstance(status, Mapping) and isinstance(teams, Mapping)
    state = ("finished" if status.get("ended") else "live" if status.get("live")
             else "upcoming")
    sport = channel_part(event.get("sportID") or "unknown")
    league = channel_part(event.get("leagueID") or "unknown")
    home, away = teams.get("home") or {}, teams.get("away") or {}
    data = {
        "event_id": event_id,
        "sport": sport,
        "competition": league,
        "league": league,
        "participants": {"home": {"name": _team_name(home)}, "away": {"name": _team_name(away)}},
        "score": {"home": home.get("score") if isinstance(home, Mapping) else None,
                  "away": away.get("score") if isinstance(away, Mapping) else None},
        "status": state,
        "live": state == "live",
        "starts_at": status.get("startsAt"),
        "starts_at_ms": parse_rfc3339_ms(status.get("startsAt")),
        "period_name": status.get("currentPeriodID"),
        "clock": status.get("displayShort"),
        "source": source,
        "raw": dict(event),
    }
    attrs = {"sport": sport, "competition": league, "event": event_id,
             "live": "true" if state == "live" else "false"}
    return Publication(f"sports:event:{channel_part(event_id)}", data,
                       f"sgo:{event_id}:{content_digest(event)}", attrs)


def _slug(lookup: Callable[[str], str], value: str) -> str:
    try:
        return lookup(value)
    except BadParameter:  # a name the built-in catalogue does not know: its own spelling
        return channel_part(value)


_MARKETS_BACK: Final = {v: k for k, v in MARKET_TYPES.items()}


def oddsstream_price(frame: Any, source: str, catalog: OddsCatalog | None = None
                     ) -> Publication | None:
    """One OddsStream selection price as a hub OddsUpdate on ``odds:{sport}:{competition}``
    (slugs through the simulator's catalogue, else the names lower-cased), with the
    bookmaker, sport and competition as attributes. OddsStream has no identifiers: the
    identity is the price itself (selection, odds and ``scraped_at``)."""
    catalog = catalog or _CATALOG
    if not isinstance(frame, Mapping):
        return None
    odds = frame.get("odds")
    names = [frame.get(k) for k in ("bookmaker", "sport", "competition", "selection",
                                    "market_type")]
    if isinstance(odds, bool) or not isinstance(odds, int | float) or not all(
        isinstance(n, str) for n in names
    ):
        return None
    book_name, sport_name, comp_code, selection, market = (str(n) for n in names)
    sport = _slug(catalog.sport_slug, sport_name)
    comp = _slug(catalog.competition_slug, comp_code)
    book = _slug(catalog.bookmaker_slug, book_name)
    period = frame.get("period") if isinstance(frame.get("period"), int) else 0
    data = {
        "bookmaker": book, "match_name": frame.get("match_name"), "competition": comp,
        "sport": sport, "market_type": _MARKETS_BACK.get(market, market),
        "selection": selection, "odds": odds, "period": period,
        "is_live": frame.get("is_live") is True, "scraped_at": frame.get("scraped_at"),
        "suspended": False, "source": source, "raw": dict(frame),
    }
    identity = (f"os:{book}:{frame.get('match_name')}:{market}:{period}:{selection}:"
                f"{odds}:{frame.get('scraped_at')}")
    attrs = {"sport": sport, "competition": comp, "bookmaker": book}
    return Publication(f"odds:{sport}:{comp}", data, identity, attrs,
                       parse_rfc3339_ms(frame.get("scraped_at")))
