"""Messages and positions: what a channel carries and where a reader stands in it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Message", "Position", "PublishResult", "SubscribeReply"]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader stands in one channel: the last offset it has, in this epoch."""

    epoch: str
    offset: int


@dataclass(slots=True, eq=False)
class Message:
    """One message of one channel.

    ``data`` is the payload already encoded as JSON bytes: it is encoded once at publish and
    embedded verbatim in every outgoing frame, never decoded on the delivery path.
    ``attrs`` are string attributes that subscription filters match on (merged over the
    channel's own attributes).
    """

    channel: str
    offset: int
    epoch: str
    ts: int
    data: bytes
    attrs: Mapping[str, str] | None = None
    idempotency_key: str | None = None
    # (conflation key, lifecycle) once a channel policy classified it (core/conflation.py)
    meta: tuple[str | None, bool] | None = field(default=None, repr=False)

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.offset)


@dataclass(frozen=True, slots=True)
class PublishResult:
    """The answer to a publish; ``duplicate`` is true when an idempotency key matched."""

    message: Message
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class SubscribeReply:
    """One ``subscribed`` answer: a channel (or pattern) and whether its resume held."""

    channel: str
    epoch: str
    offset: int
    recovered: bool
    pattern: bool = False
    image: bool = False  # the latest message per key follows, flagged as an image
    conflate_ms: int = 0  # the effective per-key interval (0: every message)
    delay_ms: int = 0  # the plan's delay
