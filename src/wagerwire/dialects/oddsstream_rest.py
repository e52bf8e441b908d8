"""OddsStream's REST answers (seed 003), pure: catalogue listings, current prices, value bets.

Built from the server's :class:`~wagerwire.domain.state.DomainState` snapshot and the
dialect's :class:`~wagerwire.dialects.oddsstream.OddsCatalog`; the HTTP side is
api/oddsstream.py.

Value bets: the fair probability of each selection is the **consensus** line: every bookmaker
that prices all of the market's selections is de-vigged multiplicatively (each implied
probability ``1/odds`` divided by the book's implied sum), the de-vigged probabilities are
averaged over those books and renormalised to sum to 1. A best available price is a value bet
when its edge ``fair_probability × odds − 1`` is above :data:`VALUE_EDGE` (2 %). Suspended
prices are left out, and so are finished events.
"""

from __future__ import annotations

from typing import Any

from wagerwire.dialects.oddsstream import MARKET_TYPES, OddsCatalog, OddsFilters
from wagerwire.domain.markets import EventSelector, event_header, selected_events, value_bet_list
from wagerwire.domain.state import DomainState

__all__ = ["VALUE_EDGE", "bookmaker_list", "current_prices", "sport_list", "value_bet_frames"]

VALUE_EDGE = 0.02
"""A best price is a value bet when ``fair_probability × odds − 1`` exceeds this."""


def sport_list(catalog: OddsCatalog) -> list[dict[str, Any]]:
    """``[{"name": "Football", "slug", "competitions": [{"code": "EPL", "name"}]}]``."""
    out = []
    for slug, name in catalog.sports.items():
        comps = [{"code": code, "name": cname, "slug": cslug}
                 for cslug, (sport, code, cname) in catalog.competitions.items()
                 if sport == slug]
        out.append({"name": name, "slug": slug, "competitions": comps})
    return out


def bookmaker_list(catalog: OddsCatalog) -> list[dict[str, Any]]:
    """``[{"name": "Sharpline", "slug": "sharpline"}]``."""
    return [{"name": name, "slug": slug} for slug, name in catalog.bookmakers.items()]


def _selector(filters: OddsFilters, *, include_finished: bool) -> EventSelector:
    return EventSelector(None, filters.sport, filters.competition, None, include_finished)


def _head(state: DomainState, event_id: str, catalog: OddsCatalog) -> dict[str, Any]:
    head = event_header(state, event_id)
    return {
        "match_name": str(head["name"] or event_id),
        "competition": catalog.competition_code(str(head["competition"] or "")),
        "sport": catalog.sport_name(str(head["sport"] or "")),
    }


def current_prices(
    state: DomainState, filters: OddsFilters, catalog: OddsCatalog
) -> list[dict[str, Any]]:
    """Every takeable current price as the stream's frame object, by event, market,
    selection and bookmaker (suspended prices are left out)."""
    out: list[dict[str, Any]] = []
    for event_id in selected_events(state, _selector(filters, include_finished=True)):
        odds = state.odds(event_id)
        if odds is None:
            continue
        head = _head(state, event_id, catalog)
        for market in odds["markets"]:
            market_type = str(market["market_type"])
            for selection in market["selections"]:
                for record in selection["prices"]:
                    book = record["bookmaker"]
                    if record["suspended"] or (
                        filters.bookmaker is not None and book != filters.bookmaker
                    ):
                        continue
                    out.append({
                        "bookmaker": catalog.bookmaker_name(book),
                        "match_name": head["match_name"],
                        "competition": head["competition"],
                        "sport": head["sport"],
                        "market_type": MARKET_TYPES.get(market_type, market_type),
                        "selection": selection["selection"],
                        "odds": record["odds"],
                        "period": market["period"],
                        "is_live": record["is_live"],
                        "scraped_at": record.get("scraped_at", ""),
                    })  # fmt: skip
    return out


def value_bet_frames(
    state: DomainState, filters: OddsFilters, catalog: OddsCatalog,
    min_edge: float = VALUE_EDGE,
) -> list[dict[str, Any]]:
    """Best prices above the consensus fair price by more than ``min_edge``, largest edge
    first; a ``bookmaker`` filter keeps the bets whose best price is at that bookmaker."""
    found = value_bet_list(state, _selector(filters, include_finished=False),
                           min_edge=min_edge, method="multiplicative", reference=None)
    out = []
    for bet in found:
        if filters.bookmaker is not None and bet["bookmaker"] != filters.bookmaker:
            continue
        market_type = str(bet["market_type"])
        out.append({
            "bookmaker": catalog.bookmaker_name(bet["bookmaker"]),
            **_head(state, bet["event_id"], catalog),
            "market_type": MARKET_TYPES.get(market_type, market_type),
            "selection": bet["selection"],
            "odds": bet["odds"],
            "period": bet["period"],
            "is_live": bet["live"],
            "fair_probability": round(bet["fair_probability"], 6),
            "fair_odds": round(bet["fair_odds"], 4),
            "edge_pct": round(bet["edge_pct"], 3),
        })  # fmt: skip
    return out
