"""The catalog: slugs and types to hub channels, NotFound with the known names."""

from __future__ import annotations

import pytest
from dialect_fakes import CATALOG

from wagerwire.errors import NotFound


def test_games_and_types() -> None:
    assert CATALOG.game("crash").channel == "game:crash"
    assert CATALOG.types() == ["color", "multiplier"]
    assert [g.slug for g in CATALOG.of_type("multiplier")] == [
        "crash", "roobet-crash", "slot", "stake-crash"]


def test_unknown_game_and_type() -> None:
    with pytest.raises(NotFound, match="unknown game 'nope'; known games: crash, double"):
        CATALOG.game("nope")
    with pytest.raises(NotFound, match="unknown game type 'trend'; known types: color, multi"):
        CATALOG.of_type("trend")
