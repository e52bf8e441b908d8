"""Domain REST end to end (issue 3): games, rounds, statistics, verification, sports and odds.

One real ``wagerwire serve`` runs the demo simulators at 20× for the whole module; what must be
exact (statistics, tampered rounds, arbitrages) is published by the tests themselves on their
own channels, and checked against values computed here independently. Every route's errors
are checked for the documented ``{"error":{"code","message"}}`` body and status.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from serverproc import ServerProcess
from wagerwire.errors import ERROR_CODES
from wagerwire.sources.casino import demo_games

DOCUMENTED = {spec.code: spec.status for spec in ERROR_CODES}
DEMO_SLUGS = {spec.slug for spec in demo_games()}  # every TrackerSino game too, each verified
STATUS_RANK = {"upcoming": 0, "live": 1, "finished": 2}
T0 = 1_700_000_000_000
_TLS = ssl.create_default_context()  # built once: httpx would build one per client

T = TypeVar("T")



class DemoArgs(list[str]):
    """Server arguments that keep the demo on.

    ``ServerProcess`` appends ``--no-demo`` unless ``"--demo"`` is among its arguments, and
    ``serve`` has no ``--demo`` flag (the demo is on by default): claiming to contain it keeps
    the command line as given.
    """

    def __contains__(self, item: object) -> bool:
        return item == "--demo" or super().__contains__(item)


def start_demo(workdir: Path) -> Any:
    return ServerProcess(workdir, DemoArgs(["--demo-speed", "20"])).start(0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    srv = start_demo(tmp_path_factory.mktemp("domain"))
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def http(demo: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10, verify=_TLS) as client:
        yield client


def ok(http: httpx.Client, path: str, **params: Any) -> Any:
    r = http.get(path, params=params)
    assert r.status_code == 200, (path, params, r.status_code, r.text)
    return r.json()


def fails(http: httpx.Client, path: str, status: int, code: str, **params: Any) -> str:
    """Assert the documented error answer; returns its message."""
    r = http.get(path, params=params)
    assert r.status_code == status, (path, params, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code and DOCUMENTED[code] == status, body
    assert body["error"]["message"], body
    message: str = body["error"]["message"]
    return message


def publish(http: httpx.Client, channel: str, data: Any) -> int:
    r = http.post("/v1/publish", json={"channel": channel, "data": data})
    assert r.status_code == 200, r.text
    offset: int = r.json()["offset"]
    return offset


def wait_for(probe: Callable[[], T | None], timeout: float = 20.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.05)


def games_with(http: httpx.Client, rounds: int) -> dict[str, Any] | None:
    games = {g["slug"]: g for g in ok(http, "/v1/games")["games"]}
    if DEMO_SLUGS <= set(games) and all(games[s]["rounds_seen"] >= rounds for s in DEMO_SLUGS):
        return games
    return None


# -- independent maths for hand checks --------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks ("type 7"), written out again here."""
    ordered = sorted(values)
    rank = p / 100 * (len(ordered) - 1)
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def runs(flags: list[bool]) -> tuple[int, int, int, int]:
    """(longest true run, current true run, longest false run, current false run)."""
    longest = {True: 0, False: 0}
    current = {True: 0, False: 0}
    for flag in flags:
        current[flag] += 1
        current[not flag] = 0
        longest[flag] = max(longest[flag], current[flag])
    return longest[True], current[True], longest[False], current[False]


# -- games and rounds -------------------------------------------------------------------------


def test_games_and_rounds_by_time_and_index(http: httpx.Client) -> None:
    games = wait_for(lambda: games_with(http, 6), what="six rounds of every demo game")
    crash = games["crash"]
    assert (crash["name"], crash["game_type"], crash["provider"]) == ("Crash", "crash",
                                                                      "hypetech")  # fmt: skip
    assert ok(http, "/v1/games/crash")["slug"] == "crash"

    latest = ok(http, "/v1/games/crash/rounds", limit=3)
    indexes = [r["index"] for r in latest["rounds"]]
    assert latest["count"] == 3 and latest["next"] is None and latest["source"] == "memory"
    assert indexes == list(range(indexes[0], indexes[0] + 3)) and indexes[-1] >= 6

    collected: list[dict[str, Any]] = []  # page forward from the start until caught up
    page = ok(http, "/v1/games/crash/rounds", since_index=0, limit=2)
    while True:
        assert page["count"] == len(page["rounds"]) <= 2
        collected += page["rounds"]
        if page["next"] is None:
            break
        page = ok(http, "/v1/games/crash/rounds", since_index=0, limit=2, cursor=page["next"])
    assert [r["index"] for r in collected] == list(range(1, len(collected) + 1))
    assert [r["round_id"] for r in collected[:2]] == ["crash-1", "crash-2"]
    assert len(collected) >= indexes[-1]

    stamps = [r["timestamp"] for r in collected]
    assert stamps == sorted(stamps)
    by_time = ok(http, "/v1/games/crash/rounds", since=stamps[1], until=stamps[3])
    assert [r["index"] for r in by_time["rounds"]] == [3, 4]
    first_page = ok(http, "/v1/games/crash/rounds", since=stamps[0] - 1, limit=2)
    assert [r["index"] for r in first_page["rounds"]] == [1, 2] and first_page["next"] == "i2"
    older = ok(http, "/v1/games/crash/rounds", until_index=3)
    assert [r["index"] for r in older["rounds"]] == [1, 2, 3] and older["next"] is None
    both = ok(http, "/v1/games/crash/rounds", since_index=1, until_index=4, until=stamps[2])
    assert [r["index"] for r in both["rounds"]] == [2, 3]

    fails(http, "/v1/games/nope/rounds", 404, "not_found")
    fails(http, "/v1/games/nope", 404, "not_found")
    fails(http, "/v1/games/nope/stats", 404, "not_found")
    for bad in ({"limit": 0}, {"limit": 1001}, {"limit": "x"}, {"since": -1},
                {"since": 5, "until": 4}, {"since_index": 9, "until_index": 3},
                {"until_index": -2}, {"cursor": "zz"}, {"cursor": "i-3"}, {"cursor": "x" * 41}):
        fails(http, "/v1/games/crash/rounds", 422, "bad_parameter", **bad)  # fmt: skip


# -- verification -----------------------------------------------------------------------------


def test_real_rounds_verify_and_tampered_ones_do_not(http: httpx.Client) -> None:
    games = wait_for(lambda: games_with(http, 3), what="three rounds of every demo game")
    for slug in sorted(DEMO_SLUGS):
        round_id = games[slug]["last_round_id"]
        answer = ok(http, f"/v1/rounds/{round_id}/verify")
        assert (answer["valid"], answer["reason"], answer["round_id"]) == (True, None, round_id)
        assert answer["game_slug"] == slug and answer["index"] >= 3
        for key, value in answer["computed"].items():
            published = answer["published"][key]
            assert str(published) == str(value) or float(published) == float(value), (slug, key)
        assert answer["previous_round"] == {"round_id": f"{slug}-{answer['index'] - 1}",
                                            "linked": True}  # fmt: skip
    first = ok(http, "/v1/rounds/crash-1/verify", check_commitment="false")
    assert first["valid"] and first["previous_round"] is None  # links to the commitment

    real = ok(http, "/v1/games/crash/rounds", since_index=0, limit=3)["rounds"]
    original = real[2]

    def tampered(index: int, **changes: Any) -> dict[str, Any]:
        data = {**original, **changes, "round_id": f"tamper-test-{index}", "index": index,
                "game_slug": "tamper-test"}  # fmt: skip
        publish(http, "game:tamper-test", data)
        return data

    tampered(1, result={"multiplier": "1000.00", "crash_point": 1000.0})
    answer = ok(http, "/v1/rounds/tamper-test-1/verify")
    assert answer["valid"] is False and "multiplier" in answer["reason"]
    assert answer["computed"] == original["result"]
    assert answer["published"] == {"multiplier": "1000.00", "crash_point": 1000.0}

    fairness = dict(original["fairness"])
    head = fairness["game_hash"]
    fairness["game_hash"] = ("0" if head[0] != "0" else "1") + head[1:]
    tampered(2, fairness=fairness)
    answer = ok(http, "/v1/rounds/tamper-test-2/verify")
    assert answer["valid"] is False and "previous_hash" in answer["reason"]

    # each round verifies alone, but the one "before" it is not the round it chains to
    tampered(3, fairness=real[0]["fairness"], result=real[0]["result"])
    tampered(4)  # round crash-3, whose previous link is crash-2's hash, not crash-1's
    answer = ok(http, "/v1/rounds/tamper-test-4/verify")
    assert answer["valid"] is True
    assert answer["previous_round"] == {"round_id": "tamper-test-3", "linked": False}

    fails(http, "/v1/rounds/crash-99999999/verify", 404, "not_found")
    fails(http, "/v1/rounds/nope-1/verify", 404, "not_found")
    fails(http, "/v1/rounds/nothing/verify", 404, "not_found")
    fails(http, "/v1/rounds/" + "x" * 201 + "/verify", 422, "bad_parameter")
    fails(http, "/v1/rounds/crash-1/verify", 422, "bad_parameter", check_commitment="maybe")


# -- statistics -------------------------------------------------------------------------------

POINTS = [1.00, 2.50, 1.20, 3.00, 2.00, 10.00, 1.50, 1.80, 2.20, 1.10]
COLOURS = [(0, "white"), (3, "red"), (5, "red"), (9, "black"), (2, "red"), (12, "black"),
           (12, "black"), (1, "red")]  # fmt: skip


def test_statistics_match_hand_computed_values(http: httpx.Client) -> None:
    for i, point in enumerate(POINTS, start=1):
        publish(http, "game:stats-test", {
            "round_id": f"stats-test-{i}", "index": i, "game_slug": "stats-test",
            "game_type": "crash", "timestamp": T0 + i * 1_000,
            "result": {"multiplier": f"{point:.2f}", "crash_point": point},
        })  # fmt: skip
    stats = ok(http, "/v1/games/stats-test/stats", quantiles="10,50,90", thresholds="2,10")
    m = stats["multiplier"]
    assert (stats["count"], stats["skipped"], m["count"]) == (10, 0, 10)
    assert (stats["first_round_id"], stats["last_round_id"]) == ("stats-test-1", "stats-test-10")
    assert m["median"] == pytest.approx(sorted(POINTS)[4] / 2 + sorted(POINTS)[5] / 2)
    assert (m["min"], m["max"]) == (1.0, 10.0)
    assert m["mean"] == pytest.approx(sum(POINTS) / 10)
    for q in (10, 50, 90):
        assert m["quantiles"][f"p{q}"] == pytest.approx(percentile(POINTS, q))
    assert m["at_or_above"] == {"2": 0.5, "10": 0.1}
    longest_up, current_up, longest_down, current_down = runs([p >= 2 for p in POINTS])
    assert stats["streaks"]["at_or_above_2x"] == {"longest": longest_up, "current": current_up}
    assert stats["streaks"]["below_2x"] == {"longest": longest_down, "current": current_down}
    assert (longest_up, current_up, longest_down, current_down) == (3, 0, 2, 1)
    assert stats["window"]["source"] == "memory"

    last4 = ok(http, "/v1/games/stats-test/stats", last=4)
    assert last4["count"] == 4 and last4["multiplier"]["median"] == pytest.approx(1.65)
    assert last4["window"]["last"] == 4
    timed = ok(http, "/v1/games/stats-test/stats", since=T0 + 3_000, until=T0 + 7_000)
    assert (timed["first_round_id"], timed["last_round_id"]) == ("stats-test-4", "stats-test-7")
    assert timed["multiplier"]["max"] == 10.0 and timed["count"] == 4
    indexed = ok(http, "/v1/games/stats-test/stats", since_index=8)
    assert indexed["count"] == 2 and indexed["multiplier"]["mean"] == pytest.approx(1.65)
    at3 = ok(http, "/v1/games/stats-test/stats", streak=3)
    up, now_up, down, now_down = runs([p >= 3 for p in POINTS])
    assert at3["streaks"]["at_or_above_3x"] == {"longest": up, "current": now_up}
    assert at3["streaks"]["below_3x"] == {"longest": down, "current": now_down}
    empty = ok(http, "/v1/games/stats-test/stats", since=T0 + 99_000)
    assert empty["count"] == 0 and empty["multiplier"] is None

    for i, (number, colour) in enumerate(COLOURS, start=1):
        publish(http, "game:stats-double", {
            "round_id": f"stats-double-{i}", "index": i, "game_type": "double",
            "timestamp": T0 + i, "result": {"number": number, "color": colour},
        })  # fmt: skip
    double = ok(http, "/v1/games/stats-double/stats")
    assert double["colors"] == {"red": 4, "black": 3, "white": 1}
    assert double["color_shares"]["red"] == 0.5 and double["multiplier"] is None
    assert double["streaks"]["red"] == {"longest": 2, "current": 1}
    assert double["streaks"]["black"] == {"longest": 2, "current": 0}
    assert double["streaks"]["no_white"] == {"longest": 7, "current": 7}
    assert double["numbers"] == {"0": 1, "1": 1, "2": 1, "3": 1, "5": 1, "9": 1, "12": 2}

    for bad in ({"quantiles": "101"}, {"quantiles": "-1"}, {"quantiles": "abc"},
                {"quantiles": "10,,20"}, {"quantiles": ",".join(str(q) for q in range(21))},
                {"thresholds": "0"}, {"thresholds": "-2"}, {"thresholds": "nan"},
                {"thresholds": "inf"}, {"last": 0}, {"last": 10_001}, {"streak": 0},
                {"streak": "inf"}, {"since": 9, "until": 3}, {"since_index": 5, "until_index": 1}):
        fails(http, "/v1/games/stats-test/stats", 422, "bad_parameter", **bad)  # fmt: skip


# -- sports and odds --------------------------------------------------------------------------


def consistent_odds(http: httpx.Client, event_id: str) -> tuple[Any, Any] | None:
    """/v1/odds and /v1/odds/best of one event taken between two identical price answers."""
    before = ok(http, "/v1/odds", event=event_id)
    best = ok(http, "/v1/odds/best", event=event_id)
    after = ok(http, "/v1/odds", event=event_id)
    return (before, best) if before == after else None


def check_best(prices: dict[str, Any], best: dict[str, Any]) -> int:
    """Best prices against every book's; returns how many markets were checked."""
    books = {m["market_id"]: m for m in prices["markets"]}
    for market in best["markets"]:
        by_selection = {s["selection_id"]: s for s in books[market["market_id"]]["selections"]}
        for s in market["selections"]:
            quoted = by_selection[s["selection_id"]]["prices"]
            takeable = {p["bookmaker"]: p["odds"] for p in quoted if not p["suspended"]}
            if not takeable:
                assert s["odds"] is None and s["bookmakers"] == []
                continue
            assert all(s["odds"] >= d for d in takeable.values())
            assert s["odds"] == max(takeable.values())
            assert s["bookmakers"] == sorted(b for b, d in takeable.items() if d == s["odds"])
        complete = all(s["odds"] is not None for s in market["selections"])
        assert market["complete"] == (complete and len(market["selections"]) >= 2)
        if market["complete"]:
            total = math.fsum(1 / s["odds"] for s in market["selections"])
            assert market["implied_sum"] == pytest.approx(total)
            assert market["arbitrage"] == (total < 1)
        else:
            assert market["implied_sum"] is None and market["arbitrage"] is False
    return len(best["markets"])


def test_events_and_odds_agree(http: httpx.Client) -> None:
    wait_for(lambda: ok(http, "/v1/events")["count"] >= 6, what="demo events")
    events = wait_for(lambda: ok(http, "/v1/events", live=True)["events"], what="a live event")
    assert all(e["live"] is True and e["status"] == "live" for e in events)
    not_live = ok(http, "/v1/events", live=False)["events"]
    assert not_live and all(e["live"] is False for e in not_live)

    def tree_matches() -> bool:
        sports = ok(http, "/v1/sports")["sports"]
        listed = ok(http, "/v1/events")
        total = sum(s["events"] for s in sports)
        per_competition = sum(c["events"] for s in sports for c in s["competitions"])
        return bool(total == per_competition == listed["count"] == len(listed["events"]))

    wait_for(tree_matches, what="/v1/sports counts equal to /v1/events")
    one = events[0]
    for e in ok(http, "/v1/events", sport=one["sport"], league=one["league"].upper())["events"]:
        assert (e["sport"], e["league"]) == (one["sport"], one["league"])
    # ids, not whole objects: a live event's clock may tick between the two requests
    first = [e["event_id"] for e in ok(http, "/v1/events", limit=1)["events"]]
    assert first == [e["event_id"] for e in ok(http, "/v1/events")["events"][:1]]
    assert all(e["status"] == "upcoming"
               for e in ok(http, "/v1/events", status="upcoming")["events"])  # fmt: skip
    assert ok(http, f"/v1/events/{one['event_id']}")["event_id"] == one["event_id"]

    listed = ok(http, "/v1/odds")
    assert listed["count"] == len(listed["events"]) > 0
    checked = 0
    for entry in listed["events"]:
        pair = None
        for _ in range(20):
            pair = consistent_odds(http, entry["event_id"])
            if pair is not None:
                break
        assert pair is not None, "prices never stood still for three requests"
        checked += check_best(pair[0]["events"][0], pair[1]["events"][0])
    assert checked >= len(listed["events"])

    for arb in ok(http, "/v1/arbitrage", stake=250)["arbitrages"]:
        assert arb["implied_sum"] < 1 and arb["status"] != "finished"
        assert math.fsum(leg["stake"] for leg in arb["legs"]) == pytest.approx(250)
        for leg in arb["legs"]:
            assert leg["payout"] == pytest.approx(arb["payout"])
        assert arb["profit"] == pytest.approx(arb["payout"] - 250)
    for method in ("multiplicative", "power"):
        bets = ok(http, "/v1/value-bets", min_edge=0.005, method=method)
        assert bets["method"] == method and bets["count"] == len(bets["value_bets"])
        for bet in bets["value_bets"]:
            assert bet["edge"] > 0.005 and bet["status"] != "finished"
            assert bet["odds"] * bet["fair_probability"] - 1 == pytest.approx(bet["edge"])

    fails(http, "/v1/events/nope", 404, "not_found")
    for path in ("/v1/odds", "/v1/odds/best", "/v1/arbitrage", "/v1/value-bets"):
        fails(http, path, 404, "not_found", event="nope")
        fails(http, path, 422, "bad_parameter", live="maybe")
    for path, bad in (("/v1/events", {"live": "maybe"}), ("/v1/events", {"limit": 0}),
                      ("/v1/events", {"league": ""}), ("/v1/arbitrage", {"stake": 0}),
                      ("/v1/arbitrage", {"stake": "abc"}), ("/v1/arbitrage", {"stake": "inf"}),
                      ("/v1/value-bets", {"min_edge": -1}), ("/v1/value-bets", {"method": "x"}),
                      ("/v1/value-bets", {"reference": "nobody"})):
        fails(http, path, 422, "bad_parameter", **bad)  # fmt: skip


ARB = {  # domain.md b.4: the best prices 2.25 / 3.75 / 3.60 sum to 0.98889
    "a": {"home": 2.10, "draw": 3.40, "away": 3.60},
    "b": {"home": 2.25, "draw": 3.30, "away": 3.30},
    "c": {"home": 2.05, "draw": 3.75, "away": 3.50},
}
NO_ARB = {"a": {"over": 1.90, "under": 1.90}, "b": {"over": 1.95, "under": 1.85}}


def market(market_id: str, books: dict[str, dict[str, float]]) -> dict[str, Any]:
    selections = list(next(iter(books.values())))
    return {"market_id": market_id, "market_type": market_id, "line": None, "period": 0,
            "selections": [
                {"selection_id": s, "name": s.title(),
                 "prices": {b: {"odds": p[s], "suspended": False} for b, p in books.items()}}
                for s in selections]}  # fmt: skip


def test_a_published_arbitrage_is_found_exactly_when_best_prices_sum_below_one(
    http: httpx.Client,
) -> None:
    for event_id, status in (("arb-test-1", "upcoming"), ("arb-test-2", "finished")):
        publish(http, f"sports:event:{event_id}", {
            "event_id": event_id, "sport": "football", "competition": "test-cup",
            "league": "test-cup", "name": event_id, "status": status, "live": False, "seq": 1,
            "starts_at_ms": T0, "markets": [market("1x2", ARB), market("ou", NO_ARB)],
        })  # fmt: skip
    best = ok(http, "/v1/odds/best", event="arb-test-1")["events"][0]
    markets = {m["market_id"]: m for m in best["markets"]}
    assert markets["1x2"]["arbitrage"] is True and markets["ou"]["arbitrage"] is False
    assert markets["1x2"]["implied_sum"] == pytest.approx(1 / 2.25 + 1 / 3.75 + 1 / 3.60)
    assert check_best(ok(http, "/v1/odds", event="arb-test-1")["events"][0], best) == 2

    everything = ok(http, "/v1/arbitrage", stake=100)["arbitrages"]
    ours = [(a["event_id"], a["market_id"]) for a in everything if a["competition"] == "test-cup"]
    assert ours == [("arb-test-1", "1x2")]  # not the finished event, not the plain market
    (arb,) = ok(http, "/v1/arbitrage", stake=100, event="arb-test-1")["arbitrages"]
    assert arb["profit_pct"] == pytest.approx(1.124, abs=5e-4)
    assert [(leg["selection_id"], leg["bookmaker"], leg["odds"]) for leg in arb["legs"]] == [
        ("home", "b", 2.25), ("draw", "c", 3.75), ("away", "a", 3.60)]
    assert ok(http, "/v1/arbitrage", competition="test-cup", live=True)["arbitrages"] == []

    bets = ok(http, "/v1/value-bets", event="arb-test-1", reference="a")
    assert bets["count"] >= 1 and all(b["bookmaker"] != "a" for b in bets["value_bets"])

    # book b suspends its home price: the best home is now 2.10 and the sum goes above 1
    publish(http, "odds:football:test-cup", {
        "bookmaker": "b", "event_id": "arb-test-1", "market_id": "1x2", "market_type": "1x2",
        "selection_id": "home", "selection": "Home", "odds": 2.25, "suspended": True,
    })  # fmt: skip
    best = ok(http, "/v1/odds/best", event="arb-test-1")["events"][0]
    home = best["markets"][0]["selections"][0]
    assert (home["odds"], home["bookmakers"]) == (2.10, ["a"])
    assert best["markets"][0]["arbitrage"] is False
    assert ok(http, "/v1/arbitrage", event="arb-test-1")["arbitrages"] == []
    assert ok(http, "/v1/events/arb-test-2")["status"] == "finished"


# -- simulator invariants end to end ----------------------------------------------------------


def test_simulator_invariants_end_to_end(http: httpx.Client) -> None:
    offsets: list[int] = []
    indexes: list[int] = []
    since = 0
    while True:
        page = ok(http, "/v1/channels/game:slot/messages", since=since, limit=50)
        offsets += [m["offset"] for m in page["messages"]]
        indexes += [m["data"]["index"] for m in page["messages"]]
        if page["next"] is None:
            break
        since = page["next"]
    assert offsets == list(range(1, len(offsets) + 1)) and len(offsets) >= 10
    assert indexes == offsets  # only the simulator publishes there: index n is offset n
    rounds = ok(http, "/v1/games/slot/rounds", since_index=0, limit=1000)["rounds"]
    got = [r["index"] for r in rounds]
    assert got[: len(indexes)] == indexes and got == sorted(set(got))

    seen: dict[str, tuple[int, int]] = {}
    live_seen = False
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        for e in ok(http, "/v1/events")["events"]:
            if e["competition"] == "test-cup":
                continue
            rank = STATUS_RANK[e["status"]]
            live_seen |= e["status"] == "live"
            before = seen.get(e["event_id"])
            if before is not None:
                assert rank >= before[0], (e["event_id"], e["status"])
                assert e["seq"] >= before[1]
            seen[e["event_id"]] = (rank, e["seq"])
        time.sleep(0.1)
    assert live_seen and len(seen) >= 6


# -- restart ----------------------------------------------------------------------------------


def test_a_restarted_server_answers_from_the_store_at_once(tmp_path: Path) -> None:
    srv = start_demo(tmp_path)
    try:
        with httpx.Client(base_url=srv.url, timeout=10, verify=_TLS) as client:
            wait_for(lambda: games_with(client, 3), what="three rounds of every demo game")
            wait_for(lambda: ok(client, "/v1/odds")["count"], what="prices")
        assert srv.signal(15) == 0
        srv = ServerProcess(tmp_path, ["--no-demo"]).start(0)
        with httpx.Client(base_url=srv.url, timeout=10, verify=_TLS) as client:
            games = ok(client, "/v1/games")["games"]
            assert {g["slug"] for g in games} == DEMO_SLUGS
            assert ok(client, "/v1/games") == {"games": games}  # nothing new: the demo is off
            crash = next(g for g in games if g["slug"] == "crash")
            rounds = ok(client, "/v1/games/crash/rounds", since_index=0, limit=1000)["rounds"]
            assert [r["index"] for r in rounds] == list(range(1, len(rounds) + 1))
            assert rounds[-1]["round_id"] == crash["last_round_id"]
            assert ok(client, f"/v1/rounds/{crash['last_round_id']}/verify")["valid"] is True
            assert ok(client, "/v1/games/crash/stats")["count"] == len(rounds)
            assert ok(client, "/v1/events")["count"] >= 1
            assert ok(client, "/v1/odds")["count"] >= 1
    finally:
        srv.kill()
