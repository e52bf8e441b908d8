"""The states of a client subscription and the one table of legal moves between them.

::

    Idle ─▶ Connecting ─▶ Recovering ⇄ Connected
                │             │            │
                ▼             ▼            ▼
            Disconnected(reason, next_retry_at) ─▶ Connecting …
    any ─▶ Closed(error)   (fatal error, or closed by the owner)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wagerwire.client.errors import SdkError

__all__ = [
    "TRANSITIONS",
    "Closed",
    "Connected",
    "Connecting",
    "Disconnected",
    "Idle",
    "IllegalTransition",
    "Recovering",
    "State",
]


@dataclass(frozen=True, slots=True)
class State:
    """Base of the subscription states."""


@dataclass(frozen=True, slots=True)
class Idle(State):
    """Created; the driver has not started connecting."""


@dataclass(frozen=True, slots=True)
class Connecting(State):
    """Opening the transport and waiting for every ``subscribed`` answer."""

    attempt: int = 0


@dataclass(frozen=True, slots=True)
class Recovering(State):
    """Subscribed; replayed or backfilled history is still arriving."""


@dataclass(frozen=True, slots=True)
class Connected(State):
    """Subscribed and live."""


@dataclass(frozen=True, slots=True)
class Disconnected(State):
    """Lost the connection for ``reason``; the next attempt is due at ``next_retry_at``."""

    reason: SdkError
    next_retry_at: float


@dataclass(frozen=True, slots=True)
class Closed(State):
    """Terminal: closed by its owner (``error`` is ``None``) or by a fatal error."""

    error: SdkError | None = None


TRANSITIONS: Mapping[type[State], frozenset[type[State]]] = {
    Idle: frozenset({Connecting, Closed}),
    Connecting: frozenset({Recovering, Connected, Disconnected, Closed}),
    Recovering: frozenset({Connected, Disconnected, Closed}),
    Connected: frozenset({Recovering, Disconnected, Closed}),
    Disconnected: frozenset({Connecting, Closed}),
    Closed: frozenset(),
}


class IllegalTransition(RuntimeError):
    """The driver fed an input the current state cannot take: a bug in the driver."""
