"""Best prices, arbitrages and value bets across the snapshot agree with each other."""

from __future__ import annotations

from typing import Any

import pytest

from wagerwire.analytics.odds import implied_sum
from wagerwire.domain.markets import (
    EventSelector,
    arbitrages,
    best_market,
    market_books,
    selected_events,
    value_bet_list,
)
from wagerwire.domain.state import DomainState

ARB = {  # domain.md b.4: best prices 2.25 / 3.75 / 3.60 sum to 0.9889
    "a": {"home": 2.10, "draw": 3.40, "away": 3.60},
    "b": {"home": 2.25, "draw": 3.30, "away": 3.30},
    "c": {"home": 2.05, "draw": 3.75, "away": 3.50},
}
NO_ARB = {
    "a": {"over": 1.90, "under": 1.90},
    "b": {"over": 1.95, "under": 1.85},
    "c": {"over": 1.80, "under": 2.00},
}


def market(market_id: str, books: dict[str, dict[str, float]],
           suspended: frozenset[str] = frozenset()) -> dict[str, Any]:  # fmt: skip
    names = list(next(iter(books.values())))
    return {
        "market_id": market_id, "market_type": market_id, "line": None, "period": 0,
        "selections": [
            {"selection_id": s, "name": s.title(),
             "prices": {b: {"odds": p[s], "suspended": b in suspended} for b, p in books.items()}}
            for s in names
        ],
    }  # fmt: skip


def event(event_id: str, status: str, markets: list[dict[str, Any]],
          sport: str = "football") -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id, "sport": sport, "competition": "epl", "league": "epl",
            "name": event_id.upper(), "status": status, "live": status == "live", "seq": 1,
            "markets": markets}  # fmt: skip


@pytest.fixture
def state() -> DomainState:
    s = DomainState()
    s.apply("sports:event:e1", event("e1", "live", [market("1x2", ARB), market("ou", NO_ARB)]), 1)
    s.apply("sports:event:e2", event("e2", "finished", [market("1x2", ARB)]), 1)
    s.apply("sports:event:e3", event("e3", "upcoming", [market("1x2", ARB, frozenset("abc"))],
                                     sport="tennis"), 1)  # fmt: skip
    return s


def test_best_prices_and_the_arbitrage_flag(state: DomainState) -> None:
    by_id = {mb.market["market_id"]: best_market(mb) for mb in market_books(state, "e1")}
    arb, plain = by_id["1x2"], by_id["ou"]
    assert [(s["selection_id"], s["odds"], s["bookmakers"]) for s in arb["selections"]] == [
        ("home", 2.25, ["b"]), ("draw", 3.75, ["c"]), ("away", 3.60, ["a"])]
    assert arb["complete"] and arb["arbitrage"]
    assert arb["implied_sum"] == pytest.approx(implied_sum([2.25, 3.75, 3.60]))
    assert plain["complete"] and not plain["arbitrage"] and plain["implied_sum"] > 1
    for view in by_id.values():  # the best is at least every book's price
        for s in view["selections"]:
            assert all(s["odds"] >= books_of(view)[b][s["selection_id"]] for b in "abc")
    (suspended,) = [best_market(mb) for mb in market_books(state, "e3")]
    assert not suspended["complete"] and suspended["implied_sum"] is None
    assert not suspended["arbitrage"] and suspended["selections"][0]["odds"] is None


def books_of(view: dict[str, Any]) -> dict[str, dict[str, float]]:
    return ARB if view["market_id"] == "1x2" else NO_ARB


def test_arbitrages_skip_finished_events_and_split_the_stake(state: DomainState) -> None:
    open_only = EventSelector(include_finished=False)
    (found,) = arbitrages(state, open_only, 200.0)
    assert (found["event_id"], found["market_id"], found["status"]) == ("e1", "1x2", "live")
    assert found["profit_pct"] == pytest.approx(1.124, abs=5e-4)
    assert sum(leg["stake"] for leg in found["legs"]) == pytest.approx(200.0)
    assert {round(leg["payout"], 6) for leg in found["legs"]} == {round(found["payout"], 6)}
    assert [leg["bookmaker"] for leg in found["legs"]] == ["b", "c", "a"]
    everything = arbitrages(state, EventSelector(), 100.0)
    assert [a["event_id"] for a in everything] == ["e1", "e2"]


def test_selectors(state: DomainState) -> None:
    assert selected_events(state, EventSelector()) == ["e1", "e2", "e3"]
    assert selected_events(state, EventSelector(sport="TENNIS")) == ["e3"]
    assert selected_events(state, EventSelector(live=True)) == ["e1"]
    assert selected_events(state, EventSelector(include_finished=False)) == ["e1", "e3"]
    assert selected_events(state, EventSelector(competition="lig1")) == []


def test_value_bets_against_consensus_and_reference(state: DomainState) -> None:
    selector = EventSelector(include_finished=False)
    bets = value_bet_list(state, selector, min_edge=0.0, method="multiplicative", reference=None)
    assert bets and all(b["edge"] > 0 and b["event_id"] == "e1" for b in bets)
    assert [b["edge"] for b in bets] == sorted((b["edge"] for b in bets), reverse=True)
    for b in bets:
        assert b["odds"] * b["fair_probability"] - 1 == pytest.approx(b["edge"])
    high = value_bet_list(state, selector, min_edge=0.05, method="power", reference=None)
    assert all(b["edge"] > 0.05 for b in high)
    sharp = value_bet_list(state, selector, min_edge=0.0, method="power", reference="a")
    assert sharp and all(b["bookmaker"] != "a" or b["edge"] > 0 for b in sharp)
    assert value_bet_list(state, selector, min_edge=0.0, method="power", reference="zz") == []


def test_declared_selections_make_a_partly_priced_market_incomplete() -> None:
    s = DomainState()
    draw_only_suspended = market("1x2", ARB, frozenset())
    for sel in draw_only_suspended["selections"]:
        if sel["selection_id"] == "draw":
            for price in sel["prices"].values():
                price["suspended"] = True
    s.apply("sports:event:e9", event("e9", "live", [draw_only_suspended]), 1)
    (view,) = [best_market(mb) for mb in market_books(s, "e9")]
    assert not view["complete"] and not view["arbitrage"]  # home + away alone sum below 1
    assert arbitrages(s, EventSelector(), 100.0) == []
