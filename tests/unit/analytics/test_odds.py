"""Odds maths: worked examples from reference/domain.md (b), recomputed here, and properties."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from wagerwire.analytics.odds import (
    american_to_decimal,
    best_prices,
    decimal_to_american,
    decimal_to_fractional,
    expected_value,
    fair_odds,
    fair_probabilities,
    find_arbitrage,
    format_american,
    fractional_to_decimal,
    implied_probability,
    implied_sum,
    kelly_fraction,
    overround,
    power_exponent,
    stake_split,
    value_bets,
)

BOOK = [2.10, 3.40, 3.60]  # domain.md b.3: home, draw, away
BOOKS = {  # domain.md b.4
    "a": {"home": 2.10, "draw": 3.40, "away": 3.60},
    "b": {"home": 2.25, "draw": 3.30, "away": 3.30},
    "c": {"home": 2.05, "draw": 3.75, "away": 3.50},
}

decimals = st.floats(min_value=1.001, max_value=1000.0, allow_nan=False)
probability_sets = st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=2, max_size=6).map(
    lambda ws: [w / math.fsum(ws) for w in ws]
)


# -- worked examples -------------------------------------------------------------------------


def test_american_examples() -> None:
    assert american_to_decimal(150) == pytest.approx(2.5)
    assert american_to_decimal("+150") == pytest.approx(2.5)
    assert american_to_decimal(-120) == pytest.approx(1 + 100 / 120)  # 1.8333
    assert american_to_decimal("-120") == pytest.approx(1.8333, abs=1e-4)
    assert decimal_to_american(2.5) == pytest.approx(150.0)
    assert decimal_to_american(1.85) == pytest.approx(-100 / 0.85)  # -117.65
    assert format_american(1.85) == "-118"
    assert format_american(2.5) == "+150"
    assert format_american(2.0) == "+100"


def test_fractional_examples() -> None:
    assert fractional_to_decimal("5/2") == 3.5
    assert fractional_to_decimal("4/6") == pytest.approx(1.6667, abs=1e-4)
    assert fractional_to_decimal("evens") == 2.0
    assert decimal_to_fractional(3.5) == "5/2"
    assert decimal_to_fractional(1.6667) == "2/3"  # 4/6, reduced
    assert decimal_to_fractional(2.0) == "1/1"
    assert decimal_to_fractional(1.91) == "91/100"


def test_overround_and_multiplicative_example() -> None:
    implied = [Fraction(100, 210), Fraction(10, 34), Fraction(10, 36)]
    total = sum(implied)
    assert overround(BOOK) == pytest.approx(float(total - 1))
    assert overround(BOOK) == pytest.approx(0.0481, abs=5e-5)  # 4.81%
    fair = fair_probabilities(BOOK)
    assert fair == pytest.approx([float(p / total) for p in implied])
    assert fair == pytest.approx([0.45434, 0.28062, 0.26503], abs=5e-6)
    assert fair_odds(BOOK) == pytest.approx([float(total / p) for p in implied])


def test_power_method_example() -> None:
    k = power_exponent(BOOK)
    assert k == pytest.approx(1.0461, abs=5e-5)
    assert math.fsum((1 / d) ** k for d in BOOK) == pytest.approx(1.0, abs=1e-12)
    fair = fair_probabilities(BOOK, "power")
    assert fair == pytest.approx([0.46017, 0.27798, 0.26185], abs=5e-6)


def test_arbitrage_example() -> None:
    arb = find_arbitrage(BOOKS, total_stake=100.0)
    assert arb is not None
    s = 1 / 2.25 + 1 / 3.75 + 1 / 3.60
    assert arb.implied_sum == pytest.approx(s)
    assert arb.implied_sum == pytest.approx(0.98889, abs=5e-6)
    assert arb.profit_pct == pytest.approx(1.124, abs=5e-4)
    legs = {leg.selection: leg for leg in arb.legs}
    assert (legs["home"].bookmaker, legs["draw"].bookmaker, legs["away"].bookmaker) == (
        "b",
        "c",
        "a",
    )
    assert [round(legs[s].stake, 2) for s in ("home", "draw", "away")] == [44.94, 26.97, 28.09]
    assert all(round(leg.payout, 2) == 101.12 for leg in arb.legs)
    assert arb.payout == pytest.approx(100 / s)
    assert arb.profit == pytest.approx(100 / s - 100)


def test_no_arbitrage_within_one_book() -> None:
    assert find_arbitrage({"a": BOOKS["a"]}) is None


def test_value_example() -> None:
    assert expected_value(0.26503, 3.90) == pytest.approx(0.0336, abs=5e-5)
    assert kelly_fraction(0.26503, 3.90) == pytest.approx(0.0116, abs=5e-5)
    assert kelly_fraction(0.2, 3.0) == 0.0  # no edge, no stake


def test_value_bets_against_a_reference_book() -> None:
    # a's fair away probability is 0.26503 (multiplicative); d's 3.90 beats it by 3.36%
    books = {"a": BOOKS["a"], "d": {"home": 2.0, "draw": 3.3, "away": 3.90}}
    found = value_bets(books, reference="a", threshold=0.02)
    assert [(v.selection, v.bookmaker) for v in found] == [("away", "d")]
    assert found[0].edge_pct == pytest.approx(3.36, abs=5e-3)
    assert found[0].kelly == pytest.approx(0.0116, abs=5e-5)
    assert found[0].fair_odds == pytest.approx(1 / 0.26503, abs=1e-3)


def test_value_bets_consensus_and_sorting() -> None:
    found = value_bets(BOOKS)
    assert found  # b's home and c's draw beat the books' average
    assert [v.edge for v in found] == sorted((v.edge for v in found), reverse=True)
    for v in found:
        assert v.edge == pytest.approx(v.fair_probability * v.odds - 1)
        assert v.edge > 0


def test_best_prices_ties_listed() -> None:
    best = best_prices({"y": {"over": 1.9}, "x": {"over": 1.9, "under": 2.0}, "z": {"over": 1.8}})
    assert best["over"].odds == 1.9
    assert best["over"].bookmakers == ("x", "y")
    assert best["over"].bookmaker == "x"
    assert best["under"].bookmakers == ("x",)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: implied_probability(1.0), "greater than 1"),
        (lambda: implied_probability(0.5), "greater than 1"),
        (lambda: implied_probability(float("nan")), "greater than 1"),
        (lambda: decimal_to_american(1.0), "greater than 1"),
        (lambda: american_to_decimal(50), "-100"),
        (lambda: american_to_decimal("abc"), "American"),
        (lambda: fractional_to_decimal("0/4"), "positive"),
        (lambda: fractional_to_decimal("5:2"), "5/2"),
        (lambda: overround([2.0]), "two outcomes"),
        (lambda: fair_probabilities(BOOK, "shin"), "unknown"),  # type: ignore[arg-type]
        (lambda: stake_split(BOOK, 0.0), "positive"),
        (lambda: find_arbitrage({"a": {"home": 2.0}}), "two outcomes"),
        (lambda: value_bets(BOOKS, reference="nobody"), "reference"),
        (lambda: expected_value(1.5, 2.0), "probability"),
        (lambda: decimal_to_fractional(2.0, max_denominator=0), "max_denominator"),
    ],
)
def test_impossible_inputs_raise(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# -- properties ------------------------------------------------------------------------------


@given(decimals)
def test_decimal_american_round_trip(d: float) -> None:
    american = decimal_to_american(d)
    assert american >= 100 or american <= -100
    assert american_to_decimal(american) == pytest.approx(d, rel=1e-12)


@given(st.one_of(st.floats(100, 1e5), st.floats(-1e5, -100)))
def test_american_decimal_round_trip(american: float) -> None:
    d = american_to_decimal(american)
    back = decimal_to_american(d)
    if math.isclose(abs(american), 100.0, rel_tol=1e-9):
        assert back == pytest.approx(100.0)  # +100 and -100 are the same price
    else:
        assert back == pytest.approx(american, rel=1e-9)


@given(st.integers(1, 100), st.integers(1, 100))
def test_fractional_round_trip(a: int, b: int) -> None:
    reduced = Fraction(a, b)
    text = f"{reduced.numerator}/{reduced.denominator}"
    d = fractional_to_decimal(text)
    assert d == pytest.approx(1 + a / b)
    assert decimal_to_fractional(d) == text


@given(st.lists(decimals, min_size=2, max_size=8))
def test_fair_probabilities_sum_to_one(prices: list[float]) -> None:
    for method in ("multiplicative", "power"):
        fair = fair_probabilities(prices, method)  # type: ignore[arg-type]
        assert math.fsum(fair) == pytest.approx(1.0, abs=1e-9)
        assert all(0.0 <= p <= 1.0 for p in fair)  # absurd books can underflow to 0
        # a longer price never gets a larger fair probability
        ranked = sorted(zip(prices, fair, strict=True))
        assert all(x[1] >= y[1] - 1e-12 for x, y in zip(ranked, ranked[1:], strict=False))


@given(probability_sets, st.floats(0.0, 0.25))
def test_bookmaker_books_have_nonnegative_overround(truth: list[float], margin: float) -> None:
    prices = [1 / (p * (1 + margin)) for p in truth]
    assume(all(d > 1.0 for d in prices))
    assert overround(prices) >= -1e-12
    assert overround(prices) == pytest.approx(margin, abs=1e-9)
    assert fair_probabilities(prices) == pytest.approx(truth, abs=1e-9)


@given(probability_sets, st.floats(1.01, 1.5))
def test_power_method_recovers_a_power_book(truth: list[float], k: float) -> None:
    prices = [1 / p ** (1 / k) for p in truth]  # Σ (1/d)^k = Σ p = 1
    assume(all(d > 1.0 for d in prices))
    assert power_exponent(prices) == pytest.approx(k, rel=1e-9)
    assert fair_probabilities(prices, "power") == pytest.approx(truth, abs=1e-9)


books_strategy = st.integers(2, 4).flatmap(
    lambda n: st.dictionaries(
        st.sampled_from(["a", "b", "c", "d", "e"]),
        st.lists(st.floats(1.01, 20.0), min_size=n, max_size=n).map(
            lambda prices: {f"s{i}": d for i, d in enumerate(prices)}
        ),
        min_size=1,
        max_size=5,
    )
)


@given(books_strategy, st.floats(1.0, 10_000.0))
def test_arbitrage_iff_best_implied_sum_below_one(
    books: dict[str, dict[str, float]], stake: float
) -> None:
    selections = next(iter(books.values())).keys()
    best = {s: max(book[s] for book in books.values()) for s in selections}
    total = math.fsum(1 / d for d in best.values())
    arb = find_arbitrage(books, total_stake=stake)
    assert (arb is not None) == (total < 1.0)
    if arb is not None:
        assert {leg.selection: leg.odds for leg in arb.legs} == best
        assert arb.profit > 0
        assert math.fsum(leg.stake for leg in arb.legs) == pytest.approx(stake)
        for leg in arb.legs:
            assert leg.payout == pytest.approx(arb.payout)
            assert books[leg.bookmaker][leg.selection] == leg.odds


@given(st.lists(decimals, min_size=2, max_size=8), st.floats(0.01, 1e6))
def test_stake_split_pays_the_same_whatever_wins(prices: list[float], stake: float) -> None:
    stakes = stake_split(prices, stake)
    assert math.fsum(stakes) == pytest.approx(stake)
    payouts = [s * d for s, d in zip(stakes, prices, strict=True)]
    assert max(payouts) == pytest.approx(min(payouts), rel=1e-9)
    assert payouts[0] == pytest.approx(stake / implied_sum(prices), rel=1e-9)


@given(books_strategy)
def test_best_price_is_the_maximum(books: dict[str, dict[str, float]]) -> None:
    for selection, best in best_prices(books).items():
        offered = {name: book[selection] for name, book in books.items()}
        assert best.odds == max(offered.values())
        assert best.bookmakers == tuple(sorted(n for n, d in offered.items() if d == best.odds))


@given(probability_sets, st.floats(0.005, 0.1))
def test_identical_books_hold_no_value(truth: list[float], margin: float) -> None:
    book = {f"s{i}": 1 / (p * (1 + margin)) for i, p in enumerate(truth)}
    assume(all(d > 1.0 for d in book.values()))
    assert value_bets({"a": book, "b": dict(book)}) == []
