"""The games a server offers, as every dialect sees them: slug, type, provider, hub channel.

Dialects resolve paths and query strings against it (Data Stream's ``/ws/{game}`` and
``/ws/type/{type}``, TrackerSino's ``?games=``, Stake's ``game:{slug}``); the REST routes
of the dialects (api/dialects.py) list it. Built once by the composition root.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wagerwire.errors import NotFound

__all__ = ["Catalog", "CatalogGame"]


@dataclass(frozen=True, slots=True)
class CatalogGame:
    """One game as the dialects see it: slug, canonical type, Data Stream type, provider."""

    slug: str
    game_type: str  # canonical: crash | double | slot | wallstreet
    category: str  # Data Stream's game_type: multiplier | color | trending
    provider: str

    @property
    def channel(self) -> str:
        return f"game:{self.slug}"


class Catalog:
    """The games a server offers; dialects resolve paths and query strings against it."""

    __slots__ = ("games",)

    def __init__(self, games: Iterable[CatalogGame]) -> None:
        self.games: dict[str, CatalogGame] = {g.slug: g for g in games}

    def types(self) -> list[str]:
        return sorted({g.category for g in self.games.values()})

    def game(self, slug: str) -> CatalogGame:
        """Raises ``NotFound`` for a slug the server does not offer."""
        game = self.games.get(slug)
        if game is None:
            raise NotFound(
                f"unknown game {slug[:60]!r}; known games: {', '.join(sorted(self.games))}"
            )
        return game

    def of_type(self, category: str) -> list[CatalogGame]:
        """Raises ``NotFound`` for a type no game has."""
        games = [g for g in self.games.values() if g.category == category]
        if not games:
            raise NotFound(
                f"unknown game type {category[:60]!r}; known types: {', '.join(self.types())}"
            )
        return sorted(games, key=lambda g: g.slug)
