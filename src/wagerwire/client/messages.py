"""What a subscription delivers to the application."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from wagerwire.client.errors import ProtocolError
from wagerwire.types import Json

__all__ = ["ClientMessage", "MessageSource"]

MessageSource = Literal["live", "replay", "backfill", "image"]
"""How a message reached the client: pushed live, replayed after a resume, fetched over REST,
or sent as part of a snapshot image (the latest message of its key on a conflating channel)."""


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """One message as the application sees it.

    ``source`` says how it arrived: ``live``, ``replay`` (re-sent by the server after a resume)
    or ``backfill`` (fetched over REST because the server could not replay it). ``attrs`` are
    the filterable attributes given at publish, when the server sends them (``None``: not sent).
    """

    channel: str
    offset: int
    epoch: str
    ts: int
    data: Json
    source: MessageSource = "live"
    attrs: Mapping[str, str] | None = None

    @classmethod
    def from_json(cls, obj: Mapping[str, object], source: MessageSource = "live") -> ClientMessage:
        """Build from a ``message`` frame or a REST history item; raise :class:`ProtocolError`."""
        channel, offset, epoch, ts = (obj.get(k) for k in ("channel", "offset", "epoch", "ts"))
        if (
            not isinstance(channel, str)
            or not isinstance(offset, int)
            or isinstance(offset, bool)
            or not isinstance(epoch, str)
            or not isinstance(ts, int | float)
            or isinstance(ts, bool)
        ):
            raise ProtocolError(f"malformed message: {dict(obj)!r:.120}")
        raw_attrs = obj.get("attrs")
        attrs: dict[str, str] | None = None
        if isinstance(raw_attrs, Mapping):
            attrs = {str(k): str(v) for k, v in raw_attrs.items()}
        elif "attrs" in obj:
            attrs = {}  # sent, and empty
        return cls(channel, offset, epoch, int(ts), obj.get("data"), source, attrs)

    def with_source(self, source: MessageSource) -> ClientMessage:
        """The same message, marked as arriving by another path."""
        return dataclasses.replace(self, source=source)
