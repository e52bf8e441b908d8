"""Odds maths: formats, implied probability, margin, fair odds, best price, arbitrage, value.

Every function is pure and works on decimal odds (``d``, the total return per unit staked);
American and fractional odds are converted at the edges. A *book* is the list of prices one
bookmaker offers on every selection of one market (same line, same period); the functions that
take a book assume it is complete (every outcome of the market, nothing suspended), because
margin and fair probabilities mean nothing otherwise. Impossible inputs (decimal odds ≤ 1,
American odds strictly between -100 and +100, probabilities outside (0, 1], fewer than two
outcomes) raise :class:`ValueError` with the offending value, so the REST layer can turn them
into 422 answers.

Formulas and worked examples are in ``reference/domain.md`` section (b).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = [
    "MIN_DECIMAL",
    "Arbitrage",
    "ArbitrageLeg",
    "BestPrice",
    "DevigMethod",
    "ValueBet",
    "american_to_decimal",
    "best_prices",
    "decimal_to_american",
    "decimal_to_fractional",
    "expected_value",
    "fair_odds",
    "fair_probabilities",
    "find_arbitrage",
    "format_american",
    "fractional_to_decimal",
    "implied_probabilities",
    "implied_probability",
    "implied_sum",
    "kelly_fraction",
    "overround",
    "power_exponent",
    "stake_split",
    "value_bets",
]

MIN_DECIMAL = 1.0
"""Decimal odds must be strictly greater than this (a price of 1.0 returns only the stake)."""

DevigMethod = Literal["multiplicative", "power"]
"""How the margin is removed: proportional normalisation, or the power method (``Σ p^k = 1``)."""

Books = Mapping[str, Mapping[str, float]]
"""``bookmaker → selection → decimal odds`` for one market (suspended prices left out)."""


# ---------------------------------------------------------------------------------------------
# Formats


def _check_decimal(decimal: float) -> float:
    value = float(decimal)
    if not math.isfinite(value) or value <= MIN_DECIMAL:
        raise ValueError(f"decimal odds must be finite and greater than 1, got {decimal!r}")
    return value


def _check_probability(probability: float) -> float:
    value = float(probability)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"probability must be in (0, 1], got {probability!r}")
    return value


def american_to_decimal(american: float | str) -> float:
    """Convert American odds (``+150``, ``-120`` or the strings ``"+150"``/``"-120"``) to decimal.

    Raises:
        ValueError: not a number, or strictly between -100 and +100 (no such price exists).
    """
    try:
        value = float(american)
    except (TypeError, ValueError):
        raise ValueError(
            f"American odds must be a number like +150 or -120, got {american!r}"
        ) from None
    if not math.isfinite(value) or -100.0 < value < 100.0:
        raise ValueError(f"American odds must be <= -100 or >= +100, got {american!r}")
    if value > 0:
        return 1.0 + value / 100.0
    return 1.0 + 100.0 / -value


def decimal_to_american(decimal: float) -> float:
    """Convert decimal odds to American: ``+100(d-1)`` from 2.0 up, ``-100/(d-1)`` below.

    Unrounded so it round-trips; use :func:`format_american` for display.
    """
    d = _check_decimal(decimal)
    if d >= 2.0:
        return 100.0 * (d - 1.0)
    return -100.0 / (d - 1.0)


def format_american(decimal: float) -> str:
    """American odds as a signed whole-number string (``"+150"``, ``"-118"``), as feeds show them."""
    american = decimal_to_american(decimal)
    rounded = round(american)
    if rounded >= 0:
        return f"+{max(rounded, 100)}"
    return str(min(rounded, -100))


def fractional_to_decimal(fraction: str) -> float:
    """Convert fractional odds ``"a/b"`` (``"5/2"`` → 3.5); ``"evens"``/``"evs"`` mean 1/1.

    Raises:
        ValueError: not of the form ``a/b`` with whole numbers a > 0 and b > 0.
    """
    text = fraction.strip().lower()
    if text in ("evens", "evs", "even"):
        return 2.0
    numerator, sep, denominator = text.partition("/")
    if not sep or not numerator.strip().isdigit() or not denominator.strip().isdigit():
        raise ValueError(f"fractional odds must look like '5/2', got {fraction!r}")
    a, b = int(numerator), int(denominator)
    if a <= 0 or b <= 0:
        raise ValueError(
            f"fractional odds need a positive numerator and denominator, got {fraction!r}"
        )
    return 1.0 + a / b


def decimal_to_fractional(decimal: float, *, max_denominator: int = 100) -> str:
    """Convert decimal odds to reduced fractional odds (3.5 → ``"5/2"``, 1.6667 → ``"2/3"``).

    The fraction is the closest one whose denominator is at most ``max_denominator``, so the
    rounding in a decimal price (1.67 for 4/6) does not produce ``"67/100"`` unless asked to.
    """
    d = _check_decimal(decimal)
    if max_denominator < 1:
        raise ValueError(f"max_denominator must be >= 1, got {max_denominator}")
    profit = Fraction(d - 1.0).limit_denominator(max_denominator)
    if profit <= 0:  # d barely above 1: the closest small fraction is 0; keep the smallest price
        profit = Fraction(1, max_denominator)
    return f"{profit.numerator}/{profit.denominator}"


# ---------------------------------------------------------------------------------------------
# Probability and margin


def implied_probability(decimal: float) -> float:
    """The probability a price implies, ``1/d`` (margin included)."""
    return 1.0 / _check_decimal(decimal)


def implied_probabilities(prices: Sequence[float]) -> list[float]:
    """``1/d`` for every price of a book; at least two outcomes."""
    if len(prices) < 2:
        raise ValueError(f"a market needs at least two outcomes, got {len(prices)}")
    return [implied_probability(d) for d in prices]


def implied_sum(prices: Sequence[float]) -> float:
    """``Σ 1/d``: above 1 for a bookmaker's book, below 1 for best prices forming an arbitrage."""
    return math.fsum(implied_probabilities(prices))


def overround(prices: Sequence[float]) -> float:
    """The book's margin ``Σ 1/d − 1`` as a fraction (0.0481 = 4.81%)."""
    return implied_sum(prices) - 1.0


def power_exponent(prices: Sequence[float]) -> float:
    """The ``k`` of the power method: ``Σ (1/d_i)^k = 1``.

    ``f(k) = Σ p_i^k − 1`` falls strictly from ``n − 1`` (k → 0) to ``−1`` (k → ∞) because every
    ``p_i`` is in (0, 1), so the root is unique; it is found by Newton steps kept inside a
    bisection bracket. ``k > 1`` for a book with a margin, ``k < 1`` for a sum below 1.
    """
    implied = implied_probabilities(prices)
    logs = [math.log(p) for p in implied]

    def f(k: float) -> float:
        return math.fsum(math.exp(k * lp) for lp in logs) - 1.0

    lo, hi = 1.0, 1.0
    while f(lo) <= 0.0:
        lo /= 2.0
    while f(hi) >= 0.0:
        hi *= 2.0
    k = 1.0
    for _ in range(200):
        value = f(k)
        if value == 0.0:
            break
        if value > 0.0:
            lo = k
        else:
            hi = k
        slope = math.fsum(lp * math.exp(k * lp) for lp in logs)
        step = k - value / slope if slope != 0.0 else (lo + hi) / 2.0
        if not lo < step < hi:
            step = (lo + hi) / 2.0
        if abs(step - k) <= 1e-15 * k:
            return step
        k = step
    return k


def fair_probabilities(
    prices: Sequence[float], method: DevigMethod = "multiplicative"
) -> list[float]:
    """Probabilities with the margin removed; they sum to 1.

    ``multiplicative`` divides each ``1/d`` by their sum; ``power`` raises each to the ``k`` of
    :func:`power_exponent`, which takes more margin off long shots (favourite–longshot bias).
    """
    implied = implied_probabilities(prices)
    if method == "multiplicative":
        total = math.fsum(implied)
        return [p / total for p in implied]
    if method == "power":
        k = power_exponent(prices)
        raw = [p**k for p in implied]
        total = math.fsum(raw)  # 1 up to rounding; normalise away the last ulps
        return [p / total for p in raw]
    raise ValueError(f"unknown de-vig method {method!r}; use 'multiplicative' or 'power'")


def fair_odds(prices: Sequence[float], method: DevigMethod = "multiplicative") -> list[float]:
    """Decimal odds with the margin removed (``1 / fair probability``)."""
    return [1.0 / p for p in fair_probabilities(prices, method)]


def expected_value(probability: float, decimal: float) -> float:
    """Expected profit per unit staked, ``q·d − 1`` (0.0336 = +3.36%)."""
    return _check_probability(probability) * _check_decimal(decimal) - 1.0


def kelly_fraction(probability: float, decimal: float) -> float:
    """Kelly stake as a fraction of bankroll, ``(q·d − 1)/(d − 1)``; 0 when there is no edge."""
    d = _check_decimal(decimal)
    return max(0.0, expected_value(probability, d) / (d - 1.0))


# ---------------------------------------------------------------------------------------------
# Across bookmakers


@dataclass(frozen=True, slots=True)
class BestPrice:
    """The highest price for one selection and every bookmaker offering it (sorted)."""

    selection: str
    odds: float
    bookmakers: tuple[str, ...]

    @property
    def bookmaker(self) -> str:
        """One bookmaker with the best price (the first by name, so answers are stable)."""
        return self.bookmakers[0]


def best_prices(books: Books) -> dict[str, BestPrice]:
    """The best price per selection across ``bookmaker → selection → decimal odds``.

    Leave suspended or stale prices out of ``books``: a price that cannot be taken is not a
    price. Selections are returned in the order first seen.
    """
    best: dict[str, tuple[float, list[str]]] = {}
    for bookmaker in sorted(books):
        for selection, price in books[bookmaker].items():
            d = _check_decimal(price)
            current = best.get(selection)
            if current is None or d > current[0]:
                best[selection] = (d, [bookmaker])
            elif d == current[0]:
                current[1].append(bookmaker)
    return {s: BestPrice(s, d, tuple(names)) for s, (d, names) in best.items()}


def stake_split(prices: Sequence[float], total_stake: float) -> list[float]:
    """Stakes ``s_i = B·(1/d_i)/Σ(1/d)`` that return the same amount whichever outcome wins."""
    if not math.isfinite(total_stake) or total_stake <= 0.0:
        raise ValueError(f"total stake must be positive, got {total_stake!r}")
    implied = implied_probabilities(prices)
    total = math.fsum(implied)
    return [total_stake * p / total for p in implied]


@dataclass(frozen=True, slots=True)
class ArbitrageLeg:
    """One bet of an arbitrage: where to place it, at what price, how much, and what it returns."""

    selection: str
    bookmaker: str
    odds: float
    stake: float
    payout: float


@dataclass(frozen=True, slots=True)
class Arbitrage:
    """A set of best prices whose implied sum is below 1, with the equal-payout stake split."""

    legs: tuple[ArbitrageLeg, ...]
    implied_sum: float
    total_stake: float
    payout: float
    profit: float
    profit_pct: float


def find_arbitrage(books: Books, total_stake: float = 100.0) -> Arbitrage | None:
    """The arbitrage across ``books`` if the best prices have ``Σ 1/best < 1``, else ``None``.

    ``books`` must cover every outcome of the market between them. Each leg's stake is
    ``B·(1/d)/S``, so every outcome returns ``B/S`` and the profit is ``B·(1/S − 1)``.
    """
    best = best_prices(books)
    if len(best) < 2:
        raise ValueError(f"a market needs at least two outcomes, got {len(best)}")
    picks = list(best.values())
    prices = [b.odds for b in picks]
    s = implied_sum(prices)
    if s >= 1.0:
        return None
    stakes = stake_split(prices, total_stake)
    legs = tuple(
        ArbitrageLeg(b.selection, b.bookmaker, b.odds, stake, stake * b.odds)
        for b, stake in zip(picks, stakes, strict=True)
    )
    payout = total_stake / s
    return Arbitrage(
        legs=legs,
        implied_sum=s,
        total_stake=total_stake,
        payout=payout,
        profit=payout - total_stake,
        profit_pct=(1.0 / s - 1.0) * 100.0,
    )


@dataclass(frozen=True, slots=True)
class ValueBet:
    """A best price above its fair value: ``edge = q·d − 1`` with ``q`` the fair probability."""

    selection: str
    bookmaker: str
    odds: float
    fair_probability: float
    fair_odds: float
    edge: float
    edge_pct: float
    kelly: float


def _consensus(
    books: Books, selections: Sequence[str], method: DevigMethod, reference: str | None
) -> dict[str, float]:
    """Fair probability per selection: one reference book de-vigged, or the mean over books."""
    names = [reference] if reference is not None else sorted(books)
    sums = dict.fromkeys(selections, 0.0)
    used = 0
    for name in names:
        book = books.get(name)
        if book is None or any(s not in book for s in selections):
            continue  # an incomplete book has no meaningful margin
        for s, q in zip(
            selections, fair_probabilities([book[s] for s in selections], method), strict=True
        ):
            sums[s] += q
        used += 1
    if used == 0:
        which = f"reference book {reference!r}" if reference is not None else "no book"
        raise ValueError(f"{which} prices every selection of the market")
    total = math.fsum(sums.values())
    return {s: v / total for s, v in sums.items()}


def value_bets(
    books: Books,
    *,
    threshold: float = 0.0,
    method: DevigMethod = "multiplicative",
    reference: str | None = None,
) -> list[ValueBet]:
    """Selections whose best price beats the fair consensus by more than ``threshold`` (EV).

    The fair probability of each selection is the de-vigged book of ``reference`` (a sharp
    bookmaker) or, by default, the mean of every complete book's de-vigged probabilities,
    renormalised to sum to 1. Results are sorted by edge, largest first.
    """
    best = best_prices(books)
    if len(best) < 2:
        raise ValueError(f"a market needs at least two outcomes, got {len(best)}")
    fair = _consensus(books, list(best), method, reference)
    found: list[ValueBet] = []
    for selection, price in best.items():
        q = fair[selection]
        edge = q * price.odds - 1.0
        if edge > threshold:
            found.append(
                ValueBet(
                    selection=selection,
                    bookmaker=price.bookmaker,
                    odds=price.odds,
                    fair_probability=q,
                    fair_odds=1.0 / q,
                    edge=edge,
                    edge_pct=edge * 100.0,
                    kelly=kelly_fraction(q, price.odds),
                )
            )
    found.sort(key=lambda v: -v.edge)
    return found
