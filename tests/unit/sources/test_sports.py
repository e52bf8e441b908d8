"""The sports simulator: lifecycle, prices and message shapes, without a clock."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Unpack

import orjson
import pytest

from wagerwire.analytics.odds import overround
from wagerwire.core.channels import validate_channel
from wagerwire.core.messages import Message, PublishResult
from wagerwire.errors import Unavailable
from wagerwire.sources.base import PublishOptions
from wagerwire.sources.sports import BOOKMAKERS, SPORTS, Outgoing, SportsConfig, SportsSimulator

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ORDER = {"upcoming": 0, "live": 1, "finished": 2}
ODDS_FIELDS = {  # seed 003's odds message, plus ours
    "bookmaker", "match_name", "competition", "sport", "market_type", "selection", "odds",
    "period", "is_live", "scraped_at",
    "event_id", "market_id", "selection_id", "line", "suspended",
}  # fmt: skip
WHOLE_GAME_DIGEST = "15fd5c108e67c795"  # main before period markets existed gives the same
CONFIG = SportsConfig(seed=7, time_scale=120.0, start_delay_ms=(5_000, 60_000), linger_ms=10_000)


def play(config: SportsConfig, steps: int, every_ms: int = 1_000) -> list[list[Outgoing]]:
    sim = SportsSimulator(config)
    return [sim.step(T0 + i * every_ms) for i in range(steps)]


@dataclass
class Run:
    ticks: list[list[Outgoing]] = field(default_factory=list)
    alive: list[int] = field(default_factory=list)  # events not finished after each step
    kept: list[int] = field(default_factory=list)  # events kept (finished ones linger)


@pytest.fixture(scope="module")
def run() -> Run:
    """One shared four-minute run (eight game-hours) that most invariants are checked on."""
    sim = SportsSimulator(CONFIG)
    result = Run()
    for i in range(240):
        result.ticks.append(sim.step(T0 + i * 1_000))
        snapshot = sim.snapshot()
        result.alive.append(sum(1 for e in snapshot if e["status"] != "finished"))
        result.kept.append(len(snapshot))
    return result


@pytest.fixture
def ticks(run: Run) -> list[list[Outgoing]]:
    return run.ticks


def events_of(ticks: list[list[Outgoing]]) -> list[dict[str, Any]]:
    return [data for tick in ticks for ch, data, _ in tick if ch.startswith("sports:event:")]


def odds_of(ticks: list[list[Outgoing]]) -> list[dict[str, Any]]:
    return [data for tick in ticks for ch, data, _ in tick if ch.startswith("odds:")]


def test_catalogue() -> None:
    assert {s.slug for s in SPORTS} >= {"football", "basketball", "tennis", "ice-hockey"}
    assert len(BOOKMAKERS) >= 6
    assert len({b.slug for b in BOOKMAKERS}) == len(BOOKMAKERS)
    for sport in SPORTS:
        assert sport.competitions
        for competition in sport.competitions:
            validate_channel(f"odds:{sport.slug}:{competition.slug}")
            assert len(competition.teams) >= 4


def test_status_only_moves_forward_and_every_stage_is_seen(ticks: list[list[Outgoing]]) -> None:
    last: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for event in events_of(ticks):
        previous = last.get(event["event_id"])
        if previous is not None:
            assert ORDER[event["status"]] >= ORDER[previous], event["event_id"]
        last[event["event_id"]] = event["status"]
        seen[event["status"]] += 1
    assert set(seen) == {"upcoming", "live", "finished"}
    assert sum(1 for s in last.values() if s == "finished") >= 5


def test_seq_increases_per_event(ticks: list[list[Outgoing]]) -> None:
    last: dict[str, int] = {}
    for event in events_of(ticks):
        assert event["seq"] > last.get(event["event_id"], 0)
        last[event["event_id"]] = event["seq"]


def test_bounded_number_of_events(run: Run) -> None:
    assert all(n == CONFIG.max_events for n in run.alive)  # finished ones are replaced at once
    assert max(run.kept) <= 2 * CONFIG.max_events  # and forgotten after linger_ms


def test_odds_within_sane_bounds(ticks: list[list[Outgoing]]) -> None:
    updates = odds_of(ticks)
    assert updates
    assert all(1.01 <= u["odds"] <= 1000.0 for u in updates)
    for event in events_of(ticks):
        for market in event["markets"]:
            for selection in market["selections"]:
                assert all(1.01 <= p["odds"] <= 1000.0 for p in selection["prices"].values())


def test_every_unsuspended_book_is_within_the_margin_range(ticks: list[list[Outgoing]]) -> None:
    lo, hi = CONFIG.margin_range
    checked = 0
    for event in events_of(ticks):
        for market in event["markets"]:
            for book in (b.slug for b in BOOKMAKERS):
                prices = [s["prices"][book] for s in market["selections"]]
                if any(p["suspended"] for p in prices):
                    continue
                assert lo <= overround([p["odds"] for p in prices]) <= hi, (event, market)
                checked += 1
    assert checked > 1_000


def test_six_bookmakers_price_every_market(ticks: list[list[Outgoing]]) -> None:
    for event in events_of(ticks):
        for market in event["markets"]:
            for selection in market["selections"]:
                assert set(selection["prices"]) == {b.slug for b in BOOKMAKERS}


def test_markets_per_sport(ticks: list[list[Outgoing]]) -> None:
    kinds: dict[str, set[str]] = {}
    for event in events_of(ticks):
        types = {m["market_type"] for m in event["markets"] if m["period"] == 0}
        first = [m for m in event["markets"] if m["period"] == 1]
        assert [m["market_type"] for m in first] == ["total"]  # and listed last
        assert event["markets"][-1] is first[0]
        kinds.setdefault(event["sport"], set()).update(types)
        for market in event["markets"]:
            if market["market_type"] in ("total", "spread"):
                assert market["line"] % 1 == 0.5  # half lines: no push
    assert kinds.get("football") == {"1x2", "total", "spread"}
    for sport, types in kinds.items():
        assert {"total", "spread"} <= types
        assert ("1x2" in types) == (sport in ("football", "ice-hockey")), sport
        assert ("moneyline" in types) == (sport in ("basketball", "tennis")), sport


def test_event_shape_and_attrs(ticks: list[list[Outgoing]]) -> None:
    for tick in ticks:
        for channel, data, attrs in tick:
            validate_channel(channel)
            assert all(isinstance(v, str) for v in attrs.values())
            if not channel.startswith("sports:event:"):
                continue
            assert channel == f"sports:event:{data['event_id']}"
            assert attrs == {
                "sport": data["sport"],
                "competition": data["competition"],
                "event": data["event_id"],
                "live": "true" if data["status"] == "live" else "false",
            }
            assert (
                data["name"]
                == f"{data['participants']['home']['name']} - {data['participants']['away']['name']}"
            )
            assert data["starts_at"].endswith("Z")
            home = sum(p["home"] for p in data["period_scores"])
            away = sum(p["away"] for p in data["period_scores"])
            if data["sport"] != "tennis":  # tennis score counts sets, periods count games
                assert data["score"] == {"home": home, "away": away}
            if data["status"] == "live":
                assert data["period"] >= 1 and data["period_name"]
                assert (data["clock"] is None) == (data["sport"] == "tennis")
            if data["status"] == "upcoming":
                assert data["period"] is None and data["period_scores"] == []
            if data["status"] == "finished":
                assert all(m["suspended"] for m in data["markets"])


def test_odds_update_shape(ticks: list[list[Outgoing]]) -> None:
    for tick in ticks:
        for channel, data, attrs in tick:
            if not channel.startswith("odds:"):
                continue
            assert set(data) == ODDS_FIELDS
            assert channel == f"odds:{data['sport']}:{data['competition']}"
            assert attrs == {
                "sport": data["sport"],
                "competition": data["competition"],
                "bookmaker": data["bookmaker"],
                "event": data["event_id"],
                "market": data["market_id"],
            }
            assert data["scraped_at"].endswith("Z")
            assert data["period"] == (1 if ":p1:" in data["market_id"] else 0)


def test_one_update_per_change_and_it_agrees_with_the_event(ticks: list[list[Outgoing]]) -> None:
    latest: dict[tuple[str, str, str, str], tuple[float, bool]] = {}
    for tick in ticks:
        for channel, data, _ in tick:
            if channel.startswith("odds:"):
                key = (data["event_id"], data["market_id"], data["selection_id"], data["bookmaker"])
                state = (data["odds"], data["suspended"])
                assert latest.get(key) != state, "an update that changes nothing"
                latest[key] = state
            else:  # the event message of the same step shows the same prices
                for market in data["markets"]:
                    for s in market["selections"]:
                        for book, price in s["prices"].items():
                            key = (data["event_id"], market["market_id"], s["selection_id"], book)
                            assert latest[key] == (price["odds"], price["suspended"])


def test_markets_suspend_and_resume(ticks: list[list[Outgoing]]) -> None:
    """A football or hockey goal suspends every market; they come back after suspend_ms."""
    history: dict[str, list[tuple[int, bool]]] = {}
    for event in events_of(ticks):
        if event["status"] == "live" and event["sport"] in ("football", "ice-hockey"):
            goals = event["score"]["home"] + event["score"]["away"]
            history.setdefault(event["event_id"], []).append(
                (goals, event["markets"][1]["suspended"])
            )
    resumed = 0
    for states in history.values():
        for (goals_before, _), (goals_after, suspended) in zip(states, states[1:], strict=False):
            if goals_after > goals_before:
                assert suspended
        flags = [s for _, s in states]
        resumed += any(a and not b for a, b in zip(flags, flags[1:], strict=False))
    assert resumed >= 1


def test_period_markets_price_the_first_period_and_close_after_it(
    ticks: list[list[Outgoing]],
) -> None:
    """Each event has a first-period total (OddsStream ``period`` 1); once the first period
    is over its result is known, so the market closes (suspended), while the game goes on."""
    names = {"football": "1st half", "basketball": "1st quarter", "ice-hockey": "1st period",
             "tennis": "1st set games"}
    updates = [u for u in odds_of(ticks) if u["period"] == 1]
    assert updates and all(u["market_type"] == "total" for u in updates)
    assert {u["is_live"] for u in updates} == {True, False}
    closed_after_first = 0
    for event in events_of(ticks):
        market = event["markets"][-1]
        assert market["period"] == 1 and market["name"].startswith(names[event["sport"]])
        assert market["line"] % 1 == 0.5
        if event["status"] == "live" and event["period"] >= 2:
            assert market["suspended"], (event["event_id"], event["period"])
            closed_after_first += 1
    assert closed_after_first > 0


def test_period_markets_leave_the_whole_game_prices_as_they_were() -> None:
    """Period markets draw from their own generator: every whole-game price update of a seed
    is what it was before they existed (pinned: a digest of the first 150 steps' updates)."""
    sim = SportsSimulator(SportsConfig(seed=7, time_scale=120.0, max_events=12))
    digest = hashlib.sha256()
    for i in range(150):
        for channel, data, attrs in sim.step(1_780_000_000_000 + i * 1000):
            if channel.startswith("odds:") and data["period"] == 0:
                digest.update(orjson.dumps([channel, data, attrs]))
    assert digest.hexdigest()[:16] == WHOLE_GAME_DIGEST


def test_deterministic_for_a_seed() -> None:
    assert play(CONFIG, 40) == play(CONFIG, 40)
    other = SportsConfig(seed=8, time_scale=120.0, start_delay_ms=(5_000, 60_000))
    assert play(other, 5) != play(CONFIG, 5)


def test_time_never_runs_backwards() -> None:
    sim = SportsSimulator(CONFIG)
    for i in range(60):
        sim.step(T0 + i * 1_000)
    before = {e["event_id"]: (e["status"], e["score"]) for e in sim.snapshot()}
    sim.step(T0)  # a clock that jumped back
    after = {e["event_id"]: (e["status"], e["score"]) for e in sim.snapshot()}
    assert after == before


def test_a_long_gap_plays_out_whole_games() -> None:
    sim = SportsSimulator(CONFIG)
    sim.step(T0)
    first = {e["event_id"] for e in sim.snapshot()}
    sim.step(T0 + 3_600_000)  # an hour later every first-batch event has finished
    finished = {e["event_id"] for e in sim.snapshot() if e["status"] == "finished"}
    assert first <= finished


def test_id_prefix_and_channel_safety() -> None:
    sim = SportsSimulator(SportsConfig(seed=1, id_prefix="demo"))
    out = sim.step(T0)
    assert all(d["event_id"].startswith("demo-") for ch, d, _ in out if ch.startswith("sports:"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"margin_range": (0.05, 0.04)},
        {"margin_range": (0.02, 0.025)},
        {"max_events": 0},
        {"bookmakers": ()},
        {"time_scale": 0.0},
        {"start_delay_ms": (10, 5)},
    ],
)
def test_bad_config_raises(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SportsConfig(**kwargs)


class FakePublisher:
    def __init__(self, fail_every: int = 0) -> None:
        self.sent: list[Outgoing] = []
        self.fail_every = fail_every
        self.calls = 0

    async def publish(self, channel: str, data: Any, **options: Unpack[PublishOptions]
                      ) -> PublishResult:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise Unavailable("store down")
        self.sent.append((channel, data, dict(options.get("attrs") or {})))
        return PublishResult(Message(channel, self.calls, "e", 0, b"{}"))


async def drive(publisher: FakePublisher, rounds: int) -> list[float]:
    now = [T0]
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += int(seconds * 1000)
        if len(sleeps) == rounds:
            raise asyncio.CancelledError

    sim = SportsSimulator(CONFIG, clock=lambda: now[0], sleep=sleep)
    with pytest.raises(asyncio.CancelledError):
        await sim.run(publisher)
    return sleeps


async def test_run_publishes_what_step_returns() -> None:
    publisher = FakePublisher()
    sleeps = await drive(publisher, 3)
    assert sleeps == [1.0, 1.0, 1.0]
    expected = [m for tick in play(CONFIG, 3) for m in tick]
    assert publisher.sent == expected


async def test_run_survives_refused_publishes() -> None:
    publisher = FakePublisher(fail_every=10)
    await drive(publisher, 3)
    assert publisher.calls == sum(len(t) for t in play(CONFIG, 3))
    assert len(publisher.sent) == publisher.calls - publisher.calls // 10
