"""Domain identifiers and aliases shared by every layer."""

from __future__ import annotations

from typing import Any, NewType

__all__ = ["ChannelName", "Epoch", "Json", "Offset"]

ChannelName = NewType("ChannelName", str)
"""A validated channel name, e.g. ``game:crash`` (see :mod:`wagerwire.core.channels`)."""

Offset = int
"""Position of a message in its channel: 1, 2, 3… with no holes."""

Epoch = str
"""Generation of a channel's history; changes only when history was lost and restarted."""

Json = Any
"""A JSON-compatible value (dict, list, str, int, float, bool or None)."""
