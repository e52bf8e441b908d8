"""Which client session speaks which dialect (the composition of :mod:`wagerwire.connectors`)."""

from __future__ import annotations

from collections.abc import Callable

from wagerwire.connectors.native import NativeSession
from wagerwire.connectors.oddsstream import OddsStreamSession
from wagerwire.connectors.rounds import (
    DataStreamSseSession,
    DataStreamWsSession,
    StakeSession,
    TrackerSinoSession,
)
from wagerwire.connectors.runner import Session
from wagerwire.connectors.sources import SourceConfig
from wagerwire.connectors.sportsgameodds import SportsGameOddsSession
from wagerwire.errors import BadParameter

__all__ = ["SESSIONS", "session_for"]

SESSIONS: dict[str, Callable[[SourceConfig], Session]] = {
    "native": NativeSession,
    "trackersino": TrackerSinoSession,
    "datastream": DataStreamWsSession,
    "datastream-sse": DataStreamSseSession,
    "stake": StakeSession,
    "sportsgameodds": SportsGameOddsSession,
    "oddsstream": OddsStreamSession,
}


def session_for(config: SourceConfig) -> Session:
    """The client session for ``config``'s dialect.

    Raises:
        BadParameter: no client for that dialect in this build.
    """
    make = SESSIONS.get(config.dialect)
    if make is None:
        raise BadParameter(f"no connector client for dialect {config.dialect} yet")
    return make(config)
