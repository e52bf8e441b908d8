"""What a subscription delivers to the application."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from wagerwire.types import Json

__all__ = ["ClientMessage", "MessageSource"]

MessageSource = Literal["live", "replay", "backfill"]
"""How a message reached the client: pushed live, replayed after a resume, or fetched over REST."""


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One message as the application sees it.

    ``source`` says how it arrived: ``live``, ``replay`` (re-sent by the server after a resume)
    or ``backfill`` (fetched over REST because the server could not replay it).
    """

    channel: str
    offset: int
    epoch: str
    ts: int
    data: Json
    source: MessageSource = "live"
