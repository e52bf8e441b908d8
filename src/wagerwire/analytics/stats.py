"""Live statistics over a window of casino rounds: distribution, hit rates, streaks, colours.

Trackers show the same handful of numbers for every game (how many rounds, the median and the
tail of the multiplier, how often 2× was reached, the longest run without it, how many reds in
a row); computing them here once keeps the REST answers, the dashboard and the tests in step.

Input rounds are dicts as the casino simulator publishes them on ``game:{slug}``::

    {"round_id", "index", "game_slug", "game_type", "timestamp",
     "result": {"crash_point": 2.37, "multiplier": "2.37"}          # crash
              | {"number": 0..14, "color": "red"|"black"|"white"}   # double
              | {"reels": [...], "multiplier": 1.5}                 # slot
              | {"direction": "up"|"down", "multiplier": 1.9}}      # wallstreet

Data Stream style rounds with ``extras`` (a JSON string or object with ``point``,
``multiplier``, ``color``, ``number`` or ``direction``) are read too. Rounds that carry nothing
usable are counted in ``skipped`` and otherwise ignored, never raised on: a window straight from
a feed may hold anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

__all__ = [
    "DEFAULT_QUANTILES",
    "DEFAULT_THRESHOLDS",
    "DOUBLE_COLORS",
    "GameStats",
    "MultiplierStats",
    "RoundOutcome",
    "Streak",
    "game_stats",
    "median",
    "outcome_of",
    "quantile",
    "share_at_or_above",
    "streaks",
    "threshold_label",
]

DEFAULT_QUANTILES: tuple[float, ...] = (10, 25, 50, 75, 90, 95, 99)
"""Percentiles reported when none are requested (``p10`` … ``p99``)."""

DEFAULT_THRESHOLDS: tuple[float, ...] = (1.5, 2.0, 5.0, 10.0)
"""Multipliers whose hit rate (share of rounds at or above) is reported by default."""

DOUBLE_COLORS: tuple[str, ...] = ("red", "black", "white")
"""The three pockets of Double: 1–7 red, 8–14 black, 0 white (domain.md a.4)."""


@dataclass(frozen=True, slots=True)
class RoundOutcome:
    """What statistics need from one round; any part may be missing for a given game type."""

    multiplier: float | None = None
    color: str | None = None
    number: int | None = None
    direction: str | None = None


@dataclass(frozen=True, slots=True)
class Streak:
    """Run lengths of one condition: the longest in the window and the one still running."""

    longest: int
    current: int


@dataclass(frozen=True, slots=True)
class MultiplierStats:
    """Distribution of the multiplier over the rounds that have one."""

    count: int
    mean: float
    median: float
    min: float
    max: float
    quantiles: dict[str, float]
    at_or_above: dict[str, float]


@dataclass(frozen=True, slots=True)
class GameStats:
    """Everything computed over one window; :meth:`to_dict` gives the JSON answer."""

    count: int
    skipped: int
    game_slug: str | None
    game_type: str | None
    first_round_id: Any
    last_round_id: Any
    since: int | None
    until: int | None
    multiplier: MultiplierStats | None
    streaks: dict[str, Streak]
    colors: dict[str, int] = field(default_factory=dict)
    color_shares: dict[str, float] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    directions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A plain dict of JSON types (string keys, numbers, nested dicts)."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Small pure helpers


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 ≤ q ≤ 1) of already sorted values, linearly interpolated.

    This is the common "type 7" definition (NumPy's default), so numbers match spreadsheets.
    """
    if not sorted_values:
        raise ValueError("quantile of an empty sequence")
    if not 0.0 <= q <= 1.0 or math.isnan(q):
        raise ValueError(f"quantile must be within [0, 1], got {q!r}")
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * weight


def median(values: Iterable[float]) -> float:
    """The median (mean of the two middle values for an even count)."""
    return quantile(sorted(values), 0.5)


def share_at_or_above(values: Sequence[float], threshold: float) -> float:
    """The fraction of values ``≥ threshold`` (0.0 for no values)."""
    if not values:
        return 0.0
    return sum(1 for v in values if v >= threshold) / len(values)


def streaks(labels: Iterable[str | None], names: Iterable[str] = ()) -> dict[str, Streak]:
    """Longest and current run of each label in chronological ``labels``.

    ``None`` breaks every run. ``names`` are reported even when they never occur (as 0/0), so
    answers have the same keys every time.
    """
    longest: dict[str, int] = dict.fromkeys(names, 0)
    run_label: str | None = None
    run = 0
    for label in labels:
        if label is not None and label == run_label:
            run += 1
        else:
            run_label, run = label, 1
        if label is not None:
            longest[label] = max(longest.get(label, 0), run)
    return {name: Streak(best, run if name == run_label else 0) for name, best in longest.items()}


def threshold_label(threshold: float) -> str:
    """A compact key for a multiplier (2.0 → ``"2"``, 1.5 → ``"1.5"``)."""
    return f"{threshold:g}"


# ---------------------------------------------------------------------------------------------
# Reading rounds


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip().rstrip("xX"))
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) and result >= 0.0 else None


def _payload(round_: Mapping[str, Any]) -> Mapping[str, Any] | None:
    result = round_.get("result")
    if isinstance(result, Mapping):
        return result
    extras = round_.get("extras")
    if isinstance(extras, str):
        try:
            extras = json.loads(extras)
        except ValueError:
            return None
    return extras if isinstance(extras, Mapping) else None


def outcome_of(round_: object) -> RoundOutcome | None:
    """The outcome of one round dict, or ``None`` when it carries nothing usable.

    A wall street round yields its direction only: its ``multiplier`` is the fixed payout, and
    counting it would make the multiplier statistics meaningless.
    """
    if not isinstance(round_, Mapping):
        return None
    payload = _payload(round_)
    if payload is None:
        return None
    direction = payload.get("direction", payload.get("trending"))
    direction = direction.lower() if isinstance(direction, str) and direction else None
    multiplier = None
    for key in ("crash_point", "multiplier", "point"):
        if direction is not None:
            break  # wall street's multiplier is its fixed payout, not an outcome
        multiplier = _number(payload.get(key))
        if multiplier is not None:
            break
    color = payload.get("color")
    color = color.lower() if isinstance(color, str) and color.lower() in DOUBLE_COLORS else None
    number = payload.get("number")
    if isinstance(number, str) and number.isdigit():
        number = int(number)
    number = number if isinstance(number, int) and not isinstance(number, bool) else None
    if color is None and number is not None and 0 <= number <= 14:
        color = "white" if number == 0 else "red" if number <= 7 else "black"
    if multiplier is None and color is None and direction is None:
        return None
    return RoundOutcome(multiplier, color, number, direction)


def _chronological(rounds: Sequence[Any]) -> list[Mapping[str, Any]]:
    """Rounds oldest first: by ``index`` if all have one, else by ``timestamp``, else as given."""
    mappings = [r for r in rounds if isinstance(r, Mapping)]
    for key in ("index", "timestamp"):
        values = [r.get(key) for r in mappings]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return sorted(mappings, key=lambda r: r[key])
    return mappings


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _only(values: Iterable[object]) -> str | None:
    distinct = {v for v in values if isinstance(v, str)}
    return distinct.pop() if len(distinct) == 1 else None


# ---------------------------------------------------------------------------------------------
# The window


def game_stats(
    rounds: Sequence[Any],
    *,
    quantiles: Iterable[float] = DEFAULT_QUANTILES,
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
    streak_threshold: float = 2.0,
) -> GameStats:
    """Statistics over a window of rounds (any order; sorted oldest first here).

    Args:
        rounds: round dicts of one game (mixing games mixes their numbers).
        quantiles: percentiles in [0, 100]; each is reported as ``p{q}``.
        thresholds: multipliers whose share of rounds at or above is reported.
        streak_threshold: streaks ``below_{t}x`` and ``at_or_above_{t}x`` use this multiplier.

    Raises:
        ValueError: a percentile outside [0, 100] or a non-positive threshold.
    """
    wanted = [float(q) for q in quantiles]
    for q in wanted:
        if not 0.0 <= q <= 100.0:
            raise ValueError(f"percentiles must be within [0, 100], got {q:g}")
    levels = [float(t) for t in thresholds]
    for t in [*levels, float(streak_threshold)]:
        if not math.isfinite(t) or t <= 0.0:
            raise ValueError(f"multiplier thresholds must be positive, got {t:g}")

    ordered = _chronological(rounds)
    outcomes = [(r, outcome_of(r)) for r in ordered]
    usable = [(r, o) for r, o in outcomes if o is not None]
    skipped = len(rounds) - len(usable)

    multipliers = [o.multiplier for _, o in usable if o.multiplier is not None]
    multiplier_stats: MultiplierStats | None = None
    result_streaks: dict[str, Streak] = {}
    if multipliers:
        ordered_values = sorted(multipliers)
        multiplier_stats = MultiplierStats(
            count=len(multipliers),
            mean=math.fsum(multipliers) / len(multipliers),
            median=quantile(ordered_values, 0.5),
            min=ordered_values[0],
            max=ordered_values[-1],
            quantiles={f"p{q:g}": quantile(ordered_values, q / 100.0) for q in wanted},
            at_or_above={threshold_label(t): share_at_or_above(multipliers, t) for t in levels},
        )
        tag = threshold_label(streak_threshold)
        below, above = f"below_{tag}x", f"at_or_above_{tag}x"
        sides = [
            None if o.multiplier is None else above if o.multiplier >= streak_threshold else below
            for _, o in usable
        ]
        result_streaks.update(streaks(sides, (below, above)))

    colors = [o.color for _, o in usable]
    color_counts: dict[str, int] = {}
    color_shares: dict[str, float] = {}
    if any(c is not None for c in colors):
        color_counts = {c: colors.count(c) for c in DOUBLE_COLORS}
        seen = sum(color_counts.values())
        color_shares = {c: n / seen for c, n in color_counts.items()}
        result_streaks.update(streaks(colors, DOUBLE_COLORS))
        no_white = streaks(
            (None if c is None else "no_white" if c != "white" else "white" for c in colors),
            ("no_white",),
        )
        result_streaks["no_white"] = no_white["no_white"]

    numbers: dict[str, int] = {}
    for _, o in usable:
        if o.number is not None:
            numbers[str(o.number)] = numbers.get(str(o.number), 0) + 1
    numbers = dict(sorted(numbers.items(), key=lambda item: int(item[0])))

    directions: dict[str, int] = {}
    direction_labels = [o.direction for _, o in usable]
    for d in direction_labels:
        if d is not None:
            directions[d] = directions.get(d, 0) + 1
    if directions:
        result_streaks.update(streaks(direction_labels, sorted(directions)))

    window = [r for r, _ in usable]
    stamps = [ts for r in window if _is_int(ts := r.get("timestamp"))]
    return GameStats(
        count=len(usable),
        skipped=skipped,
        game_slug=_only(r.get("game_slug") for r in window),
        game_type=_only(r.get("game_type") for r in window),
        first_round_id=window[0].get("round_id") if window else None,
        last_round_id=window[-1].get("round_id") if window else None,
        since=min(stamps) if stamps else None,
        until=max(stamps) if stamps else None,
        multiplier=multiplier_stats,
        streaks=result_streaks,
        colors=color_counts,
        color_shares=color_shares,
        numbers=numbers,
        directions=directions,
    )
