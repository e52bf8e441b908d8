"""The optional parts a default server runs with, chosen from the settings."""

from __future__ import annotations

from wagerwire.app import Feature
from wagerwire.config import Settings

__all__ = ["default_features"]


def default_features(settings: Settings) -> list[Feature]:
    """Demo sources (unless ``--no-demo``), domain REST; dialects and auth plug in here."""
    return []
