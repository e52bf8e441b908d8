"""Domain identifiers and aliases shared by every layer."""

from __future__ import annotations

import time
from typing import Any, NewType

__all__ = ["ChannelName", "Epoch", "Json", "Offset", "now_ms"]

ChannelName = NewType("ChannelName", str)
"""A validated channel name, e.g. ``game:crash`` (see :mod:`wagerwire.core.channels`)."""

Offset = int
"""Position of a message in its channel: 1, 2, 3… with no holes."""

Epoch = str
"""Generation of a channel's history; changes only when history was lost and restarted."""

Json = Any
"""A JSON-compatible value (dict, list, str, int, float, bool or None)."""


def now_ms() -> int:
    """The wall clock in the hub's time unit: milliseconds since the Unix epoch.

    Message ``ts``, retention ages and idempotency windows all use it; sans-I/O code takes
    the value as an argument instead of calling this.
    """
    return time.time_ns() // 1_000_000
