"""What the client protocol asks its driver to do: frozen values dispatched with ``match``."""

from __future__ import annotations

from dataclasses import dataclass

from wagerwire.client.errors import SdkError
from wagerwire.client.messages import ClientMessage
from wagerwire.client.states import State
from wagerwire.types import Json

__all__ = [
    "Action",
    "BackfillNeeded",
    "Deliver",
    "Fail",
    "GapDetected",
    "Reconnect",
    "SendFrame",
    "StateChanged",
    "Superseded",
]


@dataclass(frozen=True, slots=True)
class Action:
    """Base of everything the protocol asks its driver to do."""


@dataclass(frozen=True, slots=True)
class SendFrame(Action):
    """Send this JSON object as one frame (a WebSocket text frame, a WebTransport line)."""

    frame: dict[str, Json]


@dataclass(frozen=True, slots=True)
class Deliver(Action):
    """Hand this message to the application."""

    message: ClientMessage


@dataclass(frozen=True, slots=True)
class BackfillNeeded(Action):
    """Fetch ``channel`` over REST from ``after_offset`` (exclusive) in ``epoch``.

    Stop at ``until_offset`` if given, otherwise when the history is exhausted. Feed pages to
    :meth:`ClientProtocol.backfill_page` with ``request_id`` and finish with
    :meth:`ClientProtocol.backfill_done`; stop early once
    :meth:`ClientProtocol.backfill_active` is false (the request was superseded).
    """

    request_id: int
    channel: str
    epoch: str
    after_offset: int
    until_offset: int | None


@dataclass(frozen=True, slots=True)
class GapDetected(Action):
    """Messages of ``channel`` after ``after_offset`` and before ``before_offset`` are lost.

    ``before_offset`` is ``None`` when the end of the gap is unknown.
    """

    channel: str
    epoch: str
    after_offset: int
    before_offset: int | None


@dataclass(frozen=True, slots=True)
class Superseded(Action):
    """Datagram lane: offsets of ``channel`` after ``after_offset`` and before
    ``before_offset`` never arrived (lost, or overtaken by the newer value just delivered).

    Expected on a lossy lane and never backfilled: the message at ``before_offset``
    supersedes them.
    """

    channel: str
    epoch: str
    after_offset: int
    before_offset: int


@dataclass(frozen=True, slots=True)
class Reconnect(Action):
    """Close the current connection if still open and connect again at ``at``.

    ``refresh_auth`` asks the driver to fetch fresh credentials first.
    """

    at: float
    reason: SdkError
    refresh_auth: bool = False


@dataclass(frozen=True, slots=True)
class StateChanged(Action):
    """The subscription moved to ``state``; publish it to state observers."""

    state: State


@dataclass(frozen=True, slots=True)
class Fail(Action):
    """A fatal error: close everything and raise ``error`` to the application."""

    error: SdkError
