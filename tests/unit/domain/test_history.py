"""Round windows answer the same from the snapshot and from the store, and the feed seeds.

A real hub (SQLite store, memory broker) carries the rounds; the domain state keeps only the
last few, so windows reaching further back must come from the store, found by binary search.
Every window of a grid is compared with the answer computed by brute force over all rounds.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from wagerwire.brokers.memory import MemoryBroker
from wagerwire.core.hub import Hub
from wagerwire.domain.feed import DomainFeed
from wagerwire.domain.history import Round, RoundFilter
from wagerwire.domain.state import DomainState
from wagerwire.stores.sqlite import SqliteStore

T0 = 1_767_225_600_000
ROUNDS = 30
KEPT = 5


def crash_round(i: int, slug: str = "crash") -> dict[str, Any]:
    point = f"{1 + (i * 37) % 500 / 100:.2f}"
    return {
        "round_id": f"{slug}-{i}",
        "index": i,
        "game_slug": slug,
        "game_type": "crash",
        "result": {"multiplier": point, "crash_point": float(point)},
        "timestamp": T0 + i * 1_000,
    }


def event(event_id: str, seq: int, status: str = "upcoming") -> dict[str, Any]:
    return {
        "event_id": event_id, "sport": "football", "competition": "epl", "league": "epl",
        "name": "A - B", "status": status, "live": status == "live", "starts_at_ms": T0,
        "seq": seq,
        "markets": [{"market_id": "ml", "market_type": "moneyline", "selections": [
            {"selection_id": "home", "name": "A", "prices": {"x": {"odds": 1.9}}},
            {"selection_id": "away", "name": "B", "prices": {"x": {"odds": 1.95}}},
        ]}],
    }  # fmt: skip


async def open_hub(path: Path) -> Hub:
    hub = Hub(SqliteStore(str(path)), MemoryBroker())
    await hub.start()
    return hub


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = await open_hub(tmp_path / "hub.db")
    yield hub
    await hub.close()


async def fed(hub: Hub, max_rounds: int = KEPT) -> DomainFeed:
    feed = DomainFeed(DomainState(max_rounds=max_rounds))
    feed.install(hub)
    await feed.ready()
    return feed


async def publish_rounds(hub: Hub, count: int = ROUNDS, junk_after: int = 10) -> None:
    for i in range(1, count + 1):
        await hub.publish("game:crash", crash_round(i))
        if i == junk_after:  # anyone may publish anything on a game channel
            await hub.publish("game:crash", {"note": "not a round"})


def indexes(rounds: Sequence[Round]) -> list[int]:
    return [r["index"] for r in rounds]


def brute(window: RoundFilter, limit: int, forward: bool) -> tuple[list[int], bool]:
    every = [crash_round(i) for i in range(1, ROUNDS + 1)]
    matched = [r["index"] for r in every if window.matches(r)]
    page = matched[:limit] if forward else matched[max(0, len(matched) - limit) :]
    return page, len(matched) > limit


async def test_memory_answers_recent_windows_and_the_store_older_ones(hub: Hub) -> None:
    feed = await fed(hub)
    await publish_rounds(hub)
    history = feed.history
    latest = await history.page("crash", RoundFilter(), 3, forward=False)
    assert (indexes(latest.rounds), latest.source) == ([28, 29, 30], "memory")
    recent = await history.page("crash", RoundFilter(since_index=26), 10, forward=True)
    assert (indexes(recent.rounds), recent.more, recent.source) == ([27, 28, 29, 30], False,
                                                                    "memory")  # fmt: skip
    first = await history.page("crash", RoundFilter(since_index=0), 4, forward=True)
    assert (indexes(first.rounds), first.more, first.source) == ([1, 2, 3, 4], True, "store")
    by_time = await history.page("crash", RoundFilter(since=T0 + 10_000), 3, forward=True)
    assert (indexes(by_time.rounds), by_time.source) == ([11, 12, 13], "store")  # junk skipped
    older = await history.page("crash", RoundFilter(until_index=12), 3, forward=False)
    assert (indexes(older.rounds), older.more, older.source) == ([10, 11, 12], True, "store")
    assert indexes((await history.page("crash", RoundFilter(until=T0 + 3_000), 10,
                                       forward=False)).rounds) == [1, 2, 3]  # fmt: skip
    found = await history.by_index("crash", 7)
    assert found is not None and found["round_id"] == "crash-7"
    found = await history.by_index("crash", 29)
    assert found is not None and found["round_id"] == "crash-29"
    assert await history.by_index("crash", 99) is None
    assert await history.by_index("crash", 0) is None


async def test_every_window_matches_brute_force(hub: Hub) -> None:
    feed = await fed(hub)
    await publish_rounds(hub)
    since_index = [None, 0, 4, 12, 25, 29, 30, 40]
    until_index = [None, 0, 3, 12, 27, 30, 40]
    times = [None, T0, T0 + 9_500, T0 + 26_000, T0 + 99_000]
    for lo, hi, limit, forward in itertools.product(since_index, until_index, (1, 3, 50),
                                                    (True, False)):  # fmt: skip
        window = RoundFilter(since_index=lo, until_index=hi)
        if forward and not window.bounded_below:
            continue
        page = await feed.history.page("crash", window, limit, forward=forward)
        expected, more = brute(window, limit, forward)
        assert indexes(page.rounds) == expected, (lo, hi, limit, forward)
        if forward:
            assert page.more == more, (lo, hi, limit)
    for since, until in itertools.product(times, times):
        window = RoundFilter(since=since, until=until)
        for forward in (True, False) if since is not None else (False,):
            page = await feed.history.page("crash", window, 4, forward=forward)
            assert indexes(page.rounds) == brute(window, 4, forward)[0], (since, until, forward)


async def test_a_complete_game_never_reads_the_store(hub: Hub) -> None:
    feed = await fed(hub, max_rounds=100)
    await publish_rounds(hub)
    assert feed.state.is_complete("crash")
    page = await feed.history.page("crash", RoundFilter(since_index=0), 50, forward=True)
    assert (indexes(page.rounds), page.source) == (list(range(1, ROUNDS + 1)), "memory")
    assert not feed.state.is_complete("nope")


async def test_a_restarted_feed_is_seeded_from_the_store(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    hub = await open_hub(path)
    await publish_rounds(hub)
    await hub.publish("game:double", {"round_id": "double-1", "index": 1,
                                      "result": {"number": 3, "color": "red"}})  # fmt: skip
    for seq, status in enumerate(("upcoming", "live"), start=1):
        await hub.publish("sports:event:e1", event("e1", seq, status))
    await hub.publish("sports:event:e2", event("e2", 1))
    await hub.publish("odds:football:epl", {
        "bookmaker": "y", "event_id": "e1", "market_id": "ml", "selection_id": "home",
        "selection": "A", "odds": 2.05, "market_type": "moneyline",
    })  # fmt: skip
    await hub.publish("user:1:balances", {"balance": 3})
    await hub.close()

    hub = await open_hub(path)
    try:
        feed = DomainFeed(DomainState(max_rounds=KEPT, max_events=1))
        feed.install(hub)
        await hub.publish("game:crash", crash_round(ROUNDS + 1))  # held until seeding ends
        await feed.ready()
        state = feed.state
        assert [g["slug"] for g in state.games()] == ["crash", "double"]
        assert indexes(state.kept_rounds("crash")) == [27, 28, 29, 30, 31]
        assert not state.is_complete("crash") and state.is_complete("double")
        assert state.event_ids() == ["e2"]  # only the most recently updated one fits
        page = await feed.history.page("crash", RoundFilter(since_index=1), 2, forward=True)
        assert (indexes(page.rounds), page.source) == ([2, 3], "store")
    finally:
        await hub.close()

    hub = await open_hub(path)
    try:
        feed = await fed(hub)
        event_e1 = feed.state.event("e1")
        assert event_e1 is not None and event_e1["status"] == "live"
        odds = feed.state.books("e1")["ml"]
        assert odds == {"x": {"home": 1.9, "away": 1.95}, "y": {"home": 2.05}}
    finally:
        await hub.close()


async def test_rounds_published_on_another_channel_cannot_stand_in(hub: Hub) -> None:
    feed = await fed(hub)
    await hub.publish("game:crash", crash_round(1))
    await hub.publish("game:fake", {**crash_round(1), "result": {"multiplier": "9.99"}})
    found = feed.state.round("crash-1", "crash")
    assert found is not None and found["result"]["multiplier"] == crash_round(1)["result"][
        "multiplier"]
    assert feed.state.round("crash-1", "nope") is None
