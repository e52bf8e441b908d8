"""Credentials shared by every connection of one client: API key, stream tokens, refresh.

With an API key, each stream connection authenticates with a short-lived **stream token**
(``POST /v1/tokens``) rather than the key itself, so that the long-lived secret never travels
on a streaming connection. The server checks a token only at the handshake, so one is reused
by later connections while at least a quarter of its lifetime is left (a reconnect storm does
not burn the plan's daily token quota) and fetched again otherwise, or at once when a
connection is refused as ``unauthorized``.

A server without API keys answers ``POST /v1/tokens`` with 403 "API keys are not configured"
(or 404 if it predates tokens): the key is then sent as it is, and the exchange is not tried
again. A credential that already is a stream token (``wwt1.…``) is used as it is; give
``refresh`` (a hook returning a new key or token) to renew it.

What the exchange answers decides what the connection does: 401 (bad or revoked key) and 403
are :class:`AuthError` / :class:`ForbiddenError` and end the subscription at once, with no
retry; a refused connection, 429 or 5xx are retried with backoff like any connection failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wagerwire.client.errors import AuthError, ForbiddenError, NotFoundError, SdkError

if TYPE_CHECKING:
    from wagerwire.client.rest import RestApi

__all__ = ["Auth", "KeyRefresher", "StreamToken", "is_stream_token"]

KeyRefresher = Callable[[], Awaitable[str]]
"""Returns a fresh key or stream token; raise :class:`AuthError` if none can be had."""

TOKEN_PREFIX = "wwt1."  # wagerwire.auth.stream_tokens.TOKEN_PREFIX + "."
REUSE_FRACTION = 0.25  # reuse a token while more than this share of its lifetime is left


def is_stream_token(credential: str) -> bool:
    """Whether ``credential`` is a stream token (``wwt1.…``) rather than an API key."""
    return credential.startswith(TOKEN_PREFIX)


@dataclass(frozen=True, slots=True)
class StreamToken:
    """An answer of ``POST /v1/tokens``: ``expires_at`` is server time, ``expires_in`` seconds."""

    token: str
    expires_at: int
    expires_in: float


class Auth:
    """The current key (``None``: anonymous), its stream token, and how to renew them.

    Args:
        key: API key or stream token.
        refresh: hook returning a new key or token after an ``unauthorized`` refusal.
        stream_tokens: exchange an API key for stream tokens (``False``: send the key itself
            on streaming connections too).
        clock: monotonic seconds (tests inject a fake one).
    """

    def __init__(
        self,
        key: str | None = None,
        refresh: KeyRefresher | None = None,
        *,
        stream_tokens: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.stream_tokens = stream_tokens
        self.tokens_fetched = 0  # successful POST /v1/tokens exchanges
        self._refresh = refresh
        self._clock = clock
        self._token: str | None = None
        self._reuse_until = 0.0
        self._exchange_supported: bool | None = None  # None: not known yet
        self._lock: asyncio.Lock | None = None

    @property
    def exchanges(self) -> bool:
        """Whether stream connections use tokens fetched with the key."""
        return (
            self.key is not None
            and self.stream_tokens
            and not is_stream_token(self.key)
            and self._exchange_supported is not False
        )

    @property
    def can_refresh(self) -> bool:
        """Whether an ``unauthorized`` refusal can be answered with new credentials."""
        return self._refresh is not None or self.exchanges

    def bearer(self) -> dict[str, str]:
        """The ``Authorization`` header for REST requests (the key itself)."""
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    @staticmethod
    def header_for(credential: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"} if credential else {}

    async def stream_credential(self, rest: RestApi) -> str | None:
        """The credential for the next stream connection: a valid token, or the key.

        Raises:
            AuthError, ForbiddenError: the server refused the key (fatal).
            TransportError, ServerFailureError, RateLimitedError: try again later.
        """
        if not self.exchanges:
            return self.key
        async with self._get_lock():
            if self._token is not None and self._clock() < self._reuse_until:
                return self._token
            key = self.key
            if key is None or not self.exchanges:
                return key
            started = self._clock()
            try:
                got = await rest.create_token(key)
            except NotFoundError:
                self._exchange_supported = False  # a server without /v1/tokens
                return key
            except ForbiddenError as exc:
                if "not configured" not in exc.message or "API keys" not in exc.message:
                    raise
                self._exchange_supported = False  # a server without API keys
                return key
            self._exchange_supported = True
            self.tokens_fetched += 1
            self._token = got.token
            self._reuse_until = started + got.expires_in * (1.0 - REUSE_FRACTION)
            return got.token

    async def refresh(self, failed: str | None = None) -> None:
        """Forget the credential ``failed`` after an ``unauthorized``; call the hook if any.

        Concurrent callers that saw the same failure share one refresh.
        """
        async with self._get_lock():
            if failed is not None and failed not in (self._token, self.key):
                return  # another connection already replaced it
            self._token = None
            self._reuse_until = 0.0
            if self._refresh is None:
                return
            try:
                self.key = await self._refresh()
            except SdkError:
                raise
            except Exception as exc:
                raise AuthError(f"refreshing credentials failed: {exc!r}") from exc

    def _get_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock
