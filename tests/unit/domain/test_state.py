"""DomainState answers games, rounds, events and prices from the messages applied to it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wagerwire.analytics.odds import find_arbitrage
from wagerwire.domain.state import DomainState
from wagerwire.sources.casino import CasinoSimulator, demo_games
from wagerwire.sources.sports import SportsConfig, SportsSimulator

T0 = 1_767_225_600_000


def crash_round(i: int, point: str = "2.00") -> dict[str, Any]:
    return {
        "round_id": f"crash-{i}",
        "index": i,
        "game_slug": "crash",
        "game_type": "crash",
        "game_name": "Crash",
        "provider": "hypetech",
        "result": {"multiplier": point, "crash_point": float(point)},
        "timestamp": T0 + i * 1_000,
    }


def event(event_id: str, *, status: str = "upcoming", seq: int = 1, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event_id": event_id,
        "sport": "football",
        "sport_name": "Football",
        "competition": "epl",
        "competition_name": "Premier League",
        "league": "epl",
        "name": "Arsenal - Chelsea",
        "status": status,
        "live": status == "live",
        "starts_at_ms": T0,
        "seq": seq,
        "markets": [],
    }
    data.update(extra)
    return data


def odds_update(
    event_id: str, bookmaker: str, selection_id: str, odds: float, **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "bookmaker": bookmaker,
        "match_name": "Arsenal - Chelsea",
        "competition": "epl",
        "sport": "football",
        "market_type": "1x2",
        "selection": {"home": "Arsenal", "draw": "Draw", "away": "Chelsea"}[selection_id],
        "odds": odds,
        "period": 0,
        "is_live": False,
        "scraped_at": "2026-01-01T00:00:00Z",
        "event_id": event_id,
        "market_id": "1x2",
        "selection_id": selection_id,
        "line": None,
        "suspended": False,
    }
    data.update(extra)
    return data


# -- games -----------------------------------------------------------------------------------


def test_rounds_games_and_lookup() -> None:
    state = DomainState()
    for i in range(1, 6):
        state.apply("game:crash", crash_round(i, f"{i}.00"), T0 + i)
    assert [g["slug"] for g in state.games()] == ["crash"]
    game = state.game("crash")
    assert game is not None
    assert game["name"] == "Crash" and game["game_type"] == "crash"
    assert (game["rounds_kept"], game["rounds_seen"]) == (5, 5)
    assert game["last_round_id"] == "crash-5" and game["last_result"]["multiplier"] == "5.00"
    assert game["last_round_at"] == T0 + 5
    assert state.game("nope") is None
    assert [r["index"] for r in state.rounds("crash")] == [1, 2, 3, 4, 5]
    assert state.rounds("nope") == []
    found = state.round("crash-3")
    assert found is not None and found["index"] == 3
    assert state.round("crash-99") is None


def test_round_windows() -> None:
    state = DomainState()
    for i in range(1, 11):
        state.apply("game:crash", crash_round(i), T0)
    ts = T0 + 5_000  # round 5's timestamp
    assert [r["index"] for r in state.rounds("crash", since=ts)] == [6, 7, 8, 9, 10]
    assert [r["index"] for r in state.rounds("crash", until=ts)] == [1, 2, 3, 4, 5]
    assert [r["index"] for r in state.rounds("crash", since=ts, limit=2)] == [6, 7]
    assert [r["index"] for r in state.rounds("crash", limit=3)] == [8, 9, 10]
    assert state.rounds("crash", limit=0) == []


def test_latest_n_rounds_are_kept_and_replays_ignored() -> None:
    state = DomainState(max_rounds=3)
    for i in range(1, 6):
        state.apply("game:crash", crash_round(i), T0)
    state.apply("game:crash", crash_round(5), T0)  # replay after a resume
    assert [r["index"] for r in state.rounds("crash")] == [3, 4, 5]
    assert state.round("crash-2") is None and state.round("crash-3") is not None
    game = state.game("crash")
    assert game is not None and game["rounds_seen"] == 5


def test_casino_simulator_rounds() -> None:
    state = DomainState()
    for spec in demo_games():
        sim = CasinoSimulator(spec, seed=3, chain_length=32)
        for i in range(1, 11):
            state.apply(spec.channel, sim.next_round(T0 + i * 1_000), T0 + i * 1_000)
    assert [g["slug"] for g in state.games()] == sorted(s.slug for s in demo_games())
    for spec in demo_games():
        game = state.game(spec.slug)
        assert game is not None and game["rounds_kept"] == 10 and game["provider"] == spec.provider
        assert state.round(f"{spec.slug}-7") is not None


# -- events and odds ------------------------------------------------------------------------


def test_events_filters_and_ordering() -> None:
    state = DomainState()
    state.apply("sports:event:e1", event("e1", status="live", starts_at_ms=T0 + 2), 1)
    state.apply("sports:event:e2", event("e2", starts_at_ms=T0 + 1), 1)
    state.apply(
        "sports:event:e3",
        event("e3", sport="tennis", competition="atp", league="atp", starts_at_ms=T0),
        1,
    )
    assert [e["event_id"] for e in state.events()] == ["e3", "e2", "e1"]
    assert [e["event_id"] for e in state.events(live=True)] == ["e1"]
    assert [e["event_id"] for e in state.events(live=False)] == ["e3", "e2"]
    assert [e["event_id"] for e in state.events(league="EPL")] == ["e2", "e1"]
    assert [e["event_id"] for e in state.events(sport="tennis")] == ["e3"]
    assert state.events(sport="football", live=True, league="atp") == []
    e1 = state.event("e1")
    assert e1 is not None and e1["status"] == "live"
    assert state.event("e9") is None


def test_an_older_event_snapshot_never_replaces_a_newer_one() -> None:
    state = DomainState()
    state.apply("sports:event:e1", event("e1", status="live", seq=5), 10)
    state.apply("sports:event:e1", event("e1", status="upcoming", seq=4), 11)
    current = state.event("e1")
    assert current is not None and current["status"] == "live"
    state.apply("sports:event:e1", event("e1", status="finished", seq=6), 12)
    current = state.event("e1")
    assert current is not None and current["status"] == "finished"


def test_sports_tree() -> None:
    state = DomainState()
    state.apply("sports:event:e1", event("e1", status="live"), 1)
    state.apply("sports:event:e2", event("e2"), 1)
    state.apply("sports:event:e3", event("e3", competition="lig1", league="lig1"), 1)
    state.apply(
        "odds:tennis:atp",
        odds_update("t1", "sharpline", "home", 1.5, sport="tennis", competition="atp"),
        1,
    )
    assert state.sports() == [
        {
            "sport": "football",
            "name": "Football",
            "events": 3,
            "live": 1,
            "competitions": [
                {"competition": "epl", "name": "Premier League", "events": 2, "live": 1},
                {"competition": "lig1", "name": "Premier League", "events": 1, "live": 0},
            ],
        },
        {
            "sport": "tennis",
            "name": "tennis",
            "events": 1,
            "live": 0,
            "competitions": [{"competition": "atp", "name": "atp", "events": 1, "live": 0}],
        },
    ]


def test_odds_latest_price_per_selection_and_bookmaker() -> None:
    state = DomainState()
    state.apply("odds:football:epl", odds_update("e1", "b", "home", 2.10), 10)
    state.apply("odds:football:epl", odds_update("e1", "a", "home", 2.05), 10)
    state.apply("odds:football:epl", odds_update("e1", "a", "draw", 3.40), 10)
    state.apply("odds:football:epl", odds_update("e1", "a", "home", 2.15), 11)
    answer = state.odds("e1")
    assert answer is not None and answer["event_id"] == "e1"
    (market,) = answer["markets"]
    assert (market["market_id"], market["market_type"], market["period"]) == ("1x2", "1x2", 0)
    home, draw = market["selections"]
    assert (home["selection_id"], home["selection"]) == ("home", "Arsenal")
    assert [(p["bookmaker"], p["odds"], p["updated_at"]) for p in home["prices"]] == [
        ("a", 2.15, 11),
        ("b", 2.10, 10),
    ]
    assert [p["odds"] for p in draw["prices"]] == [3.40]
    assert state.odds("nope") is None


def test_books_leave_out_suspended_and_stale_prices() -> None:
    state = DomainState()
    state.apply("odds:football:epl", odds_update("e1", "a", "home", 2.10), 1_000)
    state.apply("odds:football:epl", odds_update("e1", "b", "home", 2.20, suspended=True), 1_000)
    state.apply("odds:football:epl", odds_update("e1", "c", "home", 2.30), 100)
    assert state.books("e1") == {"1x2": {"a": {"home": 2.10}, "c": {"home": 2.30}}}
    assert state.books("e1", now=1_500, max_age_ms=1_000) == {"1x2": {"a": {"home": 2.10}}}
    assert state.books("nope") == {}


def test_arbitrage_from_the_state() -> None:
    state = DomainState()
    prices = {  # domain.md b.4
        "a": {"home": 2.10, "draw": 3.40, "away": 3.60},
        "b": {"home": 2.25, "draw": 3.30, "away": 3.30},
        "c": {"home": 2.05, "draw": 3.75, "away": 3.50},
    }
    for book, selections in prices.items():
        for selection, d in selections.items():
            state.apply("odds:football:epl", odds_update("e1", book, selection, d), 1)
    books = state.books("e1")["1x2"]
    assert books == prices
    arb = find_arbitrage(books)
    assert arb is not None and arb.profit_pct == pytest.approx(1.124, abs=5e-4)


def test_event_count_is_bounded_finished_first() -> None:
    state = DomainState(max_events=3)
    state.apply("sports:event:old", event("old", status="finished"), 5)
    state.apply("sports:event:a", event("a", status="live"), 1)
    state.apply("sports:event:b", event("b"), 2)
    state.apply("sports:event:c", event("c"), 3)  # over the limit: the finished one goes
    assert sorted(state.event_ids()) == ["a", "b", "c"]
    state.apply("odds:football:epl", odds_update("d", "x", "home", 2.0), 4)  # then the stalest
    assert sorted(state.event_ids()) == ["b", "c", "d"]


def test_sports_simulator_feed() -> None:
    state = DomainState()
    sim = SportsSimulator(SportsConfig(seed=5, time_scale=120.0, start_delay_ms=(5_000, 30_000)))
    for i in range(90):
        now = T0 + i * 1_000
        for channel, data, _ in sim.step(now):
            state.apply(channel, data, now)
    snapshot = {e["event_id"]: e for e in sim.snapshot()}
    assert {e["event_id"] for e in state.events()} >= set(snapshot)
    assert any(e["live"] for e in state.events(live=True))
    assert sum(s["events"] for s in state.sports()) == len(state.event_ids())
    for event_id, expected in snapshot.items():
        assert state.event(event_id) == expected
        answer = state.odds(event_id)
        assert answer is not None
        got = {
            (m["market_id"], s["selection_id"], p["bookmaker"]): (p["odds"], p["suspended"])
            for m in answer["markets"]
            for s in m["selections"]
            for p in s["prices"]
        }
        want = {
            (m["market_id"], s["selection_id"], book): (p["odds"], p["suspended"])
            for m in expected["markets"]
            for s in m["selections"]
            for book, p in s["prices"].items()
        }
        assert got == want


# -- robustness -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["round_id", "event_id", "markets", "selections", "prices", "odds", "bookmaker",
             "selection", "selection_id", "market_id", "seq", "status", "timestamp", "x"]
        ),
        children,
        max_size=6,
    ),
    max_leaves=20,
)  # fmt: skip
channels = st.sampled_from(
    ["game:crash", "game:", "sports:event:e1", "sports:event:", "odds:football:epl", "odds:",
     "user:1:balances", "fairness:crash", "", "game:a:b"]
)  # fmt: skip


@given(st.lists(st.tuples(channels, json_values, st.integers()), max_size=20))
def test_anything_else_is_ignored_without_raising(
    messages: list[tuple[str, Any, int]],
) -> None:
    state = DomainState(max_rounds=4, max_events=4)
    for channel, data, ts in messages:
        state.apply(channel, data, ts)
    state.games()
    state.sports()
    state.events()
    for event_id in state.event_ids():
        state.odds(event_id)
        state.books(event_id)
    assert len(state.event_ids()) <= 4


def test_non_mapping_data_and_unknown_channels() -> None:
    state = DomainState()
    state.apply("game:crash", [1, 2], 1)
    state.apply("user:42:balances", {"round_id": "x"}, 1)
    state.apply("odds:football:epl", {"bookmaker": "a", "odds": 1.0, "selection": "x"}, 1)
    state.apply("odds:football:epl", {"bookmaker": "a", "odds": "n/a", "selection": "x"}, 1)
    assert state.games() == [] and state.event_ids() == []


def test_bad_limits_raise() -> None:
    with pytest.raises(ValueError):
        DomainState(max_rounds=0)
