"""Odds questions across the current snapshot: best prices, arbitrages and value bets.

Every answer is built from :meth:`DomainState.books` (takeable prices only: suspended ones left
out) restricted to a market's full selection set, which is taken from the event's own market
description when the event was seen, else from every selection ever priced. A market is
*complete* when each of its selections (at least two) has a takeable price; margins,
arbitrages and fair values exist only for complete markets. Best prices, implied sums and
arbitrages all come from :func:`wagerwire.analytics.odds.best_prices`, so an arbitrage is
reported exactly when the best prices' implied sum is below 1.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from wagerwire.analytics.odds import (
    DevigMethod,
    best_prices,
    find_arbitrage,
    implied_sum,
    value_bets,
)
from wagerwire.domain.state import DomainState

__all__ = [
    "FINISHED_STATUSES",
    "EventSelector",
    "MarketBooks",
    "arbitrages",
    "best_market",
    "event_header",
    "is_open",
    "market_books",
    "selected_events",
    "value_bet_list",
]

FINISHED_STATUSES = frozenset({"finished", "ended", "final", "closed", "cancelled", "canceled"})
"""Event statuses after which nothing can be bet (their markets are skipped)."""


@dataclass(frozen=True, slots=True)
class MarketBooks:
    """One market of one event: description, full selection set and takeable books."""

    event_id: str
    market: Mapping[str, Any]  # market_id, market_type, line, period
    selections: dict[str, str]  # selection_id → display name, in market order
    books: dict[str, dict[str, float]]  # bookmaker → selection_id → decimal odds

    @property
    def complete(self) -> bool:
        best = self.best()
        return len(self.selections) >= 2 and all(s in best for s in self.selections)

    def best(self) -> dict[str, Any]:
        return best_prices(self.books) if self.books else {}


@dataclass(frozen=True, slots=True)
class EventSelector:
    """Which events an odds question covers (every given filter must hold)."""

    event: str | None = None
    sport: str | None = None
    competition: str | None = None
    live: bool | None = None
    include_finished: bool = True


def event_header(state: DomainState, event_id: str) -> dict[str, Any]:
    """Identity of an event for odds answers: id, name, sport, competition, status, live."""
    data = state.event(event_id) or {}
    sport, competition = state.event_tags(event_id)
    return {
        "event_id": event_id,
        "name": data.get("name"),
        "sport": sport,
        "competition": competition,
        "status": data.get("status"),
        "live": data.get("live") is True or data.get("status") == "live",
    }


def is_open(state: DomainState, event_id: str) -> bool:
    """Live or upcoming (or of unknown status): not finished."""
    data = state.event(event_id)
    return data is None or data.get("status") not in FINISHED_STATUSES


def selected_events(state: DomainState, selector: EventSelector) -> list[str]:
    """Ids of the events matching ``selector`` that have prices, in a stable order."""
    ids = [selector.event] if selector.event is not None else sorted(state.event_ids())
    chosen = []
    for event_id in ids:
        head = event_header(state, event_id)
        if selector.sport is not None and (head["sport"] or "").lower() != selector.sport.lower():
            continue
        if selector.competition is not None and (
            (head["competition"] or "").lower() != selector.competition.lower()
        ):
            continue
        if selector.live is not None and head["live"] != selector.live:
            continue
        if not selector.include_finished and not is_open(state, event_id):
            continue
        chosen.append(event_id)
    return chosen


def _declared(event: Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """market_id → selection_id → name, from an Event object's own market list."""
    found: dict[str, dict[str, str]] = {}
    markets = event.get("markets") if event is not None else None
    if not isinstance(markets, list):
        return found
    for market in markets:
        if not isinstance(market, Mapping) or not isinstance(market.get("selections"), list):
            continue
        names: dict[str, str] = {}
        for s in market["selections"]:
            if isinstance(s, Mapping):
                key = s.get("selection_id") or s.get("name")
                if isinstance(key, str | int) and not isinstance(key, bool):
                    names[str(key)] = str(s.get("name") or key)
        if names:
            found[str(market.get("market_id"))] = names
    return found


def market_books(state: DomainState, event_id: str) -> list[MarketBooks]:
    """Every priced market of ``event_id`` with its takeable books."""
    odds = state.odds(event_id)
    if odds is None:
        return []
    books = state.books(event_id)
    declared = _declared(state.event(event_id))
    answer = []
    for market in odds["markets"]:
        market_id = market["market_id"]
        seen = {s["selection_id"]: s["selection"] for s in market["selections"]}
        selections = declared.get(market_id) or seen
        wanted = set(selections)
        market_prices = {
            book: {s: d for s, d in prices.items() if s in wanted}
            for book, prices in books.get(market_id, {}).items()
        }
        answer.append(MarketBooks(
            event_id,
            {k: market[k] for k in ("market_id", "market_type", "line", "period")},
            dict(selections),
            {book: prices for book, prices in market_prices.items() if prices},
        ))  # fmt: skip
    return answer


def best_market(mb: MarketBooks) -> dict[str, Any]:
    """Best price per selection of one market, its implied sum and whether it is an arbitrage."""
    best = mb.best()
    selections = []
    for selection_id, name in mb.selections.items():
        price = best.get(selection_id)
        selections.append({
            "selection_id": selection_id,
            "selection": name,
            "odds": None if price is None else price.odds,
            "bookmakers": [] if price is None else list(price.bookmakers),
            "implied_probability": None if price is None else 1.0 / price.odds,
        })  # fmt: skip
    complete = len(mb.selections) >= 2 and all(s in best for s in mb.selections)
    total = implied_sum([best[s].odds for s in mb.selections]) if complete else None
    return {
        **mb.market,
        "selections": selections,
        "bookmakers": sorted(mb.books),
        "complete": complete,
        "implied_sum": total,
        "margin": None if total is None else total - 1.0,
        "arbitrage": total is not None and total < 1.0,
    }


def _markets(state: DomainState, selector: EventSelector) -> Iterator[tuple[str, MarketBooks]]:
    for event_id in selected_events(state, selector):
        for mb in market_books(state, event_id):
            if mb.complete:
                yield event_id, mb


def arbitrages(
    state: DomainState, selector: EventSelector, stake: float
) -> list[dict[str, Any]]:
    """Every current arbitrage of the selected events, the most profitable first."""
    found = []
    for event_id, mb in _markets(state, selector):
        arb = find_arbitrage(mb.books, stake)
        if arb is None:
            continue
        found.append({
            **event_header(state, event_id),
            **mb.market,
            "implied_sum": arb.implied_sum,
            "stake": arb.total_stake,
            "payout": arb.payout,
            "profit": arb.profit,
            "profit_pct": arb.profit_pct,
            "legs": [
                {"selection_id": leg.selection, "selection": mb.selections[leg.selection],
                 "bookmaker": leg.bookmaker, "odds": leg.odds, "stake": leg.stake,
                 "payout": leg.payout}
                for leg in arb.legs
            ],
        })  # fmt: skip
    found.sort(key=lambda a: (-a["profit_pct"], a["event_id"], a["market_id"]))
    return found


def value_bet_list(
    state: DomainState,
    selector: EventSelector,
    *,
    min_edge: float,
    method: DevigMethod,
    reference: str | None,
) -> list[dict[str, Any]]:
    """Best prices above the de-vigged consensus (or ``reference`` book) by more than
    ``min_edge``, the largest edge first. Markets without a complete book are skipped."""
    found = []
    for event_id, mb in _markets(state, selector):
        if reference is not None and reference not in mb.books:
            continue
        try:
            bets = value_bets(mb.books, threshold=min_edge, method=method, reference=reference)
        except ValueError:  # no complete book to take a fair price from
            continue
        for bet in bets:
            found.append({
                **event_header(state, event_id),
                **mb.market,
                "selection_id": bet.selection,
                "selection": mb.selections[bet.selection],
                "bookmaker": bet.bookmaker,
                "odds": bet.odds,
                "fair_probability": bet.fair_probability,
                "fair_odds": bet.fair_odds,
                "edge": bet.edge,
                "edge_pct": bet.edge_pct,
                "kelly": bet.kelly,
            })  # fmt: skip
    found.sort(key=lambda v: (-v["edge"], v["event_id"], v["market_id"], v["selection_id"]))
    return found
