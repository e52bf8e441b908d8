"""The REST access log: one ``wagerwire.access`` record per request, with a request id.

A pure ASGI wrapper around the REST app (streams never reach it: the HTTP layer upgrades them
itself and logs their open and close with a connection id). The record carries ``request_id``
(the client's ``X-Request-Id`` when it is a short plain token, else a fresh one), ``method``,
``path``, the *names* of the query parameters (values may be credentials: never logged),
``status``, ``duration_ms`` and ``client``. Nothing is logged when the logger is off
(``--log-level warning``), so the cost is one check per request.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["AccessLog"]

log = logging.getLogger("wagerwire.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLIENT_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_PREFIX = os.urandom(3).hex()
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}-{next(_counter):x}"


class AccessLog:
    """Wraps an ASGI app; logs each HTTP request once its response has started."""

    def __init__(self, app: App) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # state, routes, openapi… of the wrapped app
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            names = sorted({part.split("=", 1)[0] for part in query.split("&") if part})
            client = scope.get("client")
            log.info(
                "%s %s %d", scope.get("method", "?"), scope.get("path", "?"), status or 500,
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "query_params": names,
                    "status": status or 500,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "client": client[0] if client else None,
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _CLIENT_ID.fullmatch(text):
                return text
            break
    return new_request_id()
