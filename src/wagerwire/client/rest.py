"""The REST half of the SDK: history pages (for backfill) and publishing, over httpx.

httpx errors and JSON error bodies are translated here into :mod:`wagerwire.client.errors`, so
nothing above this module sees an httpx exception.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import orjson

from wagerwire.client.auth import Auth, StreamToken
from wagerwire.client.backoff import Backoff
from wagerwire.client.errors import ProtocolError, SdkError, TransportError, error_for_status
from wagerwire.client.messages import ClientMessage
from wagerwire.types import Json

__all__ = [
    "ChannelInfo",
    "HistoryPage",
    "PublishResult",
    "RestApi",
    "error_from_response",
    "parse_retry_after",
]


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a channel's history: messages with offset > ``since``, ascending.

    ``next`` is ``None`` when the history is exhausted; ``first_offset`` is the oldest offset
    the server still keeps (history before it was pruned).
    """

    channel: str
    epoch: str
    messages: tuple[ClientMessage, ...]
    next: int | None
    first_offset: int | None


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where a published message landed; ``duplicate`` when its idempotency key was seen."""

    channel: str
    epoch: str
    offset: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One row of ``GET /v1/channels``."""

    name: str
    epoch: str
    first_offset: int | None
    last_offset: int


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the HTTP-date form is ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def error_from_response(status: int, body: bytes, retry_after: str | None = None) -> SdkError:
    """The SDK error for a non-2xx response with an optional ``{"error":{code,message}}`` body."""
    code: str | None = None
    message = f"HTTP {status}"
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        err = obj["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        if isinstance(err.get("message"), str):
            message = err["message"]
    return error_for_status(status, message, code=code, retry_after=parse_retry_after(retry_after))


class RestApi:
    """Typed calls to the native REST API on a shared :class:`httpx.AsyncClient`.

    Args:
        http: the client to use; its ``base_url`` must be the server root (``http://host:port``).
        auth: the credentials, sent as ``Authorization: Bearer``.
    """

    def __init__(self, http: httpx.AsyncClient, auth: Auth) -> None:
        self.http = http
        self.auth = auth

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Json:
        headers = dict(headers) if headers is not None else self.auth.bearer()
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = await self.http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path}: {exc!r}") from exc
        if resp.status_code >= 400:
            raise error_from_response(
                resp.status_code, resp.content, resp.headers.get("retry-after")
            )
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"{method} {path}: response is not JSON") from exc

    async def create_token(self, key: str) -> StreamToken:
        """``POST /v1/tokens`` with ``key``: a stream token and its lifetime."""
        obj = await self._request("POST", "/v1/tokens", headers={"Authorization": f"Bearer {key}"})
        if not isinstance(obj, dict):
            raise ProtocolError("POST /v1/tokens: unexpected body")
        token, expires_at, expires_in = (
            obj.get("token"),
            obj.get("expires_at"),
            obj.get("expires_in"),
        )
        if (
            not isinstance(token, str)
            or not token
            or not isinstance(expires_at, int)
            or not isinstance(expires_in, int | float)
        ):
            raise ProtocolError("POST /v1/tokens: response lacks token/expires_at/expires_in")
        return StreamToken(token, expires_at, float(expires_in))

    async def certificate_hashes(self) -> list[bytes]:
        """``GET /v1/tls/certificate-hashes``: the SHA-256 of the certificate served now (and
        of the next one during a rotation), for pinning a WebTransport connection."""
        obj = await self._request("GET", "/v1/tls/certificate-hashes", headers={})
        items = obj.get("hashes") if isinstance(obj, dict) else None
        if not isinstance(items, list):
            raise ProtocolError("GET /v1/tls/certificate-hashes: unexpected body")
        out: list[bytes] = []
        for item in items:
            value = item.get("value") if isinstance(item, dict) else None
            if isinstance(value, str):
                with contextlib.suppress(ValueError, binascii.Error):
                    raw = base64.b64decode(value, validate=True)
                    if len(raw) == 32:
                        out.append(raw)
        return out

    async def channels(self) -> list[ChannelInfo]:
        """``GET /v1/channels``: every channel the caller may read, with its positions."""
        obj = await self._request("GET", "/v1/channels")
        rows = obj.get("channels") if isinstance(obj, dict) else None
        if not isinstance(rows, list):
            raise ProtocolError("GET /v1/channels: unexpected body")
        out: list[ChannelInfo] = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            name, epoch, first, last = (
                row.get(k) for k in ("name", "epoch", "first_offset", "last_offset")
            )
            if isinstance(name, str) and isinstance(epoch, str) and isinstance(last, int):
                out.append(
                    ChannelInfo(name, epoch, first if isinstance(first, int) else None, last)
                )
        return out

    async def history(self, channel: str, since: int = 0, limit: int = 1000) -> HistoryPage:
        """``GET /v1/channels/{channel}/messages?since=&limit=``."""
        path = f"/v1/channels/{quote(channel, safe=':._-')}/messages"
        obj = await self._request("GET", path, params={"since": since, "limit": limit})
        if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
            raise ProtocolError(f"history of {channel!r}: unexpected body")
        raw = obj["messages"]
        messages = tuple(
            ClientMessage.from_json(m, "backfill") if isinstance(m, dict) else _bad(channel)
            for m in raw
        )
        epoch = obj.get("epoch")
        if not isinstance(epoch, str):
            epoch = messages[0].epoch if messages else ""
        nxt, first = obj.get("next"), obj.get("first_offset")
        return HistoryPage(
            channel=channel,
            epoch=epoch,
            messages=messages,
            next=nxt if isinstance(nxt, int) else None,
            first_offset=first if isinstance(first, int) else None,
        )

    async def publish(
        self,
        channel: str,
        data: Json,
        idempotency_key: str | None = None,
        *,
        retries: int = 3,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> PublishResult:
        """``POST /v1/publish``.

        With an ``idempotency_key`` a retryable failure is retried (the server delivers a
        repeated key once); without one it is raised at once, since a retry could duplicate.
        """
        body: dict[str, Json] = {"channel": channel, "data": data}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        content = orjson.dumps(body)
        policy = backoff or Backoff(initial=0.2, maximum=2.0)
        attempt = 0
        while True:
            try:
                obj = await self._request("POST", "/v1/publish", content=content)
                break
            except SdkError as exc:
                if idempotency_key is None or not exc.retryable or attempt >= retries:
                    raise
                await sleep(max(exc.retry_after or 0.0, policy.ceiling(attempt)))
                attempt += 1
        if not isinstance(obj, dict):
            raise ProtocolError("publish: unexpected body")
        epoch, offset = obj.get("epoch"), obj.get("offset")
        if not isinstance(epoch, str) or not isinstance(offset, int):
            raise ProtocolError("publish: response lacks epoch/offset")
        return PublishResult(
            str(obj.get("channel", channel)), epoch, offset, bool(obj.get("duplicate", False))
        )


def _bad(channel: str) -> ClientMessage:
    raise ProtocolError(f"history of {channel!r}: a message is not an object")
