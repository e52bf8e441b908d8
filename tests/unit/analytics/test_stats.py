"""Game statistics over windows of rounds: hand-computed examples and properties."""

from __future__ import annotations

import json
import statistics
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wagerwire.analytics.stats import (
    Streak,
    game_stats,
    median,
    outcome_of,
    quantile,
    share_at_or_above,
    streaks,
)
from wagerwire.sources.casino import CasinoSimulator, demo_games


def crash(index: int, point: float) -> dict[str, Any]:
    return {
        "round_id": f"crash-{index}",
        "index": index,
        "game_slug": "crash",
        "game_type": "crash",
        "result": {"multiplier": f"{point:.2f}", "crash_point": point},
        "timestamp": 1_000_000 + index * 10_000,
    }


def double(index: int, number: int) -> dict[str, Any]:
    color = "white" if number == 0 else "red" if number <= 7 else "black"
    return {
        "round_id": f"double-{index}",
        "index": index,
        "game_slug": "double",
        "game_type": "double",
        "result": {"number": number, "color": color},
        "timestamp": 2_000_000 + index * 15_000,
    }


POINTS = [1.00, 2.50, 3.00, 1.20, 1.30, 1.90, 2.00, 12.40, 1.05, 1.10]


def test_crash_window_by_hand() -> None:
    stats = game_stats([crash(i + 1, p) for i, p in enumerate(POINTS)], quantiles=(10, 50, 90, 99))
    assert stats.count == 10 and stats.skipped == 0
    assert (stats.game_slug, stats.game_type) == ("crash", "crash")
    assert (stats.first_round_id, stats.last_round_id) == ("crash-1", "crash-10")
    assert (stats.since, stats.until) == (1_010_000, 1_100_000)
    m = stats.multiplier
    assert m is not None
    # sorted: 1.00 1.05 1.10 1.20 1.30 1.90 2.00 2.50 3.00 12.40
    assert (m.min, m.max) == (1.00, 12.40)
    assert m.median == pytest.approx((1.30 + 1.90) / 2)
    assert m.mean == pytest.approx(sum(POINTS) / 10)
    # p10: position 0.9 between 1.00 and 1.05; p90: 8.1 between 3.00 and 12.40
    assert m.quantiles["p10"] == pytest.approx(1.00 + 0.9 * 0.05)
    assert m.quantiles["p50"] == pytest.approx(1.60)
    assert m.quantiles["p90"] == pytest.approx(3.00 + 0.1 * 9.40)
    assert m.quantiles["p99"] == pytest.approx(3.00 + 0.91 * 9.40)
    assert m.at_or_above == {"1.5": 0.5, "2": 0.4, "5": 0.1, "10": 0.1}
    # below 2x: [1.00] [1.20 1.30 1.90] [1.05 1.10]; at/above: [2.50 3.00] [2.00 12.40]
    assert stats.streaks == {
        "below_2x": Streak(longest=3, current=2),
        "at_or_above_2x": Streak(longest=2, current=0),
    }
    assert stats.colors == {} and stats.directions == {}


def test_streak_threshold_is_configurable() -> None:
    stats = game_stats([crash(i + 1, p) for i, p in enumerate(POINTS)], streak_threshold=1.5)
    # below 1.5: [1.00] [1.20 1.30] [1.05 1.10]; at/above: [2.50 3.00] [1.90 2.00 12.40]
    assert stats.streaks["below_1.5x"] == Streak(2, 2)
    assert stats.streaks["at_or_above_1.5x"] == Streak(3, 0)


def test_rounds_in_any_order_are_sorted_by_index() -> None:
    rounds = [crash(i + 1, p) for i, p in enumerate(POINTS)]
    assert game_stats(list(reversed(rounds))) == game_stats(rounds)


def test_double_colours_and_streaks_by_hand() -> None:
    numbers = [3, 9, 10, 0, 5, 6, 1, 14, 2, 4]
    # colours: red black black white red red red black red red
    stats = game_stats([double(i + 1, n) for i, n in enumerate(numbers)])
    assert stats.multiplier is None
    assert stats.colors == {"red": 6, "black": 3, "white": 1}
    assert stats.color_shares == {"red": 0.6, "black": 0.3, "white": 0.1}
    assert stats.streaks["red"] == Streak(3, 2)
    assert stats.streaks["black"] == Streak(2, 0)
    assert stats.streaks["white"] == Streak(1, 0)
    assert stats.streaks["no_white"] == Streak(6, 6)
    assert stats.numbers == {str(n): 1 for n in sorted(numbers)}


def test_wallstreet_counts_directions_not_its_fixed_payout() -> None:
    directions = ["up", "up", "down", "up", "up", "up"]
    rounds = [
        {"round_id": i, "index": i, "game_type": "wallstreet",
         "result": {"direction": d, "multiplier": "1.96"}}
        for i, d in enumerate(directions)
    ]  # fmt: skip
    stats = game_stats(rounds)
    assert stats.multiplier is None
    assert stats.directions == {"up": 5, "down": 1}
    assert stats.streaks == {"down": Streak(1, 0), "up": Streak(3, 3)}


def test_slot_multipliers() -> None:
    rounds = [
        {"round_id": i, "index": i, "result": {"reels": ["a", "b", "c"], "multiplier": m}}
        for i, m in enumerate(["0.40", "1.50", "0.00", "100.00"])
    ]
    stats = game_stats(rounds, thresholds=(1.0,))
    assert stats.multiplier is not None
    assert stats.multiplier.median == pytest.approx(0.95)
    assert stats.multiplier.at_or_above == {"1": 0.5}


def test_data_stream_extras_are_read() -> None:
    rounds = [
        {"round_id": 1, "timestamp": 5, "extras": json.dumps({"point": "11.72"})},
        {"round_id": 2, "timestamp": 6, "extras": {"color": "white", "number": 0}},
        {"round_id": 3, "timestamp": 7, "extras": json.dumps({"trending": "up"})},
    ]
    outcomes = [outcome_of(r) for r in rounds]
    assert outcomes[0] is not None and outcomes[0].multiplier == 11.72
    assert outcomes[1] is not None and outcomes[1].color == "white"
    assert outcomes[2] is not None and outcomes[2].direction == "up"


def test_unusable_rounds_are_skipped_not_raised() -> None:
    window: list[Any] = [
        crash(1, 2.0),
        "not a round",
        {"round_id": 9},
        {"result": {"multiplier": "lots"}},
        {"result": {"crash_point": float("nan")}},
        {"extras": "{not json"},
        {"result": {"number": 99}},
        crash(2, 1.5),
    ]
    stats = game_stats(window)
    assert (stats.count, stats.skipped) == (2, 6)
    assert stats.multiplier is not None and stats.multiplier.count == 2


def test_number_without_colour_gets_its_pocket_colour() -> None:
    outcome = outcome_of({"result": {"number": 8}})
    assert outcome is not None and outcome.color == "black"


def test_empty_window() -> None:
    stats = game_stats([])
    assert stats.count == 0 and stats.multiplier is None and stats.streaks == {}
    assert stats.first_round_id is None and stats.since is None


def test_to_dict_is_json() -> None:
    stats = game_stats([crash(i + 1, p) for i, p in enumerate(POINTS)] + [double(11, 0)])
    encoded = orjson.loads(orjson.dumps(stats.to_dict()))
    assert encoded["multiplier"]["quantiles"]["p50"] == pytest.approx(1.6)
    assert encoded["streaks"]["white"] == {"longest": 1, "current": 1}
    assert encoded["game_slug"] is None  # a mixed window belongs to no single game


@pytest.mark.parametrize(
    "kwargs",
    [{"quantiles": (101,)}, {"quantiles": (-1,)}, {"thresholds": (0,)}, {"streak_threshold": -2}],
)
def test_bad_parameters_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        game_stats([crash(1, 2.0)], **kwargs)


def test_quantile_errors() -> None:
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError):
        quantile([1.0], 1.5)


def test_every_demo_game_of_the_casino_simulator() -> None:
    for spec in demo_games():
        sim = CasinoSimulator(spec, seed=7, chain_length=64)
        rounds = [sim.next_round(1_000 * i) for i in range(1, 41)]
        stats = game_stats(rounds)
        assert (stats.count, stats.skipped) == (40, 0), spec.slug
        assert stats.game_slug == spec.slug
        if spec.type in ("crash", "slide", "slot"):
            assert stats.multiplier is not None and stats.multiplier.count == 40
        elif spec.type == "double":
            assert sum(stats.colors.values()) == 40
        else:
            assert sum(stats.directions.values()) == 40


# -- properties ------------------------------------------------------------------------------

values = st.lists(st.floats(0.0, 1e6), min_size=1, max_size=200)


@given(values, st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_quantile_is_monotone_and_bounded(xs: list[float], q1: float, q2: float) -> None:
    ordered = sorted(xs)
    lo, hi = sorted((q1, q2))
    assert ordered[0] <= quantile(ordered, lo) <= quantile(ordered, hi) <= ordered[-1]
    assert quantile(ordered, 0.0) == ordered[0] and quantile(ordered, 1.0) == ordered[-1]


@given(values)
def test_median_matches_the_standard_library(xs: list[float]) -> None:
    assert median(xs) == pytest.approx(statistics.median(xs))


@given(values, st.floats(0.0, 1e6))
def test_share_counts_at_or_above(xs: list[float], threshold: float) -> None:
    share = share_at_or_above(xs, threshold)
    assert 0.0 <= share <= 1.0
    assert share * len(xs) == pytest.approx(len([x for x in xs if x >= threshold]))


@given(st.lists(st.sampled_from(["a", "b", None]), max_size=60))
def test_streaks_match_brute_force(labels: list[str | None]) -> None:
    result = streaks(labels, ("a", "b"))
    for name in ("a", "b"):
        runs = [0]
        for label in labels:
            runs.append(runs[-1] + 1 if label == name else 0)
        assert result[name].longest == max(runs)
        assert result[name].current == runs[-1]
        assert result[name].current <= result[name].longest
