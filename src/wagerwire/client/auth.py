"""Credentials shared by every connection of one client, with an optional refresh hook.

The hook exists so that short-lived stream tokens (``POST /v1/tokens``, a later issue) can be
fetched again when the server answers ``unauthorized``; with a plain API key there is nothing to
refresh and ``unauthorized`` is fatal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wagerwire.client.errors import AuthError, ClientError

__all__ = ["Auth", "KeyRefresher"]

KeyRefresher = Callable[[], Awaitable[str]]
"""Returns a fresh key or stream token; raise :class:`AuthError` if none can be had."""


class Auth:
    """The current key (``None``: anonymous) and how to renew it."""

    def __init__(self, key: str | None = None, refresh: KeyRefresher | None = None) -> None:
        self.key = key
        self._refresh = refresh
        self._lock: asyncio.Lock | None = None

    @property
    def can_refresh(self) -> bool:
        return self._refresh is not None

    def bearer(self) -> dict[str, str]:
        """The ``Authorization`` header for WebSocket and REST requests."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    async def refresh(self) -> None:
        """Fetch a new key; concurrent callers share one refresh."""
        if self._refresh is None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        old = self.key
        async with self._lock:
            if self.key != old:
                return  # another connection refreshed it while we waited
            try:
                self.key = await self._refresh()
            except ClientError:
                raise
            except Exception as exc:
                raise AuthError(f"refreshing credentials failed: {exc!r}") from exc
