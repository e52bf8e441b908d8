"""A deterministic sports simulator: fixtures, live scores and odds from several bookmakers.

The demo and the tests need sports data that behaves like a real feed (events that go
upcoming → live → finished, scores by period, prices that move, markets that suspend around
goals, books that disagree enough for the odd arbitrage) without a network or a clock. Each
event has a hidden true probability per selection, computed from the score, the time left and a
team strength that drifts while the game is played; each bookmaker prices it with its own
margin and its own slowly wandering opinion, rounded down to three decimals.

:meth:`SportsSimulator.step` is pure in the sense that matters: given the seed and the sequence
of ``now_ms`` values it always returns the same messages. :meth:`SportsSimulator.run` only
drives it from the wall clock and hands the messages to a publisher.

Channels: the full Event object on ``sports:event:{event_id}`` (attrs ``sport``,
``competition``, ``event``, ``live``) whenever the event changed, and one OddsUpdate per
selection price change on ``odds:{sport}:{competition}`` (attrs ``sport``, ``competition``,
``bookmaker``, ``event``, ``market``). OddsUpdate carries the OddsStream fields (``bookmaker``,
``match_name``, ``competition``, ``sport``, ``market_type``, ``selection``, ``odds``,
``period``, ``is_live``, ``scraped_at``) plus ``event_id``, ``market_id``, ``selection_id``,
``line`` and ``suspended``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from wagerwire.errors import WagerwireError
from wagerwire.sources.base import Publisher
from wagerwire.sources.sports_catalog import (
    BOOKMAKERS,
    SPORTS,
    Bookmaker,
    Competition,
    SportsConfig,
    SportSpec,
)
from wagerwire.sources.sports_odds import (
    MAX_ODDS,
    MIN_ODDS,
    PLAY_MEAN,
    PLAY_POINTS,
    PLAY_SQUARE,
    PLAY_WEIGHTS,
    Outlook,
    floor_price,
    match_dist,
    period_total_above,
    phi,
    poisson,
    set_over,
)
from wagerwire.types import now_ms

__all__ = [
    "BOOKMAKERS",
    "SPORTS",
    "Bookmaker",
    "Competition",
    "Outgoing",
    "SportSpec",
    "SportsConfig",
    "SportsSimulator",
]

Outgoing = tuple[str, dict[str, Any], dict[str, str]]
"""``(channel, data, attrs)``: one message for the publisher."""


logger = logging.getLogger("wagerwire.sources.sports")


# ---------------------------------------------------------------------------------------------
# Event state


@dataclass(slots=True)
class _Market:
    market_id: str
    market_type: str
    name: str
    line: float | None
    selections: list[tuple[str, str]]
    true: list[float] = field(default_factory=list)
    closed: bool = False
    margins: dict[str, float] = field(default_factory=dict)
    noise: dict[str, list[float]] = field(default_factory=dict)
    prices: dict[str, list[float]] = field(default_factory=dict)
    unpriceable: dict[str, bool] = field(default_factory=dict)
    published: dict[tuple[str, int], tuple[float, bool]] = field(default_factory=dict)
    period: int = 0  # 0 the whole game, 1 the first half/quarter/period/set


@dataclass(slots=True)
class _Event:
    event_id: str
    sport: SportSpec
    competition: Competition
    home: str
    away: str
    starts_at: int
    strength: float
    pace: float
    status: str = "upcoming"
    period: int = 0
    clock: float = 0.0
    period_scores: list[list[int]] = field(default_factory=list)
    sets: list[int] = field(default_factory=lambda: [0, 0])
    suspended_until: int = 0
    reprice_all: bool = False
    book_suspended_until: dict[str, int] = field(default_factory=dict)
    finished_at: int | None = None
    markets: list[_Market] = field(default_factory=list)
    seq: int = 0
    updated_at: int = 0

    @property
    def score(self) -> tuple[int, int]:
        if self.sport.kind == "sets":
            return self.sets[0], self.sets[1]
        return sum(p[0] for p in self.period_scores), sum(p[1] for p in self.period_scores)

    @property
    def name(self) -> str:
        return f"{self.home} - {self.away}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    n = abs(n)
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out




# ---------------------------------------------------------------------------------------------
# The simulator


class SportsSimulator:
    """Seeded simulation of a rolling set of events; feed it times, publish what it returns."""

    def __init__(
        self,
        config: SportsConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config or SportsConfig()
        self._read_clock = clock or now_ms
        self._sleep = sleep or asyncio.sleep
        self._rng = random.Random(self.config.seed)
        self._period_rng = random.Random(f"period-markets:{self.config.seed}")
        self._events: list[_Event] = []
        self._now: int | None = None
        self._prefix = ""
        self._counter = 0

    # -- public -------------------------------------------------------------------------------

    def step(self, now_ms: int) -> list[Outgoing]:
        """Advance the world to ``now_ms`` and return the messages to publish, in order.

        Time never runs backwards here: a ``now_ms`` earlier than the previous one is treated
        as no time passing.
        """
        if self._now is None:
            self._prefix = self.config.id_prefix or _base36(now_ms // 1000)
            self._now = now_ms
            self._spawn(now_ms, initial=True)
        dt = max(0, now_ms - self._now)
        now = self._now = max(self._now, now_ms)
        out: list[Outgoing] = []
        for event in self._events:
            changed = self._advance(event, now, dt)
            changed |= self._reprice(event, now)
            odds = self._odds_updates(event, now)
            if changed or odds:
                event.seq += 1
                event.updated_at = now
                out.extend(odds)
                out.append(self._event_message(event, now))
        linger = self.config.linger_ms
        self._events = [
            e for e in self._events if e.finished_at is None or now - e.finished_at < linger
        ]
        self._spawn(now, initial=False)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        """The current Event object of every event still kept (for an initial REST image)."""
        now = self._now or 0
        return [self._event_data(e, now) for e in self._events]

    async def run(self, publisher: Publisher) -> None:
        """Publish :meth:`step` output every ``interval_ms`` until cancelled.

        A refused publish is logged and skipped: prices and event snapshots supersede each
        other, so the next change brings subscribers up to date.
        """
        interval = self.config.interval_ms
        while True:
            started = self._read_clock()
            for channel, data, attrs in self.step(started):
                try:
                    await publisher.publish(channel, data, attrs=attrs)
                except WagerwireError as exc:
                    logger.warning("publish to %s refused (%s)", channel, exc.code)
            elapsed = self._read_clock() - started
            await self._sleep(max(0, interval - elapsed) / 1000.0)

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, now: int, *, initial: bool) -> None:
        cfg = self.config
        alive = sum(1 for e in self._events if e.status != "finished")
        lo, hi = cfg.start_delay_ms
        for i in range(cfg.max_events - alive):
            if initial:  # stagger the first batch so play starts almost at once
                delay = 3_000 + (hi * i) // cfg.max_events + self._rng.randint(0, 2_000)
            else:
                delay = self._rng.randint(lo, hi)
            self._events.append(self._new_event(now + delay))

    def _new_event(self, starts_at: int) -> _Event:
        rng = self._rng
        sport = rng.choice(self.config.sports)
        competition = rng.choice(sport.competitions)
        home, away = rng.sample(competition.teams, 2)
        self._counter += 1
        lo, hi = sport.scoring
        if sport.kind == "goals":
            strength = rng.gauss(0.2, 0.45)  # log ratio of home to away scoring rate
        elif sport.kind == "points":
            strength = rng.gauss(3.0, 8.0)  # expected home margin in points
        else:
            strength = min(0.68, max(0.32, rng.gauss(0.5, 0.07)))  # P(home wins a game)
        event = _Event(
            event_id=f"{self._prefix}-{self._counter}",
            sport=sport,
            competition=competition,
            home=home,
            away=away,
            starts_at=starts_at,
            strength=strength,
            pace=rng.uniform(lo, hi),
        )
        self._build_markets(event)
        return event

    def _build_markets(self, event: _Event) -> None:
        outlook = self._outlook(event)
        kind = event.sport.kind
        expected_total, expected_margin = self._expectations(event)
        total = math.floor(expected_total) + 0.5
        handicap = -(math.floor(expected_margin) + 0.5)
        unit = "games" if kind == "sets" else ""
        markets: list[_Market] = []
        if kind == "goals":
            markets.append(
                _Market(
                    "1x2",
                    "1x2",
                    "Match result",
                    None,
                    [("home", event.home), ("draw", "Draw"), ("away", event.away)],
                )
            )
        else:
            markets.append(
                _Market(
                    "moneyline",
                    "moneyline",
                    "Moneyline",
                    None,
                    [("home", event.home), ("away", event.away)],
                )
            )
        markets.append(
            _Market(
                f"total:{total:g}",
                "total",
                f"Total {unit}{' ' if unit else ''}{total:g}",
                total,
                [("over", f"Over {total:g}"), ("under", f"Under {total:g}")],
            )
        )
        markets.append(
            _Market(
                f"spread:{handicap:+g}",
                "spread",
                f"Handicap {handicap:+g}",
                handicap,
                [("home", f"{event.home} {handicap:+g}"), ("away", f"{event.away} {-handicap:+g}")],
            )
        )
        first = self._first_period_market(event, expected_total)
        lo, hi = self.config.margin_range
        for market in [*markets, first]:
            rng = self._rng_for(market)
            for book in self.config.bookmakers:
                jitter = rng.uniform(-0.005, 0.005)
                market.margins[book.slug] = min(hi - 0.005, max(lo + 0.002, book.margin + jitter))
                market.noise[book.slug] = [rng.gauss(0.0, 0.02) for _ in market.selections]
        event.markets = [*markets, first]
        self._set_truth(event, outlook)

    def _first_period_market(self, event: _Event, expected_total: float) -> _Market:
        """The first period's total (half, quarter, period or set: OddsStream ``period`` 1)."""
        sport = event.sport
        if sport.kind == "sets":
            line, what = 9.5, "1st set games"
        else:
            line = math.floor(expected_total / sport.periods) + 0.5
            what = {"football": "1st half"}.get(sport.slug) or (
                "1st quarter" if sport.kind == "points" else "1st period")
        return _Market(f"total:p1:{line:g}", "total", f"{what} total {line:g}", line,
                       [("over", f"Over {line:g}"), ("under", f"Under {line:g}")], period=1)

    def _rng_for(self, market: _Market) -> random.Random:
        """Period markets draw from their own generator, so adding them left every
        whole-game price (and everything else the seed decides) exactly as it was."""
        return self._period_rng if market.period else self._rng

    def _first_period_total(self, event: _Event) -> Callable[[float], float]:
        sport = event.sport
        first = event.period_scores[0] if event.period_scores else [0, 0]
        over = event.status == "finished" or event.period > 1
        if sport.kind == "sets":
            if over:
                return period_total_above("goals", first[0] + first[1], 0.0, 0.0)
            return period_total_above("sets", 0, 0.0, 0.0, round(event.strength * 1000),
                                      (first[0], first[1]))
        if over:
            remaining = 0.0
        elif event.status == "upcoming":
            remaining = float(sport.period_seconds)
        else:
            remaining = self._period_length(event) - event.clock
        rate_home, rate_away = self._rates(event)
        return period_total_above(sport.kind, first[0] + first[1], rate_home + rate_away,
                                  remaining)

    def _expectations(self, event: _Event) -> tuple[float, float]:
        """Expected final total and home margin before the start (used to pick the lines)."""
        if event.sport.kind == "sets":
            p_milli = round(event.strength * 1000)
            dist = match_dist(p_milli, 0, 0, 0, 0)
            total = math.fsum((h + a) * q for h, a, _, q in dist)
            margin = math.fsum((h - a) * q for h, a, _, q in dist)
            return total, margin
        if event.sport.kind == "points":
            return event.pace, event.strength
        share = 1.0 / (1.0 + math.exp(-event.strength))
        return event.pace, event.pace * (2.0 * share - 1.0)

    # -- play ---------------------------------------------------------------------------------

    def _advance(self, event: _Event, now: int, dt: int) -> bool:
        """Move the event's clock and score forward; True if anything visible changed."""
        if event.status == "finished":
            return False
        started = False
        if event.status == "upcoming":
            if now < event.starts_at:
                return False
            event.status, event.period, event.clock = "live", 1, 0.0
            event.period_scores = [[0, 0]]
            self._suspend(event, now)
            dt, started = now - event.starts_at, True
        game_seconds = dt / 1000.0 * self.config.time_scale
        if game_seconds <= 0:
            return started
        left = game_seconds
        while left > 1e-9 and event.status == "live":
            left -= self._play(event, min(left, 10.0), now)
        drift = 0.01 if event.sport.kind != "points" else 0.3
        event.strength += self._rng.gauss(0.0, drift * math.sqrt(game_seconds / 60.0))
        if event.sport.kind == "sets":
            event.strength = min(0.75, max(0.25, event.strength))
        return True

    def _play(self, event: _Event, seconds: float, now: int) -> float:
        """Play up to ``seconds`` of game time (stopping at the end of a period); return it."""
        kind = event.sport.kind
        if kind == "sets":
            self._play_tennis(event, seconds, now)
            return seconds
        length = self._period_length(event)
        seconds = min(seconds, length - event.clock)
        rate_home, rate_away = self._rates(event)
        scored = False
        for side, rate in ((0, rate_home), (1, rate_away)):
            for _ in range(self._poisson_draw(rate * seconds)):
                points = 1 if kind == "goals" else self._rng.choices(PLAY_POINTS, PLAY_WEIGHTS)[0]
                event.period_scores[-1][side] += points
                scored = True
        if scored and kind == "goals":
            self._suspend(event, now)
        event.clock += seconds
        if event.clock >= length - 1e-9:
            self._end_period(event, now)
        return seconds

    def _end_period(self, event: _Event, now: int) -> None:
        home, away = event.score
        sport = event.sport
        if event.period < sport.periods or (sport.kind == "points" and home == away):
            event.period += 1
            event.clock = 0.0
            event.period_scores.append([0, 0])
            if sport.kind == "points":
                self._suspend(event, now)
            return
        if sport.slug == "ice-hockey" and home == away:  # shoot-out decides it
            share = 1.0 / (1.0 + math.exp(-event.strength))
            winner = 0 if self._rng.random() < share else 1
            shootout = [0, 0]
            shootout[winner] = 1
            event.period += 1
            event.period_scores.append(shootout)
        self._finish(event, now)

    def _play_tennis(self, event: _Event, seconds: float, now: int) -> None:
        event.clock += seconds
        while event.clock >= event.pace and event.status == "live":
            event.clock -= event.pace
            games = event.period_scores[-1]
            games[0 if self._rng.random() < event.strength else 1] += 1
            gh, ga = games
            if set_over(gh, ga):
                event.sets[0 if gh > ga else 1] += 1
                self._suspend(event, now)
                if max(event.sets) == 2:
                    self._finish(event, now)
                else:
                    event.period += 1
                    event.period_scores.append([0, 0])

    def _suspend(self, event: _Event, now: int) -> None:
        """Suspend every market (goal, kick-off, break); all books reprice when it lifts."""
        event.suspended_until = now + self.config.suspend_ms
        event.reprice_all = True

    def _finish(self, event: _Event, now: int) -> None:
        event.status = "finished"
        event.finished_at = now
        for market in event.markets:
            market.closed = True

    def _period_length(self, event: _Event) -> float:
        sport = event.sport
        if event.period <= sport.periods:
            return float(sport.period_seconds)
        return 300.0  # basketball overtime

    def _rates(self, event: _Event) -> tuple[float, float]:
        """Scoring events per game-second for home and away."""
        regulation = event.sport.periods * event.sport.period_seconds
        if event.sport.kind == "goals":
            share = 1.0 / (1.0 + math.exp(-event.strength))
            return event.pace * share / regulation, event.pace * (1.0 - share) / regulation
        home = max(1.0, (event.pace + event.strength) / 2.0)
        away = max(1.0, (event.pace - event.strength) / 2.0)
        return home / PLAY_MEAN / regulation, away / PLAY_MEAN / regulation

    def _poisson_draw(self, lam: float) -> int:
        threshold, k, product = math.exp(-lam), 0, self._rng.random()
        while product > threshold:
            k += 1
            product *= self._rng.random()
        return k

    # -- pricing ------------------------------------------------------------------------------

    def _remaining_seconds(self, event: _Event) -> float:
        sport = event.sport
        if event.status == "upcoming":
            return float(sport.periods * sport.period_seconds)
        left = self._period_length(event) - event.clock
        return left + max(0, sport.periods - event.period) * sport.period_seconds

    def _outlook(self, event: _Event) -> Outlook:
        home, away = event.score
        kind = event.sport.kind
        if kind == "sets":
            gh, ga = event.period_scores[-1] if event.period_scores else (0, 0)
            dist = match_dist(round(event.strength * 1000), event.sets[0], event.sets[1], gh, ga)
            played = sum(sum(p) for p in event.period_scores[:-1])
            p_home = math.fsum(q for _, _, w, q in dist if w)
            games_h = sum(p[0] for p in event.period_scores[:-1]) + gh
            games_a = sum(p[1] for p in event.period_scores[:-1]) + ga
            return Outlook(
                p_home,
                0.0,
                1.0 - p_home,
                lambda x: math.fsum(q for h, a, _, q in dist if games_h + h - games_a - a > x),
                lambda y: math.fsum(q for h, a, _, q in dist if played + gh + ga + h + a > y),
            )
        remaining = self._remaining_seconds(event)
        rate_home, rate_away = self._rates(event)
        if kind == "goals":
            limit = 16
            ph = poisson(rate_home * remaining, limit)
            pa = poisson(rate_away * remaining, limit)
            cells = [
                (home + i, away + j, ph[i] * pa[j]) for i in range(limit) for j in range(limit)
            ]
            win = math.fsum(q for h, a, q in cells if h > a)
            draw = math.fsum(q for h, a, q in cells if h == a)
            return Outlook(
                win,
                draw,
                max(0.0, 1.0 - win - draw),
                lambda x: math.fsum(q for h, a, q in cells if h - a > x),
                lambda y: math.fsum(q for h, a, q in cells if h + a > y),
            )
        # compound Poisson: mean rate·E[points]·t, variance rate·E[points²]·t per team
        mean_margin = home - away + (rate_home - rate_away) * PLAY_MEAN * remaining
        mean_total = home + away + (rate_home + rate_away) * PLAY_MEAN * remaining
        sd = max(1e-6, math.sqrt((rate_home + rate_away) * PLAY_SQUARE * remaining))
        win = 1.0 - phi((0.0 - mean_margin) / sd)
        return Outlook(
            win,
            0.0,
            1.0 - win,
            lambda x: 1.0 - phi((x - mean_margin) / sd),
            lambda y: 1.0 - phi((y - mean_total) / sd),
        )

    def _set_truth(self, event: _Event, outlook: Outlook) -> None:
        for market in event.markets:
            if market.market_type == "1x2":
                market.true = [outlook.home, outlook.draw, outlook.away]
            elif market.market_type == "moneyline":
                market.true = [outlook.home, outlook.away]
            elif market.period == 1:
                over = self._first_period_total(event)(market.line or 0.0)
                market.true = [over, 1.0 - over]
            elif market.market_type == "total":
                over = outlook.total_above(market.line or 0.0)
                market.true = [over, 1.0 - over]
            else:
                cover = outlook.margin_above(-(market.line or 0.0))
                market.true = [cover, 1.0 - cover]
            market.closed = max(market.true) > 0.88 or min(market.true) < 0.004

    def _reprice(self, event: _Event, now: int) -> bool:
        """Update the truth and let each bookmaker maybe move its prices; True if any moved."""
        if event.status == "finished":
            return False
        self._set_truth(event, self._outlook(event))
        for book in self.config.bookmakers:
            if self._rng.random() < self.config.book_suspend_chance:
                event.book_suspended_until[book.slug] = now + self.config.suspend_ms // 2
        halted = now < event.suspended_until
        force = event.reprice_all and not halted
        if force:
            event.reprice_all = False
        chance = (
            self.config.live_update_chance
            if event.status == "live"
            else self.config.prematch_update_chance
        )
        moved = False
        for market in event.markets:
            rng = self._rng_for(market)
            for book in self.config.bookmakers:
                if book.slug not in market.prices:  # every book prices every market at once
                    moved |= self._price_book(market, book.slug, first=True)
                elif halted or market.closed:
                    continue
                elif force or self._drifted(market, book.slug) or rng.random() < chance:
                    moved |= self._price_book(market, book.slug, first=False)
        return moved

    def _drifted(self, market: _Market, book: str) -> bool:
        """True when the book's de-vigged prices are further from the truth than it tolerates."""
        implied = [1.0 / d for d in market.prices[book]]
        total = math.fsum(implied)
        tolerance = self.config.reprice_tolerance
        return any(
            abs(q / total - p) > tolerance for q, p in zip(implied, market.true, strict=True)
        )

    def _price_book(self, market: _Market, book: str, first: bool) -> bool:
        noise = market.noise[book]
        if not first:
            rng = self._rng_for(market)
            for i, eps in enumerate(noise):
                noise[i] = min(0.08, max(-0.08, 0.9 * eps + rng.gauss(0.0, 0.01)))
        weights = [p * math.exp(eps) for p, eps in zip(market.true, noise, strict=True)]
        total = math.fsum(weights)
        scale = (1.0 + market.margins[book]) / total
        prices = [floor_price(1.0 / (w * scale)) if w > 0 else MAX_ODDS for w in weights]
        if any(not MIN_ODDS <= d <= MAX_ODDS for d in prices):
            market.unpriceable[book] = True
            if first:  # never leave a book without prices; they start suspended
                market.prices[book] = [min(MAX_ODDS, max(MIN_ODDS, d)) for d in prices]
            return False
        market.unpriceable[book] = False
        if market.prices.get(book) == prices:
            return False
        market.prices[book] = prices
        return True

    def _price_suspended(self, event: _Event, market: _Market, book: str, now: int) -> bool:
        return (
            event.status == "finished"
            or market.closed
            or now < event.suspended_until
            or now < event.book_suspended_until.get(book, 0)
            or market.unpriceable.get(book, False)
        )

    # -- messages -----------------------------------------------------------------------------

    def _odds_updates(self, event: _Event, now: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        sport, comp = event.sport.slug, event.competition.slug
        channel = f"odds:{sport}:{comp}"
        for market in event.markets:
            for book in self.config.bookmakers:
                prices = market.prices.get(book.slug)
                if prices is None:
                    continue
                suspended = self._price_suspended(event, market, book.slug, now)
                for i, (selection_id, selection) in enumerate(market.selections):
                    state = (prices[i], suspended)
                    if market.published.get((book.slug, i)) == state:
                        continue
                    market.published[(book.slug, i)] = state
                    data = {
                        "bookmaker": book.slug,
                        "match_name": event.name,
                        "competition": comp,
                        "sport": sport,
                        "market_type": market.market_type,
                        "selection": selection,
                        "odds": prices[i],
                        "period": market.period,
                        "is_live": event.status == "live",
                        "scraped_at": _iso(now),
                        "event_id": event.event_id,
                        "market_id": market.market_id,
                        "selection_id": selection_id,
                        "line": market.line,
                        "suspended": suspended,
                    }
                    attrs = {
                        "sport": sport,
                        "competition": comp,
                        "bookmaker": book.slug,
                        "event": event.event_id,
                        "market": market.market_id,
                    }
                    out.append((channel, data, attrs))
        return out

    def _event_message(self, event: _Event, now: int) -> Outgoing:
        attrs = {
            "sport": event.sport.slug,
            "competition": event.competition.slug,
            "event": event.event_id,
            "live": "true" if event.status == "live" else "false",
        }
        return f"sports:event:{event.event_id}", self._event_data(event, now), attrs

    def _period_name(self, event: _Event) -> str | None:
        sport, n = event.sport, event.period
        if n == 0:
            return None
        if sport.kind == "sets":
            return f"Set {n}"
        if n > sport.periods:
            return "SO" if sport.slug == "ice-hockey" else f"OT{n - sport.periods}"
        if sport.slug == "football":
            return "1st half" if n == 1 else "2nd half"
        return f"Q{n}" if sport.kind == "points" else f"P{n}"

    def _clock_text(self, event: _Event) -> str | None:
        if event.status != "live" or event.sport.kind == "sets":
            return None
        if event.sport.slug == "football":  # counts up over the whole match
            elapsed = int((event.period - 1) * event.sport.period_seconds + event.clock)
        else:  # counts down within the period
            elapsed = int(math.ceil(self._period_length(event) - event.clock))
        return f"{elapsed // 60:02d}:{elapsed % 60:02d}"

    def _market_data(self, event: _Event, market: _Market, now: int) -> dict[str, Any]:
        selections = []
        for i, (selection_id, name) in enumerate(market.selections):
            prices = {
                book: {
                    "odds": values[i],
                    "suspended": self._price_suspended(event, market, book, now),
                }
                for book, values in market.prices.items()
            }
            selections.append({"selection_id": selection_id, "name": name, "prices": prices})
        return {
            "market_id": market.market_id,
            "market_type": market.market_type,
            "name": market.name,
            "period": market.period,
            "line": market.line,
            "suspended": event.status == "finished" or market.closed or now < event.suspended_until,
            "selections": selections,
        }

    def _event_data(self, event: _Event, now: int) -> dict[str, Any]:
        home, away = event.score
        return {
            "event_id": event.event_id,
            "sport": event.sport.slug,
            "sport_name": event.sport.name,
            "competition": event.competition.slug,
            "competition_name": event.competition.name,
            "league": event.competition.slug,
            "name": event.name,
            "participants": {
                "home": {"name": event.home},
                "away": {"name": event.away},
            },
            "starts_at": _iso(event.starts_at),
            "starts_at_ms": event.starts_at,
            "status": event.status,
            "live": event.status == "live",
            "period": event.period or None,
            "period_name": self._period_name(event),
            "clock": self._clock_text(event),
            "score": {"home": home, "away": away},
            "period_scores": [
                {"period": i + 1, "home": h, "away": a}
                for i, (h, a) in enumerate(event.period_scores)
            ],
            "markets": [self._market_data(event, m, now) for m in event.markets],
            "updated_at": event.updated_at,
            "seq": event.seq,
        }
