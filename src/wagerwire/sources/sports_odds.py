"""The sports simulator's true probabilities and price rounding: pure maths, no state.

Exact tennis set and match distributions from the game score, Poisson goal counts, a normal
approximation for basketball margins and totals, and the bounds and rounding of a bookmaker's
decimal price. :class:`~wagerwire.sources.sports.SportsSimulator` draws on these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "MAX_ODDS", "MIN_ODDS", "PLAY_MEAN", "PLAY_POINTS", "PLAY_SQUARE", "PLAY_WEIGHTS", "Outlook",
    "floor_price", "match_dist", "period_total_above", "phi", "poisson", "set_dist", "set_over",
]

MIN_ODDS = 1.01
MAX_ODDS = 1000.0

PLAY_POINTS = (1, 2, 3)  # a basketball scoring play: free throw(s), two, three
PLAY_WEIGHTS = (0.12, 0.6, 0.28)
PLAY_MEAN = sum(p * w for p, w in zip(PLAY_POINTS, PLAY_WEIGHTS, strict=True))
PLAY_SQUARE = sum(p * p * w for p, w in zip(PLAY_POINTS, PLAY_WEIGHTS, strict=True))

def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def poisson(lam: float, limit: int) -> list[float]:
    """Poisson pmf 0..limit-1 with the tail folded into the last cell, so it sums to 1."""
    pmf = [math.exp(-lam)]
    for k in range(1, limit):
        pmf.append(pmf[-1] * lam / k)
    pmf[-1] += max(0.0, 1.0 - math.fsum(pmf))
    return pmf


def set_over(gh: int, ga: int) -> bool:
    return (gh >= 6 or ga >= 6) and abs(gh - ga) >= 2 or gh == 7 or ga == 7


@lru_cache(maxsize=8192)
def set_dist(p_milli: int, gh: int, ga: int) -> tuple[tuple[int, int, float], ...]:
    """Final games of a tennis set from ``gh``-``ga`` as ``(home, away, prob)``; 6-6 → tiebreak."""
    if set_over(gh, ga):
        return ((gh, ga, 1.0),)
    p = p_milli / 1000.0
    merged: dict[tuple[int, int], float] = {}
    for weight, nh, na in ((p, gh + 1, ga), (1.0 - p, gh, ga + 1)):
        for h, a, q in set_dist(p_milli, nh, na):
            merged[(h, a)] = merged.get((h, a), 0.0) + weight * q
    return tuple((h, a, q) for (h, a), q in merged.items())


@lru_cache(maxsize=512)
def fresh_set_match(
    p_milli: int, sets_h: int, sets_a: int
) -> tuple[tuple[int, int, bool, float], ...]:
    """:func:`match_dist` at the start of a set (cached: only four such states per ``p``)."""
    return match_dist(p_milli, sets_h, sets_a, 0, 0)


def match_dist(
    p_milli: int, sets_h: int, sets_a: int, gh: int, ga: int
) -> tuple[tuple[int, int, bool, float], ...]:
    """Games still to be won ``(home, away)`` and whether home wins, best of three sets.

    Exact, from the set and game score, with each game won by home with probability
    ``p_milli / 1000`` (serve ignored).
    """
    merged: dict[tuple[int, int, bool], float] = {}
    for h, a, q in set_dist(p_milli, gh, ga):
        won = h > a
        nsh, nsa = sets_h + won, sets_a + (not won)
        if nsh == 2 or nsa == 2:
            tails: tuple[tuple[int, int, bool, float], ...] = ((0, 0, nsh == 2, 1.0),)
        else:
            tails = fresh_set_match(p_milli, nsh, nsa)
        for th, ta, home_won, tq in tails:
            key = (h - gh + th, a - ga + ta, home_won)
            merged[key] = merged.get(key, 0.0) + q * tq
    return tuple((h, a, w, q) for (h, a, w), q in merged.items())


@dataclass(slots=True)
class Outlook:
    """The hidden truth for one moment: P(home wins), P(draw), and margin/total tail functions."""

    home: float
    draw: float
    away: float
    margin_above: Callable[[float], float]
    total_above: Callable[[float], float]

def floor_price(x: float) -> float:
    return math.floor(x * 1000.0 + 1e-9) / 1000.0


def period_total_above(
    kind: str, scored: int, rate: float, remaining: float, p_milli: int = 500,
    games: tuple[int, int] = (0, 0),
) -> Callable[[float], float]:
    """``y ↦ P(one period's final total > y)`` for a period with ``scored`` so far.

    ``kind`` is the sport's (``goals``: Poisson goals at ``rate`` per second for ``remaining``
    seconds; ``points``: the compound-Poisson normal approximation, ``rate`` scoring plays per
    second; ``sets``: the exact game distribution of a tennis set from ``games``, each game
    won by home with probability ``p_milli / 1000``). A period that is over has
    ``remaining == 0`` (or a finished set) and a certain total.
    """
    if kind == "sets":
        dist = set_dist(p_milli, *games)
        return lambda y: math.fsum(q for h, a, q in dist if h + a > y)
    if kind == "goals":
        pmf = poisson(rate * max(0.0, remaining), 16)
        return lambda y: math.fsum(q for k, q in enumerate(pmf) if scored + k > y)
    mean = scored + rate * PLAY_MEAN * max(0.0, remaining)
    sd = max(1e-6, math.sqrt(rate * PLAY_SQUARE * max(0.0, remaining)))
    return lambda y: 1.0 - phi((y - mean) / sd)
