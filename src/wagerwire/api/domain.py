"""Domain REST (DESIGN.md "Native API v1"): games, rounds, statistics, verification, sports, odds.

Everything answers from the server's :class:`~wagerwire.domain.feed.DomainFeed` snapshot, kept
current by a hub listener and seeded from the store at start; round windows reaching back
before the snapshot are read from the store (see :mod:`wagerwire.domain.history`). Unknown
games, rounds and events answer 404 ``not_found``; parameters out of range 422
``bad_parameter``.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from wagerwire.analytics.fairness import verify_round
from wagerwire.analytics.stats import game_stats
from wagerwire.api.auth import caller
from wagerwire.api.deps import services
from wagerwire.api.feature import Feature
from wagerwire.api.params import Digits
from wagerwire.api.responses import JsonResponse
from wagerwire.api.schemas import ErrorResponse
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.domain.feed import DomainFeed
from wagerwire.domain.history import Round, RoundFilter
from wagerwire.domain.markets import (
    EventSelector,
    arbitrages,
    best_market,
    event_header,
    market_books,
    selected_events,
    value_bet_list,
)
from wagerwire.errors import BadParameter, NotFound, Unavailable

__all__ = ["DEFAULT_STATS_LAST", "MAX_STATS_ROUNDS", "domain_feature", "router"]

router = APIRouter(prefix="/v1", tags=["domain"])

DEFAULT_STATS_LAST = 1000
"""Rounds in a statistics window when neither ``last`` nor a lower bound is given."""
MAX_STATS_ROUNDS = 10_000
"""Largest statistics window (``last`` at most this; a time/index window holding more is 422)."""
MAX_LIST_ITEMS = 20
"""Most percentiles or thresholds one statistics request may ask for."""

_NOT_FOUND = {"model": ErrorResponse, "description": "unknown game, round or event"}
_BAD = {"model": ErrorResponse, "description": "parameter out of range or malformed"}
_UNAVAILABLE = {"model": ErrorResponse, "description": "domain state not running"}
ERRORS: dict[int | str, dict[str, Any]] = {422: _BAD, 503: _UNAVAILABLE}
ERRORS_404: dict[int | str, dict[str, Any]] = {404: _NOT_FOUND, 422: _BAD, 503: _UNAVAILABLE}


# -- response models (documentation: handlers return JsonResponse) ---------------------------


class GameOut(BaseModel):
    slug: str
    name: str
    game_type: str | None
    provider: str | None
    category: str | None
    game_id: int | str | None
    rounds_kept: int = Field(description="rounds held in memory (the latest ones)")
    rounds_seen: int
    first_seen: int | None
    last_round_at: int | None = Field(description="ms, when the hub accepted the last round")
    last_round_id: str | int | None
    last_result: Any


class GameList(BaseModel):
    games: list[GameOut]


class RoundPageOut(BaseModel):
    game: str
    count: int
    rounds: list[dict[str, Any]] = Field(description="round objects as published, oldest first")
    next: str | None = Field(
        description="pass as cursor= (with the same other parameters) for the next page; "
        "null at the end or when no lower bound was given (latest rounds)"
    )
    source: Literal["memory", "store"]


class StreakOut(BaseModel):
    longest: int
    current: int


class MultiplierOut(BaseModel):
    count: int
    mean: float
    median: float
    min: float
    max: float
    quantiles: dict[str, float] = Field(description="p{q} → value, linear interpolation")
    at_or_above: dict[str, float] = Field(description="threshold → share of rounds >= it")


class StatsWindow(BaseModel):
    last: int | None
    since: int | None
    until: int | None
    since_index: int | None
    until_index: int | None
    source: Literal["memory", "store"]


class StatsOut(BaseModel):
    count: int
    skipped: int
    game_slug: str | None
    game_type: str | None
    first_round_id: Any
    last_round_id: Any
    since: int | None = Field(description="timestamp of the window's first round")
    until: int | None = Field(description="timestamp of the window's last round")
    multiplier: MultiplierOut | None
    streaks: dict[str, StreakOut]
    colors: dict[str, int]
    color_shares: dict[str, float]
    numbers: dict[str, int]
    directions: dict[str, int]
    window: StatsWindow


class PreviousRound(BaseModel):
    round_id: str | int
    linked: bool = Field(description="this round's previous hash is that round's revealed hash")


class VerifyOut(BaseModel):
    round_id: str | int
    game_slug: str | None
    index: int | None
    valid: bool
    computed: Any = Field(description="result recomputed from the revealed seeds")
    published: Any = Field(description="result as published")
    reason: str | None = Field(description="what failed when valid is false")
    previous_round: PreviousRound | None = Field(
        description="hash-chain link to the round played just before, when it is known"
    )


class SportsOut(BaseModel):
    sports: list[dict[str, Any]]


class EventList(BaseModel):
    count: int = Field(description="events matching the filters (before limit)")
    events: list[dict[str, Any]]


class OddsEvents(BaseModel):
    count: int
    events: list[dict[str, Any]]


class ArbitrageList(BaseModel):
    stake: float
    count: int
    arbitrages: list[dict[str, Any]]


class ValueBetList(BaseModel):
    method: Literal["multiplicative", "power"]
    min_edge: float
    count: int
    value_bets: list[dict[str, Any]]


# -- plumbing ---------------------------------------------------------------------------------


async def domain(request: Request) -> DomainFeed:
    """The server's domain feed, once seeded from the store."""
    feed = services(request).extra.get("domain")
    if not isinstance(feed, DomainFeed):
        raise Unavailable("the domain state is not running on this server")
    await feed.ready()
    return feed


Feed = Annotated[DomainFeed, Depends(domain)]
Since = Annotated[int | None, Digits, Query(ge=0, description="round timestamp (ms) after this")]
Until = Annotated[int | None, Digits, Query(ge=0, description="round timestamp (ms) at or before this")]
SinceIndex = Annotated[int | None, Digits, Query(ge=0, description="round index after this")]
UntilIndex = Annotated[int | None, Digits, Query(ge=0, description="round index at or before this")]
Slug = Annotated[str, Path(max_length=100, description="game slug, e.g. crash")]
Text = Annotated[str | None, Query(min_length=1, max_length=100)]
Live = Annotated[bool | None, Query(description="true: live only; false: not live only")]

_CURSOR = re.compile(r"([it])([0-9]{1,18})")


def _require_game(feed: DomainFeed, slug: str, request: Request | None = None) -> None:
    """404 for an unknown game; 403 when the caller's plan does not include it."""
    if feed.state.game(slug) is None:
        raise NotFound(f"unknown game {slug!r}: GET /v1/games lists the games")
    if request is not None:
        services(request).gate.resolve_channel(caller(request), f"game:{slug}")


def _window(
    since: int | None, until: int | None, since_index: int | None, until_index: int | None
) -> RoundFilter:
    if since is not None and until is not None and since > until:
        raise BadParameter(f"since={since} is after until={until}")
    if since_index is not None and until_index is not None and since_index > until_index:
        raise BadParameter(f"since_index={since_index} is after until_index={until_index}")
    return RoundFilter(since, until, since_index, until_index)


def _apply_cursor(window: RoundFilter, cursor: str) -> RoundFilter:
    m = _CURSOR.fullmatch(cursor)
    if m is None:
        raise BadParameter(f"cursor {cursor!r} is not one this server issued (see next)")
    value = int(m.group(2))
    if m.group(1) == "i":
        return RoundFilter(window.since, window.until, value, window.until_index)
    return RoundFilter(value, window.until, window.since_index, window.until_index)


def _cursor_after(r: Round) -> str | None:
    index, ts = r.get("index"), r.get("timestamp")
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return f"i{index}"
    if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0:
        return f"t{ts}"
    return None


def _numbers(raw: str | None, name: str, lo: float, hi: float, *, open_lo: bool) -> list[float]:
    """A comma-separated list of numbers within ``[lo, hi]`` (``(lo, hi]`` with open_lo)."""
    if raw is None:
        return []
    values: list[float] = []
    for part in raw.split(","):
        try:
            value = float(part.strip())
        except ValueError:
            raise BadParameter(f"{name}: {part.strip()!r} is not a number") from None
        if not math.isfinite(value) or value > hi or value < lo or (open_lo and value == lo):
            bound = f"({lo:g}, {hi:g}]" if open_lo else f"[{lo:g}, {hi:g}]"
            raise BadParameter(f"{name}: {part.strip()} is outside {bound}")
        if value not in values:
            values.append(value)
    if len(values) > MAX_LIST_ITEMS:
        raise BadParameter(f"{name}: at most {MAX_LIST_ITEMS} values")
    return values


# -- games and rounds ------------------------------------------------------------------------


@router.get("/games", response_model=GameList, responses=ERRORS,
            summary="Every game seen, with its latest round")  # fmt: skip
async def list_games(feed: Feed) -> Response:
    return JsonResponse({"games": feed.state.games()})


@router.get("/games/{slug}", response_model=GameOut, responses=ERRORS_404,
            summary="One game's summary")  # fmt: skip
async def get_game(request: Request, feed: Feed, slug: Slug) -> Response:
    game = feed.state.game(slug)
    if game is None:
        raise NotFound(f"unknown game {slug!r}: GET /v1/games lists the games")
    return JsonResponse(game)


@router.get(
    "/games/{slug}/rounds",
    response_model=RoundPageOut,
    responses=ERRORS_404,
    summary="Rounds of a game by time or index, paginated",
    description="Without a lower bound (since, since_index, cursor): the latest `limit` rounds "
    "of the window. With one: the first `limit` rounds after it, and `next` to continue.",
)
async def game_rounds(
    request: Request,
    feed: Feed,
    slug: Slug,
    since: Since = None,
    until: Until = None,
    since_index: SinceIndex = None,
    until_index: UntilIndex = None,
    limit: Annotated[int, Digits, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=40, description="`next` of a page")] = None,
) -> Response:
    _require_game(feed, slug, request)
    window = _window(since, until, since_index, until_index)
    if cursor is not None:
        window = _apply_cursor(window, cursor)
    forward = window.bounded_below
    page = await feed.history.page(slug, window, limit, forward=forward)
    following = None
    if forward and page.more and page.rounds:
        following = _cursor_after(page.rounds[-1])
    return JsonResponse({"game": slug, "count": len(page.rounds), "rounds": page.rounds,
                         "next": following, "source": page.source})  # fmt: skip


@router.get(
    "/games/{slug}/stats",
    response_model=StatsOut,
    responses=ERRORS_404,
    summary="Statistics of a game over a window of rounds",
    description="The window is the last `last` rounds (default "
    f"{DEFAULT_STATS_LAST}) within since/until and since_index/until_index; with a lower bound "
    f"and no `last`, every round of the window (at most {MAX_STATS_ROUNDS}).",
)
async def game_statistics(
    request: Request,
    feed: Feed,
    slug: Slug,
    last: Annotated[int | None, Digits, Query(ge=1, le=MAX_STATS_ROUNDS)] = None,
    since: Since = None,
    until: Until = None,
    since_index: SinceIndex = None,
    until_index: UntilIndex = None,
    quantiles: Annotated[str | None, Query(
        max_length=200, description="comma-separated percentiles in [0, 100], e.g. 10,50,90"
    )] = None,
    thresholds: Annotated[str | None, Query(
        max_length=200, description="comma-separated multipliers > 0 for at_or_above, e.g. 2,10"
    )] = None,
    streak: Annotated[float, Query(
        gt=0, le=1e6, allow_inf_nan=False,
        description="multiplier splitting below/at_or_above streaks",
    )] = 2.0,
) -> Response:  # fmt: skip
    _require_game(feed, slug, request)
    window = _window(since, until, since_index, until_index)
    wanted_quantiles = _numbers(quantiles, "quantiles", 0.0, 100.0, open_lo=False)
    wanted_thresholds = _numbers(thresholds, "thresholds", 0.0, 1e6, open_lo=True)
    limit = last if last is not None else (
        MAX_STATS_ROUNDS + 1 if window.bounded_below else DEFAULT_STATS_LAST
    )  # fmt: skip
    page = await feed.history.page(slug, window, limit, forward=False)
    if last is None and len(page.rounds) > MAX_STATS_ROUNDS:
        raise BadParameter(
            f"the window holds more than {MAX_STATS_ROUNDS} rounds: narrow it or pass last="
        )
    options: dict[str, Any] = {"streak_threshold": streak}
    if quantiles is not None:
        options["quantiles"] = wanted_quantiles
    if thresholds is not None:
        options["thresholds"] = wanted_thresholds
    answer = game_stats(page.rounds, **options).to_dict()
    answer["window"] = {"last": last, "since": window.since, "until": window.until,
                        "since_index": window.since_index, "until_index": window.until_index,
                        "source": page.source}  # fmt: skip
    return JsonResponse(answer)


async def _find_round(feed: DomainFeed, round_id: str) -> tuple[str | None, Round]:
    """The round called ``round_id`` (``{slug}-{index}`` or any id kept in memory)."""
    state = feed.state
    slug, dash, tail = round_id.rpartition("-")
    indexed = bool(dash and slug and tail.isascii() and tail.isdigit() and len(tail) <= 18)
    if indexed and state.game(slug) is not None:
        found = state.round(round_id, slug)
        if found is not None:
            return slug, found
    found = state.round(round_id)
    if found is not None:
        game = found.get("game_slug")
        return (game if isinstance(game, str) else None), found
    if indexed and state.game(slug) is not None:
        candidate = await feed.history.by_index(slug, int(tail))
        if candidate is not None and str(candidate.get("round_id")) == round_id:
            return slug, candidate
    raise NotFound(f"unknown round {round_id!r}")


def _seed_fields(fairness: Mapping[str, Any]) -> tuple[Any, Any]:
    """(revealed link, link it must hash to) of a chain or seed style round."""
    if "game_hash" in fairness:
        return fairness.get("game_hash"), fairness.get("previous_hash")
    return fairness.get("server_seed"), fairness.get("server_seed_hash")


async def _previous_link(
    feed: DomainFeed, slug: str | None, data: Round
) -> dict[str, Any] | None:
    """Whether this round's previous hash is the revealed hash of the round before it."""
    fairness, index = data.get("fairness"), data.get("index")
    if slug is None or not isinstance(fairness, Mapping) or not isinstance(index, int):
        return None
    position = fairness.get("chain_index")
    if isinstance(index, bool) or index < 2 or not isinstance(position, int) or position < 2:
        return None  # the first of a chain links to the commitment, checked by verify_round
    before = await feed.history.by_index(slug, index - 1)
    before_fairness = before.get("fairness") if before is not None else None
    if before is None or not isinstance(before_fairness, Mapping):
        return None
    if before_fairness.get("chain") != fairness.get("chain"):
        return None
    revealed, _ = _seed_fields(before_fairness)
    _, expected = _seed_fields(fairness)
    return {"round_id": before.get("round_id"),
            "linked": isinstance(revealed, str) and revealed == expected}  # fmt: skip


@router.get(
    "/rounds/{round_id}/verify",
    response_model=VerifyOut,
    responses=ERRORS_404,
    summary="Recompute a round from its revealed seeds and check its hash chain",
)
async def verify(
    feed: Feed,
    round_id: Annotated[str, Path(max_length=200, description="e.g. crash-17")],
    check_commitment: Annotated[bool, Query(
        description="also walk the chain to its published commitment"
    )] = True,
) -> Response:  # fmt: skip
    slug, data = await _find_round(feed, round_id)
    result = await asyncio.to_thread(verify_round, data, check_commitment=check_commitment)
    index = data.get("index")
    return JsonResponse({
        "round_id": data.get("round_id"),
        "game_slug": slug,
        "index": index if isinstance(index, int) and not isinstance(index, bool) else None,
        "valid": result.valid,
        "computed": result.computed,
        "published": result.published,
        "reason": result.reason,
        "previous_round": await _previous_link(feed, slug, data),
    })  # fmt: skip


# -- sports and odds -------------------------------------------------------------------------


@router.get("/sports", response_model=SportsOut, responses=ERRORS,
            summary="Sports and competitions with event counts")  # fmt: skip
async def list_sports(feed: Feed) -> Response:
    return JsonResponse({"sports": feed.state.sports()})


@router.get("/events", response_model=EventList, responses=ERRORS,
            summary="Current events (Event objects), by start time")  # fmt: skip
async def list_events(
    feed: Feed,
    live: Live = None,
    league: Annotated[str | None, Query(
        min_length=1, max_length=100, description="competition slug, e.g. epl"
    )] = None,
    sport: Annotated[str | None, Query(
        min_length=1, max_length=100, description="sport slug, e.g. football"
    )] = None,
    status: Annotated[str | None, Query(
        min_length=1, max_length=40, description="upcoming, live or finished"
    )] = None,
    limit: Annotated[int | None, Digits, Query(ge=1, le=10_000)] = None,
) -> Response:  # fmt: skip
    events = feed.state.events(live=live, league=league, sport=sport)
    if status is not None:
        events = [e for e in events if e.get("status") == status]
    shown = events if limit is None else events[:limit]
    return JsonResponse({"count": len(events), "events": shown})


@router.get("/events/{event_id}", response_model=dict[str, Any], responses=ERRORS_404,
            summary="One event's latest Event object")  # fmt: skip
async def get_event(
    feed: Feed, event_id: Annotated[str, Path(max_length=200)]
) -> Response:
    found = feed.state.event(event_id)
    if found is None:
        raise NotFound(f"unknown event {event_id!r}")
    return JsonResponse(found)


def event_filters(
    event: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    sport: Text = None,
    competition: Text = None,
    live: Live = None,
) -> EventSelector:
    """The query parameters every odds route takes: which events the answer covers."""
    return EventSelector(event, sport, competition, live)


Events = Annotated[EventSelector, Depends(event_filters)]


def _selector(feed: DomainFeed, events: EventSelector, *, include_finished: bool) -> EventSelector:
    event = events.event
    if event is not None and feed.state.event(event) is None and feed.state.odds(event) is None:
        raise NotFound(f"unknown event {event!r}")
    return replace(events, include_finished=include_finished)


def _odds_answer(
    feed: DomainFeed, events: EventSelector, markets: Callable[[str], list[Any] | None]
) -> Response:
    """Each selected event with its ``markets``; one without (None) only when asked by id."""
    found = []
    for event_id in selected_events(feed.state, _selector(feed, events, include_finished=True)):
        found_markets = markets(event_id)
        if found_markets is not None or events.event is not None:
            found.append({**event_header(feed.state, event_id), "markets": found_markets or []})
    return JsonResponse({"count": len(found), "events": found})


@router.get(
    "/odds",
    response_model=OddsEvents,
    responses=ERRORS_404,
    summary="Every bookmaker's current price, per event, market and selection",
)
async def odds(feed: Feed, events: Events) -> Response:
    def markets(event_id: str) -> list[Any] | None:
        prices = feed.state.odds(event_id)
        return None if prices is None else list(prices["markets"])

    return _odds_answer(feed, events, markets)


@router.get(
    "/odds/best",
    response_model=OddsEvents,
    responses=ERRORS_404,
    summary="Best takeable price per selection, implied sum and arbitrage flag per market",
)
async def best_odds(feed: Feed, events: Events) -> Response:
    def markets(event_id: str) -> list[Any] | None:
        return [best_market(mb) for mb in market_books(feed.state, event_id)] or None

    return _odds_answer(feed, events, markets)


@router.get(
    "/arbitrage",
    response_model=ArbitrageList,
    responses=ERRORS_404,
    summary="Every current arbitrage across live and upcoming events",
)
async def arbitrage(
    feed: Feed,
    events: Events,
    stake: Annotated[float, Query(gt=0, le=1e9, allow_inf_nan=False,
                                  description="total stake split across the legs")] = 100.0,
) -> Response:  # fmt: skip
    selector = _selector(feed, events, include_finished=False)
    found = arbitrages(feed.state, selector, stake)
    return JsonResponse({"stake": stake, "count": len(found), "arbitrages": found})


@router.get(
    "/value-bets",
    response_model=ValueBetList,
    responses=ERRORS_404,
    summary="Best prices above their de-vigged fair value, across live and upcoming events",
)
async def value_bets(
    feed: Feed,
    events: Events,
    min_edge: Annotated[float, Query(ge=0, le=10, allow_inf_nan=False,
                                     description="expected value per unit, 0.02 = 2%")] = 0.0,
    method: Annotated[Literal["multiplicative", "power"], Query(
        description="how the margin is removed from each book")] = "multiplicative",
    reference: Annotated[str | None, Query(
        min_length=1, max_length=100,
        description="bookmaker whose de-vigged book is the fair value (default: consensus)")
    ] = None,
) -> Response:  # fmt: skip
    selector = _selector(feed, events, include_finished=False)
    if reference is not None and not any(
        reference in books
        for event_id in feed.state.event_ids()
        for books in feed.state.books(event_id).values()
    ):
        raise BadParameter(f"reference bookmaker {reference!r} has no current prices")
    found = value_bet_list(
        feed.state, selector, min_edge=min_edge, method=method, reference=reference
    )
    return JsonResponse({"method": method, "min_edge": min_edge, "count": len(found),
                         "value_bets": found})  # fmt: skip


# -- feature ---------------------------------------------------------------------------------


def domain_feature(settings: Settings | None = None, hub: Hub | None = None) -> Feature:
    """The domain REST router and the start hook that feeds (and seeds) its snapshot."""
    feed = DomainFeed()
    return Feature(routers=[router], on_start=[feed.install])
