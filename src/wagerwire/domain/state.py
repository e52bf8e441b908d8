"""The latest domain snapshot built from hub messages, so REST can answer from memory.

:class:`DomainState` is fed every delivered message (``apply(channel, data, ts)``) and keeps:

- ``game:{slug}``: the latest ``max_rounds`` rounds of each game (oldest evicted first), an index
  by ``round_id`` and per-game metadata (name, type, provider, counts, last round);
- ``sports:event:{id}``: the latest Event object of each event (an older ``seq`` never
  replaces a newer one), at most ``max_events`` of them, finished ones evicted first;
- ``odds:{sport}:{competition}``: the latest price per (event, market, selection, bookmaker),
  also seeded from the prices inside Event objects.

It is synchronous and does no I/O: the hub calls it from its delivery listener, tests call it
directly. Data it does not understand (another channel family, a payload of the wrong shape) is
ignored without raising, because anyone with a publisher key can put anything on a channel.
Returned dicts are the stored objects or fresh summaries; callers must not mutate them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

__all__ = ["DEFAULT_MAX_EVENTS", "DEFAULT_MAX_ROUNDS", "DomainState"]

DEFAULT_MAX_ROUNDS = 2000
"""Rounds kept per game: enough for the trackers' usual windows (last 100/500/2000)."""

DEFAULT_MAX_EVENTS = 2000
"""Events kept (with their prices) before the oldest finished ones are dropped."""

_GAME_FIELDS = ("game_name", "game_type", "provider", "category", "game_id")


@dataclass(slots=True)
class _Game:
    slug: str
    rounds: deque[Mapping[str, Any]]
    by_id: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    total: int = 0
    first_seen: int | None = None
    last_ts: int | None = None
    complete: bool = True  # every round of the channel since it began is still kept


@dataclass(slots=True)
class _EventEntry:
    data: Mapping[str, Any] | None = None
    ts: int = 0
    sport: str | None = None
    competition: str | None = None
    # (market_id, selection key, bookmaker) → price record
    prices: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    # market_id → market description (type, line, period) for odds answers
    markets: dict[str, dict[str, Any]] = field(default_factory=dict)


def _text(value: object) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _odds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 1.0 else None


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class DomainState:
    """Latest games, rounds, events and prices, kept from applied hub messages."""

    def __init__(
        self, *, max_rounds: int = DEFAULT_MAX_ROUNDS, max_events: int = DEFAULT_MAX_EVENTS
    ) -> None:
        if max_rounds < 1 or max_events < 1:
            raise ValueError("max_rounds and max_events must be at least 1")
        self.max_rounds = max_rounds
        self.max_events = max_events
        self._games: dict[str, _Game] = {}
        self._rounds: dict[str, Mapping[str, Any]] = {}
        self._events: dict[str, _EventEntry] = {}

    # -- feeding ----------------------------------------------------------------------------

    def apply(self, channel: str, data: Any, ts: int) -> None:
        """Take one delivered message into account; ignore what is not understood."""
        if not isinstance(channel, str) or not isinstance(data, Mapping):
            return
        kind, _, rest = channel.partition(":")
        if kind == "game" and rest and ":" not in rest:
            self._apply_round(rest, data, ts)
        elif kind == "sports" and rest.startswith("event:") and len(rest) > 6:
            self._apply_event(rest[6:], data, ts)
        elif kind == "odds" and rest:
            self._apply_odds(rest, data, ts)

    def _apply_round(self, slug: str, data: Mapping[str, Any], ts: int) -> None:
        round_id = _text(data.get("round_id"))
        if round_id is None:
            return
        game = self._games.get(slug)
        if game is None:
            game = self._games[slug] = _Game(slug, deque(maxlen=self.max_rounds), first_seen=ts)
        elif round_id in game.by_id:
            return  # a replay of a round already kept (resume, republish)
        if len(game.rounds) == game.rounds.maxlen:
            oldest = game.rounds[0]
            game.complete = False
            evicted = _text(oldest.get("round_id"))
            if evicted is not None:
                if game.by_id.get(evicted) is oldest:
                    del game.by_id[evicted]
                if self._rounds.get(evicted) is oldest:
                    del self._rounds[evicted]
        game.rounds.append(data)
        game.by_id[round_id] = data
        self._rounds[round_id] = data
        game.total += 1
        game.last_ts = ts
        for name in _GAME_FIELDS:
            value = data.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool):
                game.meta[name] = value

    def _entry(self, event_id: str, ts: int) -> _EventEntry:
        entry = self._events.get(event_id)
        if entry is None:
            entry = self._events[event_id] = _EventEntry(ts=ts)
            if len(self._events) > self.max_events:
                self._evict(keep=event_id)
        return entry

    def _evict(self, keep: str) -> None:
        """Drop the stalest finished event, or the stalest event if none has finished."""

        def staleness(item: tuple[str, _EventEntry]) -> tuple[bool, int]:
            data = item[1].data
            finished = data is not None and data.get("status") in ("finished", "ended", "final")
            return (not finished, item[1].ts)

        candidates = [item for item in self._events.items() if item[0] != keep]
        if candidates:
            del self._events[min(candidates, key=staleness)[0]]

    def _apply_event(self, channel_id: str, data: Mapping[str, Any], ts: int) -> None:
        event_id = _text(data.get("event_id")) or channel_id
        current = self._events.get(event_id)
        if current is not None and current.data is not None:
            old_seq, new_seq = current.data.get("seq"), data.get("seq")
            if _is_int(old_seq) and _is_int(new_seq) and new_seq < old_seq:
                return  # out of order: keep the newer snapshot
        entry = self._entry(event_id, ts)
        entry.data = data
        entry.ts = max(entry.ts, ts)
        entry.sport = _text(data.get("sport")) or entry.sport
        entry.competition = (
            _text(data.get("competition") or data.get("league")) or entry.competition
        )
        markets = data.get("markets")
        if isinstance(markets, list):
            for market in markets:
                if isinstance(market, Mapping):
                    self._apply_market_snapshot(entry, market, data, ts)

    def _apply_market_snapshot(
        self, entry: _EventEntry, market: Mapping[str, Any], event: Mapping[str, Any], ts: int
    ) -> None:
        market_id = _text(market.get("market_id"))
        selections = market.get("selections")
        if market_id is None or not isinstance(selections, list):
            return
        self._remember_market(entry, market_id, market)
        for selection in selections:
            if not isinstance(selection, Mapping) or not isinstance(
                selection.get("prices"), Mapping
            ):
                continue
            key = _text(selection.get("selection_id")) or _text(selection.get("name"))
            if key is None:
                continue
            for bookmaker, price in selection["prices"].items():
                odds = _odds(price.get("odds")) if isinstance(price, Mapping) else None
                if odds is None or not isinstance(bookmaker, str):
                    continue
                self._store_price(
                    entry,
                    (market_id, key, bookmaker),
                    {
                        "bookmaker": bookmaker,
                        "selection_id": key,
                        "selection": _text(selection.get("name")) or key,
                        "odds": odds,
                        "suspended": price.get("suspended") is True,
                        "is_live": event.get("live") is True or event.get("status") == "live",
                        "updated_at": ts,
                    },
                )

    def _apply_odds(self, rest: str, data: Mapping[str, Any], ts: int) -> None:
        bookmaker = _text(data.get("bookmaker"))
        odds = _odds(data.get("odds"))
        selection = _text(data.get("selection"))
        key = _text(data.get("selection_id")) or selection
        event_id = _text(data.get("event_id")) or _text(data.get("match_name"))
        market_id = _text(data.get("market_id")) or _text(data.get("market_type"))
        if bookmaker is None or odds is None or key is None:
            return
        if event_id is None or market_id is None:
            return
        entry = self._entry(event_id, ts)
        entry.ts = max(entry.ts, ts)
        sport, _, competition = rest.partition(":")
        entry.sport = entry.sport or _text(data.get("sport")) or sport or None
        entry.competition = (
            entry.competition or _text(data.get("competition")) or competition or None
        )
        self._remember_market(entry, market_id, data)
        record = {
            "bookmaker": bookmaker,
            "selection_id": key,
            "selection": selection or key,
            "odds": odds,
            "suspended": data.get("suspended") is True,
            "is_live": data.get("is_live") is True,
            "updated_at": ts,
        }
        if isinstance(data.get("scraped_at"), str):
            record["scraped_at"] = data["scraped_at"]
        self._store_price(entry, (market_id, key, bookmaker), record)

    @staticmethod
    def _remember_market(entry: _EventEntry, market_id: str, source: Mapping[str, Any]) -> None:
        if market_id in entry.markets:
            return
        line = source.get("line")
        period = source.get("period")
        entry.markets[market_id] = {
            "market_id": market_id,
            "market_type": _text(source.get("market_type")) or market_id,
            "line": line if isinstance(line, int | float) and not isinstance(line, bool) else None,
            "period": period if _is_int(period) else 0,
        }

    @staticmethod
    def _store_price(entry: _EventEntry, key: tuple[str, str, str], record: dict[str, Any]) -> None:
        current = entry.prices.get(key)
        if current is None or record["updated_at"] >= current["updated_at"]:
            entry.prices[key] = record

    # -- games ------------------------------------------------------------------------------

    def games(self) -> list[dict[str, Any]]:
        """Every game seen, by slug: metadata, rounds kept and seen, the latest round's result."""
        return [self._game_summary(g) for _, g in sorted(self._games.items())]

    def game(self, slug: str) -> dict[str, Any] | None:
        """One game's summary, or ``None`` if no round of it was seen."""
        game = self._games.get(slug)
        return None if game is None else self._game_summary(game)

    @staticmethod
    def _game_summary(game: _Game) -> dict[str, Any]:
        last = game.rounds[-1] if game.rounds else None
        return {
            "slug": game.slug,
            "name": game.meta.get("game_name", game.slug),
            "game_type": game.meta.get("game_type"),
            "provider": game.meta.get("provider"),
            "category": game.meta.get("category"),
            "game_id": game.meta.get("game_id"),
            "rounds_kept": len(game.rounds),
            "rounds_seen": game.total,
            "first_seen": game.first_seen,
            "last_round_at": game.last_ts,
            "last_round_id": None if last is None else last.get("round_id"),
            "last_result": None if last is None else last.get("result"),
        }

    def rounds(
        self,
        slug: str,
        *,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> list[Mapping[str, Any]]:
        """Kept rounds of ``slug``, oldest first, by their ``timestamp`` (ms).

        ``since`` is exclusive and ``until`` inclusive. With ``since`` the *first* ``limit``
        rounds after it are returned (paging forward); without it the *latest* ``limit``.
        An unknown game gives ``[]``.
        """
        game = self._games.get(slug)
        if game is None:
            return []
        selected: list[Mapping[str, Any]] = []
        for r in game.rounds:
            stamp = r.get("timestamp")
            if since is not None and not (_is_int(stamp) and stamp > since):
                continue
            if until is not None and not (_is_int(stamp) and stamp <= until):
                continue
            selected.append(r)
        if limit is not None:
            limit = max(0, limit)
            selected = selected[:limit] if since is not None else selected[len(selected) - limit :]
        return selected

    def round(self, round_id: str | int, slug: str | None = None) -> Mapping[str, Any] | None:
        """One kept round by its ``round_id`` (compared as text), or ``None``.

        With ``slug`` only that game's rounds are searched, so a round published on another
        channel under the same id cannot stand in for it.
        """
        if slug is None:
            return self._rounds.get(str(round_id))
        game = self._games.get(slug)
        return None if game is None else game.by_id.get(str(round_id))

    def kept_rounds(self, slug: str) -> list[Mapping[str, Any]]:
        """Every kept round of ``slug`` in arrival (offset) order; ``[]`` for an unknown game."""
        game = self._games.get(slug)
        return [] if game is None else list(game.rounds)

    def is_complete(self, slug: str) -> bool:
        """Whether the kept rounds of ``slug`` are all its channel ever had (none evicted).

        When false, windows that reach back before the oldest kept round must be read from
        the store. An unknown game is not complete.
        """
        game = self._games.get(slug)
        return game is not None and game.complete

    def mark_incomplete(self, slug: str) -> None:
        """Record that older rounds of ``slug`` exist outside the state (seeded from a store
        holding more than ``max_rounds``)."""
        game = self._games.get(slug)
        if game is not None:
            game.complete = False

    # -- sports -----------------------------------------------------------------------------

    def sports(self) -> list[dict[str, Any]]:
        """Sports seen, each with its competitions and event counts (all and live)."""
        tree: dict[str, dict[str, Any]] = {}
        for entry in self._events.values():
            if entry.sport is None:
                continue
            data = entry.data or {}
            live = _is_live(data)
            sport = tree.setdefault(
                entry.sport,
                {"sport": entry.sport, "name": data.get("sport_name") or entry.sport,
                 "events": 0, "live": 0, "competitions": {}},
            )  # fmt: skip
            sport["events"] += 1
            sport["live"] += live
            slug = entry.competition or "unknown"
            competition = sport["competitions"].setdefault(
                slug,
                {"competition": slug, "name": data.get("competition_name") or slug,
                 "events": 0, "live": 0},
            )  # fmt: skip
            competition["events"] += 1
            competition["live"] += live
        answer = []
        for _, sport in sorted(tree.items()):
            sport["competitions"] = [c for _, c in sorted(sport["competitions"].items())]
            answer.append(sport)
        return answer

    def events(
        self,
        *,
        live: bool | None = None,
        league: str | None = None,
        sport: str | None = None,
    ) -> list[Mapping[str, Any]]:
        """Event objects matching every given filter, by start time then id.

        ``league`` matches the event's ``competition`` or ``league`` (case-insensitive).
        """
        wanted_league = league.lower() if league else None
        wanted_sport = sport.lower() if sport else None
        found: list[Mapping[str, Any]] = []
        for entry in self._events.values():
            data = entry.data
            if data is None:
                continue
            if live is not None and _is_live(data) != live:
                continue
            if wanted_sport is not None and (entry.sport or "").lower() != wanted_sport:
                continue
            if wanted_league is not None and wanted_league not in {
                str(data.get("competition", "")).lower(),
                str(data.get("league", "")).lower(),
            }:
                continue
            found.append(data)
        found.sort(key=_start_key)
        return found

    def event(self, event_id: str) -> Mapping[str, Any] | None:
        """The latest Event object of ``event_id``, or ``None``."""
        entry = self._events.get(event_id)
        return None if entry is None else entry.data

    def odds(self, event_id: str) -> dict[str, Any] | None:
        """Every bookmaker's current price per market and selection of one event.

        ``{"event_id", "markets": [{"market_id", "market_type", "line", "period",
        "selections": [{"selection_id", "selection", "prices": [record…]}]}]}`` where a record
        is ``{"bookmaker", "odds", "suspended", "is_live", "updated_at", …}``; ``None`` when no
        price of the event was seen.
        """
        entry = self._events.get(event_id)
        if entry is None or not entry.prices:
            return None
        markets: dict[str, dict[str, Any]] = {}
        selections: dict[tuple[str, str], dict[str, Any]] = {}
        for (market_id, key, _), record in entry.prices.items():
            market = markets.get(market_id)
            if market is None:
                market = markets[market_id] = {**entry.markets[market_id], "selections": []}
            selection = selections.get((market_id, key))
            if selection is None:
                selection = {"selection_id": key, "selection": record["selection"], "prices": []}
                selections[(market_id, key)] = selection
                market["selections"].append(selection)
            selection["prices"].append(record)
        for selection in selections.values():
            selection["prices"].sort(key=lambda r: r["bookmaker"])
        return {"event_id": event_id, "markets": list(markets.values())}

    def books(
        self, event_id: str, *, now: int | None = None, max_age_ms: int | None = None
    ) -> dict[str, dict[str, dict[str, float]]]:
        """``market_id → bookmaker → selection → odds`` of takeable prices, for the odds maths.

        Suspended prices are left out, and with ``now`` and ``max_age_ms`` so are prices not
        updated within that age (stale). Feed one market's books to
        :func:`wagerwire.analytics.odds.best_prices` / ``find_arbitrage`` / ``value_bets``.
        """
        entry = self._events.get(event_id)
        answer: dict[str, dict[str, dict[str, float]]] = {}
        if entry is None:
            return answer
        for (market_id, key, bookmaker), record in entry.prices.items():
            if record["suspended"]:
                continue
            if (
                now is not None
                and max_age_ms is not None
                and now - record["updated_at"] > max_age_ms
            ):
                continue
            answer.setdefault(market_id, {}).setdefault(bookmaker, {})[key] = record["odds"]
        return answer

    def event_tags(self, event_id: str) -> tuple[str | None, str | None]:
        """``(sport, competition)`` of an event, from its Event object or its prices."""
        entry = self._events.get(event_id)
        return (None, None) if entry is None else (entry.sport, entry.competition)

    def event_ids(self) -> list[str]:
        """Ids of every event with an Event object or at least one price."""
        return list(self._events)


def _is_live(data: Mapping[str, Any]) -> bool:
    return data.get("live") is True or data.get("status") == "live"


def _start_key(data: Mapping[str, Any]) -> tuple[int, str]:
    start = data.get("starts_at_ms")
    return (start if _is_int(start) else 0, str(data.get("event_id", "")))
