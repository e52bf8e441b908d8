"""Per-source health: connection state and counters, as the REST route, /metrics and the
dashboard show them. Times come in as arguments (milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SourceHealth", "State"]

State = Literal["starting", "connecting", "connected", "backing_off", "error", "stopped"]


@dataclass(slots=True)
class SourceHealth:
    """Mutable counters of one source, written only by its connector."""

    name: str
    dialect: str
    state: State = "starting"
    error: str | None = None  # the last failure, e.g. "credentials refused (401)"
    error_code: str | None = None  # unauthorized | forbidden | rate_limited | unreachable | ...
    connected_since: int | None = None
    last_message_at: int | None = None
    lag_ms: int | None = None  # source timestamp -> hub accepted, last message
    messages: int = 0  # published (not counting duplicates)
    duplicates: int = 0  # publishes the hub answered as duplicates
    reconnects: int = 0
    gaps_found: int = 0
    gaps_filled: int = 0
    gaps_unfillable: int = 0
    backfilled: int = 0  # messages obtained through the source's REST backfill

    def connected(self, now_ms: int) -> None:
        self.state = "connected"
        self.connected_since = now_ms
        self.error = self.error_code = None

    def failed(self, code: str, message: str) -> None:
        self.state = "error"
        self.error_code = code
        self.error = message
        self.connected_since = None

    def published(self, now_ms: int, source_ts: int | None, duplicate: bool) -> None:
        if duplicate:
            self.duplicates += 1
            return
        self.messages += 1
        self.last_message_at = now_ms
        if source_ts is not None:
            self.lag_ms = max(0, now_ms - source_ts)

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        age = None if self.last_message_at is None else (now_ms - self.last_message_at) / 1000
        return {
            "name": self.name, "dialect": self.dialect, "state": self.state,
            "connected": self.state == "connected", "error": self.error,
            "error_code": self.error_code, "connected_since": self.connected_since,
            "last_message_at": self.last_message_at, "last_message_age_s": age,
            "lag_ms": self.lag_ms, "messages": self.messages, "duplicates": self.duplicates,
            "reconnects": self.reconnects, "gaps_found": self.gaps_found,
            "gaps_filled": self.gaps_filled, "gaps_unfillable": self.gaps_unfillable,
            "backfilled": self.backfilled,
        }
