"""SportsGameOdds (seed 002), sans-I/O: feeds as Pusher channels, Event objects, notifications.

The streaming API is a REST bootstrap plus the Pusher protocol (:mod:`.pusher`), on the
built-in Pusher app :data:`APP_ID`. Feeds and their (public) Pusher channels:

=====================  =====================  ===========================================
``feed``               parameter              channel
=====================  =====================  ===========================================
``events:live``        –                      ``events-live``
``events:upcoming``    ``leagueID`` (NFL…)    ``events-upcoming-<LEAGUEID>``
``events:byid``        ``eventID``            ``events-byid-<eventID>`` (hashed when the id
                                              has characters a Pusher name cannot hold)
=====================  =====================  ===========================================

Every change of a ``sports:event:{id}`` message becomes the event ``data`` with data
``[{"eventID": id}, …]`` on each feed channel the event belongs to (live while it is live
and on the update that ends it; upcoming while it is upcoming and on the update that starts
it; byid always), batched per loop turn (:func:`notifications`).

:func:`sgo_event` turns the hub's Event object (and its prices) into SportsGameOdds' Event
shape: ``eventID, sportID, leagueID, type, teams.{home,away}.{teamID, names.{long, medium,
short}, score}, status.{started, ended, live, completed, cancelled, startsAt, …}, odds{oddID →
{…, byBookmaker{bookmakerID → {odds, available, lastUpdatedAt}}}}``; odds are American odds
strings (``"+150"``, ``"-110"``) as SportsGameOdds writes them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

from wagerwire.dialects.pusher_names import valid_name
from wagerwire.errors import BadParameter

__all__ = [
    "APP_ID",
    "FEEDS",
    "american",
    "feed_channel",
    "feeds_of",
    "notifications",
    "sgo_event",
]

APP_ID = "sportsgameodds"
FEEDS = ("events:live", "events:upcoming", "events:byid")
_ID = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,140}")


def _byid(event_id: str) -> str:
    if _ID.fullmatch(event_id):
        return f"events-byid-{event_id}"
    return "events-byid-h" + hashlib.sha256(event_id.encode()).hexdigest()[:32]


def feed_channel(feed: str | None, league: str | None, event_id: str | None) -> str:
    """The Pusher channel of a feed request.

    Raises:
        BadParameter: an unknown feed, or ``leagueID``/``eventID`` missing for its feed.
    """
    if feed == "events:live":
        return "events-live"
    if feed == "events:upcoming":
        if not league or not valid_name(league) or len(league) > 40:
            raise BadParameter("feed events:upcoming needs a leagueID such as NFL")
        return f"events-upcoming-{league.upper()}"
    if feed == "events:byid":
        if not event_id or len(event_id) > 200:
            raise BadParameter("feed events:byid needs an eventID")
        return _byid(event_id)
    raise BadParameter(f"unknown feed {str(feed)[:40]!r}; feeds: {', '.join(FEEDS)}")


def _status(data: Mapping[str, Any] | None) -> str:
    return str(data.get("status", "")) if data else ""


def feeds_of(data: Mapping[str, Any], before: Mapping[str, Any] | None) -> list[str]:
    """The feed channels an Event update (``data``, after ``before``) notifies."""
    event_id = str(data.get("event_id", ""))
    now, was = _status(data), _status(before)
    channels = [_byid(event_id)]
    if now == "live" or was == "live":
        channels.append("events-live")
    if now == "upcoming" or was == "upcoming":
        league = str(data.get("league") or data.get("competition") or "").upper()
        if league and valid_name(league):
            channels.append(f"events-upcoming-{league}")
    return channels


def notifications(changed: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]]
                  ) -> dict[str, list[dict[str, str]]]:
    """Feed channel → the ``data`` payload ``[{"eventID"}, …]`` for a batch of updates."""
    out: dict[str, list[dict[str, str]]] = {}
    seen: dict[str, set[str]] = {}
    for data, before in changed:
        event_id = str(data.get("event_id", ""))
        for channel in feeds_of(data, before):
            ids = seen.setdefault(channel, set())
            if event_id not in ids:
                ids.add(event_id)
                out.setdefault(channel, []).append({"eventID": event_id})
    return out


def american(decimal: object) -> str | None:
    """Decimal odds as an American odds string: 2.5 → ``"+150"``, 1.91 → ``"-110"``."""
    if not isinstance(decimal, int | float) or decimal <= 1.0:
        return None
    if decimal >= 2.0:
        return f"+{round((decimal - 1) * 100)}"
    return f"-{round(100 / (decimal - 1))}"


def _short(name: str) -> str:
    words = [w for w in re.split(r"[\s.]+", name) if w]
    if len(words) > 1:
        return "".join(w[0] for w in words).upper()[:4]
    return name[:3].upper()


def _team(side: str, data: Mapping[str, Any]) -> dict[str, Any]:
    participants = data.get("participants") or {}
    name = str((participants.get(side) or {}).get("name", side))
    score = (data.get("score") or {}).get(side)
    team_id = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") + "_" + \
        str(data.get("league") or data.get("competition") or "").upper()
    return {"teamID": team_id, "statEntityID": side,
            "names": {"long": name, "medium": name.split(" ")[-1], "short": _short(name)},
            "score": score}


def _period_id(period: Any) -> str:
    """``game`` for the whole game; ``1p`` for the first period (half, quarter or set) —
    the hub's markets do not carry the sport's own period name."""
    if isinstance(period, int) and not isinstance(period, bool) and period > 0:
        return f"{period}p"
    return "game"


def _odds(odds: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for market in (odds or {}).get("markets", []):
        for selection in market.get("selections", []):
            odd_id = f"{market.get('market_id')}-{selection.get('selection_id')}"
            books: dict[str, Any] = {}
            best: float | None = None
            for record in selection.get("prices", []):
                price = record.get("odds")
                available = not record.get("suspended", False)
                books[str(record.get("bookmaker"))] = {
                    "odds": american(price), "available": available,
                    "lastUpdatedAt": record.get("updated_at"),
                }
                if available and isinstance(price, int | float) and (best is None or price > best):
                    best = price
            out[odd_id] = {
                "oddID": odd_id, "marketName": market.get("name") or market.get("market_type"),
                "betTypeID": market.get("market_type"), "sideID": selection.get("selection_id"),
                "periodID": _period_id(market.get("period")), "bookOdds": american(best),
                "bookOddsAvailable": best is not None, "byBookmaker": books,
            }
    return out


def sgo_event(data: Mapping[str, Any], odds: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The SportsGameOdds Event object of a hub Event object (and its current prices)."""
    status = _status(data)
    started = status in ("live", "finished")
    ended = status == "finished"
    return {
        "eventID": str(data.get("event_id", "")),
        "sportID": str(data.get("sport", "")).upper().replace("-", "_"),
        "leagueID": str(data.get("league") or data.get("competition") or "").upper(),
        "type": "match",
        "teams": {"home": _team("home", data), "away": _team("away", data)},
        "status": {
            "started": started, "ended": ended, "live": status == "live",
            "completed": ended, "finalized": ended, "cancelled": False, "delayed": False,
            "startsAt": data.get("starts_at"),
            "currentPeriodID": data.get("period_name"),
            "displayShort": data.get("clock") or status,
            "displayLong": data.get("period_name") or status,
            "oddsAvailable": bool(odds) and not ended,
            "oddsPresent": bool(odds),
        },
        "odds": _odds(odds),
    }
