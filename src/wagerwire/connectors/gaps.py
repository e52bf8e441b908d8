"""Gap detection over a source's counting identifiers (round indexes, round ids, offsets)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["Observation", "SequenceTracker"]


@dataclass(frozen=True, slots=True)
class Observation:
    """What one identifier means: ``new`` (next or first), ``duplicate`` (at or below the last
    one seen) or ``gap`` (``missing`` identifiers between ``after`` and it)."""

    kind: Literal["new", "duplicate", "gap"]
    after: int | None = None
    missing: int = 0


class SequenceTracker:
    """The last identifier seen per stream (one game, one channel), each counting up by one.

    ``observe`` does not move the position; ``advance`` does (after the item is published),
    so a crash between the two replays the item instead of skipping it.
    """

    __slots__ = ("last",)

    def __init__(self, last: Mapping[str, int] | None = None) -> None:
        self.last: dict[str, int] = dict(last or {})

    def observe(self, stream: str, ident: int) -> Observation:
        last = self.last.get(stream)
        if last is None:
            return Observation("new")
        if ident <= last:
            return Observation("duplicate", last)
        if ident == last + 1:
            return Observation("new", last)
        return Observation("gap", last, ident - last - 1)

    def advance(self, stream: str, ident: int) -> None:
        if ident > self.last.get(stream, ident - 1):
            self.last[stream] = ident
