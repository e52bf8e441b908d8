"""Reconnect delays: exponential backoff with full jitter."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits ``U(0, min(max, initial·m^n))``.

    Full jitter spreads a crowd of clients dropped at the same moment (a server restart) over
    the whole window instead of letting them reconnect in lock-step.
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and multiplier >= 1")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the wait before retry number ``attempt`` (0-based)."""
        if attempt >= 64:  # far past any cap; avoids float overflow
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier**attempt)

    def delay(self, attempt: int, rand: float) -> float:
        """The jittered wait, ``rand`` being a uniform draw in ``[0, 1)``."""
        return rand * self.ceiling(attempt)
