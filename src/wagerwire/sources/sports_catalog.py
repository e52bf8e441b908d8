"""The sports simulator's catalogue: sports, competitions, teams, bookmakers and its config.

Plain data, shared by the simulator and by the dialects that name sports and bookmakers
(OddsStream's ``/api/sports`` and ``/api/bookmakers``) without pulling in the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BOOKMAKERS", "SPORTS", "Bookmaker", "Competition", "SportSpec", "SportsConfig"]

@dataclass(frozen=True, slots=True)
class Competition:
    """A league: lowercase slug (used in channel names), display name and its teams."""

    slug: str
    name: str
    teams: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SportSpec:
    """How a sport is played and scored, as far as the simulator needs it.

    ``kind`` picks the model: ``goals`` (Poisson goals, 3-way result), ``points`` (scoring
    plays worth 1–3, normal approximation, overtime on a tie) or ``sets`` (tennis games won with
    a fixed probability, best of three sets).
    """

    slug: str
    name: str
    kind: Literal["goals", "points", "sets"]
    periods: int
    period_seconds: int
    scoring: tuple[float, float]
    competitions: tuple[Competition, ...]


def _league(slug: str, name: str, teams: str) -> Competition:
    return Competition(slug, name, tuple(t.strip() for t in teams.split(",")))


SPORTS: tuple[SportSpec, ...] = (
    SportSpec("football", "Football", "goals", 2, 45 * 60, (2.3, 3.1), (
        _league("epl", "Premier League", "Arsenal, Chelsea, Liverpool, Everton, Brighton, "
                "Fulham, Brentford, Newcastle, Aston Villa, Wolves"),
        _league("lig1", "Ligue 1", "PSG, Lyon, Marseille, Lille, Nantes, Rennes, Nice, Lens, "
                "Toulouse, Reims"),
        _league("laliga", "LaLiga", "Sevilla, Valencia, Villarreal, Getafe, Osasuna, Girona, "
                "Alaves, Mallorca, Celta, Betis"),
    )),
    SportSpec("basketball", "Basketball", "points", 4, 12 * 60, (205.0, 235.0), (
        _league("nba", "NBA", "Celtics, Lakers, Heat, Nuggets, Bucks, Suns, Knicks, Warriors, "
                "Bulls, Mavericks"),
        _league("euroleague", "EuroLeague", "Real Madrid, Olympiacos, Fenerbahce, Monaco, "
                "Partizan, Baskonia, Zalgiris, Virtus Bologna"),
    )),
    SportSpec("tennis", "Tennis", "sets", 3, 0, (150.0, 270.0), (
        _league("atp", "ATP Tour", "A. Marlow, J. Okafor, L. Brandt, M. Ruiz, K. Sato, P. Novak, "
                "D. Lindqvist, R. Moreau"),
        _league("wta", "WTA Tour", "E. Varga, S. Ito, C. Duarte, N. Keller, H. Berg, V. Costa, "
                "T. Nwosu, I. Petrova"),
    )),
    SportSpec("ice-hockey", "Ice Hockey", "goals", 3, 20 * 60, (5.3, 6.5), (
        _league("nhl", "NHL", "Bruins, Rangers, Maple Leafs, Canadiens, Oilers, Penguins, "
                "Avalanche, Lightning"),
        _league("shl", "SHL", "Frolunda, Farjestad, Skelleftea, Lulea, Djurgarden, Rogle"),
    )),
)  # fmt: skip
"""Sports, their competitions and teams; ``scoring`` is the range of expected goals or points
per game, or for tennis of game-seconds per game."""


@dataclass(frozen=True, slots=True)
class Bookmaker:
    """A simulated bookmaker (fictional) and the margin it usually runs."""

    slug: str
    name: str
    margin: float


BOOKMAKERS: tuple[Bookmaker, ...] = (
    Bookmaker("sharpline", "Sharpline", 0.025),
    Bookmaker("northbet", "NorthBet", 0.045),
    Bookmaker("harbourbet", "HarbourBet", 0.05),
    Bookmaker("kingsodds", "KingsOdds", 0.06),
    Bookmaker("luckyline", "LuckyLine", 0.07),
    Bookmaker("oddsfox", "OddsFox", 0.04),
    Bookmaker("meridian", "Meridian", 0.055),
)


@dataclass(frozen=True, slots=True)
class SportsConfig:
    """Everything that shapes a simulation; the same config and ``now`` sequence → same output.

    ``time_scale`` is game-seconds per real second (60: a football match lasts 90 s).
    ``margin_range`` bounds every book's overround on every priced market. ``id_prefix``
    defaults to the first ``now`` in base 36, so a restarted hub does not reuse event ids.
    """

    seed: int = 0
    max_events: int = 12
    interval_ms: int = 1000
    time_scale: float = 60.0
    start_delay_ms: tuple[int, int] = (20_000, 180_000)
    linger_ms: int = 30_000
    suspend_ms: int = 6_000
    margin_range: tuple[float, float] = (0.02, 0.08)
    live_update_chance: float = 0.1
    prematch_update_chance: float = 0.03
    reprice_tolerance: float = 0.03
    book_suspend_chance: float = 0.002
    bookmakers: tuple[Bookmaker, ...] = BOOKMAKERS
    sports: tuple[SportSpec, ...] = SPORTS
    id_prefix: str | None = None

    def __post_init__(self) -> None:
        lo, hi = self.margin_range
        if not 0.0 <= lo < hi or hi - lo < 0.01:
            raise ValueError(
                f"margin_range must be 0 <= lo < hi with hi - lo >= 0.01, got {self.margin_range}"
            )
        if self.max_events < 1 or not self.bookmakers or not self.sports:
            raise ValueError("need max_events >= 1, at least one bookmaker and one sport")
        if self.time_scale <= 0 or self.interval_ms <= 0:
            raise ValueError("time_scale and interval_ms must be positive")
        if not 0 <= self.start_delay_ms[0] <= self.start_delay_ms[1]:
            raise ValueError(f"start_delay_ms must be an ordered pair, got {self.start_delay_ms}")
