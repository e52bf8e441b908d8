"""The asyncio entry point of the SDK: :class:`Client`.

One client holds the server address, the credentials and one HTTP connection pool (REST,
backfill and SSE share it); each :meth:`Client.subscribe` opens its own stream, so each
subscription resumes, backs off and fails on its own.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from wagerwire.client.auth import Auth, KeyRefresher
from wagerwire.client.backoff import Backoff
from wagerwire.client.connection import DriverOptions, StreamDriver, WebSocketDriver
from wagerwire.client.errors import ClosedError
from wagerwire.client.latency import LatencyHistogram
from wagerwire.client.protocol import ClientProtocol, Counters, Lane
from wagerwire.client.rest import ChannelInfo, HistoryPage, PublishResult, RestApi
from wagerwire.client.sse import SseDriver
from wagerwire.client.states import State
from wagerwire.client.subscription import Subscription
from wagerwire.core.channels import is_pattern, pattern_matcher
from wagerwire.core.messages import Position
from wagerwire.core.tokens import encode_positions
from wagerwire.types import Json

if TYPE_CHECKING:
    from wagerwire.client.webtransport import WtTrust

__all__ = ["Client", "Transport", "split_url"]

Transport = Literal["ws", "sse", "wt"]

# the server's WS ping and SSE comment intervals; on WebTransport the server sends nothing
# when idle and the client pings after one quiet interval (well inside QUIC's 60 s idle timeout)
_HEARTBEAT = {"ws": 20.0, "sse": 15.0, "wt": 20.0}
_TRANSPORTS = "'ws', 'sse' or 'wt'"


def split_url(url: str) -> tuple[str, str]:
    """``(http_base, ws_url)`` from a server address in any of ``http(s)://`` / ``ws(s)://``.

    A trailing ``/v1/ws``, ``/v1/sse`` or ``/v1`` is dropped, so the address printed by the
    server and the WebSocket URL itself both work.
    """
    parts = urlsplit(url)
    schemes = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"not a server address: {url!r} (use http://host:port)")
    path = parts.path.rstrip("/")
    for suffix in ("/v1/ws", "/v1/sse", "/v1"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    secure = parts.scheme in ("https", "wss")
    http_base = urlunsplit(("https" if secure else "http", parts.netloc, path, "", ""))
    ws_url = urlunsplit(("wss" if secure else "ws", parts.netloc, path + "/v1/ws", "", ""))
    return http_base, ws_url


class Client:
    """A connection to a wagerwire server.

    Use as ``async with Client("http://localhost:8080") as client:`` then
    ``async for msg in client.subscribe(["game:crash", "odds:football:*"])``.

    Args:
        url: the server address (``http://``, ``https://``, ``ws://`` or ``wss://``).
        key: API key or stream token, sent as ``Authorization: Bearer``. An API key is
            exchanged for a short-lived stream token (``POST /v1/tokens``) for each stream
            connection and sent as it is on REST calls; a key the server refuses ends the
            stream with :class:`AuthError` at once.
        transport: ``"ws"`` (default), ``"sse"`` or ``"wt"`` (WebTransport over HTTP/3, needs
            the ``aioquic`` package: ``pip install 'wagerwire[webtransport]'``);
            :meth:`subscribe` may override it.
        webtransport_url: where ``"wt"`` connects (``https://HOST:4433/v1/wt`` by default:
            the host of ``url``, the server's default WebTransport port).
        ca: a CA file (PEM) or an :class:`ssl.SSLContext` to check the server's certificate
            with on ``https://``, ``wss://`` and WebTransport (default: the system's CAs).
        cert_hashes: WebTransport only: trust the certificate whose SHA-256 is one of these
            (bytes, hex or base64), as a browser's ``serverCertificateHashes``; ``"served"``
            fetches them from ``GET /v1/tls/certificate-hashes`` first (a development
            certificate; trust on first use). A certificate that is not pinned ends the
            subscription with ``CertificateError``.
        refresh_key: async callable returning fresh credentials (a key or token); when given,
            one ``unauthorized`` after a working connection refreshes and retries instead of
            failing. Not needed with an API key: its stream tokens are renewed by themselves.
        stream_tokens: ``False`` sends the API key itself on stream connections too.
        backoff: reconnect delays (1 s doubling to 30 s, full jitter, by default).
        heartbeat_interval: expected interval between signs of life (20 s on WebSocket, 15 s
            on SSE by default); two silent intervals mean a dead link.
        open_timeout: seconds allowed per connection attempt.
        backfill: fetch history the server could not replay over REST (else report the gap).
        max_queue: messages buffered per subscription before reading pauses.
        page_size: messages per REST backfill request.
        http: an :class:`httpx.AsyncClient` to use (its ``base_url`` is set by the caller).
        rand: uniform ``[0, 1)`` source for backoff jitter.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        transport: Transport = "ws",
        refresh_key: KeyRefresher | None = None,
        stream_tokens: bool = True,
        backoff: Backoff | None = None,
        heartbeat_interval: float | None = None,
        open_timeout: float = 10.0,
        backfill: bool = True,
        max_queue: int = 1000,
        page_size: int = 1000,
        http: httpx.AsyncClient | None = None,
        rand: Callable[[], float] | None = None,
        webtransport_url: str | None = None,
        ca: str | os.PathLike[str] | ssl.SSLContext | None = None,
        cert_hashes: Sequence[str | bytes] | Literal["served"] | None = None,
    ) -> None:
        if transport not in _HEARTBEAT:
            raise ValueError(f"transport must be {_TRANSPORTS}, not {transport!r}")
        self.http_base, self.ws_url = split_url(url)
        self.transport: Transport = transport
        self.ca = ca
        self.cert_hashes = cert_hashes
        self._ssl: ssl.SSLContext | None = (
            ca if isinstance(ca, ssl.SSLContext)
            else None if ca is None else ssl.create_default_context(cafile=os.fspath(ca)))
        self._wt_url = webtransport_url
        self._wt_trust: WtTrust | None = None
        self.auth = Auth(key, refresh_key, stream_tokens=stream_tokens)
        self.backoff = backoff or Backoff()
        self.heartbeat_interval = heartbeat_interval
        self.open_timeout = open_timeout
        self.backfill = backfill
        self.max_queue = max_queue
        self.page_size = page_size
        self._rand = rand or random.random
        self._owns_http = http is None
        self._http = http
        self._rest: RestApi | None = None
        self._subscriptions: list[Subscription] = []
        self._watchers: list[asyncio.Queue[State | None]] = []
        self._closed = False
        #: End-to-end latency of live messages, per transport (register it with
        #: prometheus_client, or read ``latency.snapshot()``).
        self.latency = LatencyHistogram()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self._rest_api()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every subscription and the HTTP pool."""
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.aclose() for s in self._subscriptions))
        if self._http is not None and self._owns_http:
            await self._http.aclose()
        for watcher in self._watchers:
            watcher.put_nowait(None)

    def _rest_api(self) -> RestApi:
        if self._closed:
            raise ClosedError("the client is closed")
        if self._rest is None:
            if self._http is None:
                self._http = httpx.AsyncClient(
                    base_url=self.http_base, timeout=httpx.Timeout(10.0),
                    verify=self._ssl if self._ssl is not None else True)
            self._rest = RestApi(self._http, self.auth)
        return self._rest

    # -- streaming -----------------------------------------------------------------------------

    def subscribe(
        self,
        channels: Sequence[str],
        *,
        filter: Mapping[str, Json] | None = None,
        since: str | None = None,
        transport: Transport | None = None,
        lane: Lane = "stream",
        image: bool = False,
        conflate_ms: int = 0,
    ) -> Subscription:
        """Open a stream of ``channels`` (exact names or ``*`` patterns).

        Args:
            filter: attribute filter, ``{attr: value | [values]}``.
            since: resume token (e.g. a saved :attr:`Subscription.resume_token`).
            transport: override the client's transport for this stream.
            lane: ``"datagram"`` (WebTransport, ``odds:*`` channels, no ``since``): each
                message comes as one datagram, the lowest latency and no head-of-line
                blocking, but lossy: a newer price supersedes a lost one, skipped offsets are
                counted (``counters.datagrams_superseded``, :attr:`Subscription.skipped`),
                not backfilled; stale datagrams (older than one delivered) are dropped.
            image: on conflating channels, start with the latest message per key
                (``source == "image"``), then live.
            conflate_ms: at most one update per key per interval on conflating channels
                (0-120000).

        Raises:
            InvalidChannelError, BadResumeTokenError: at once, before connecting.
            RequestError: ``lane="datagram"`` with another transport, channel or a ``since``.
        """
        rest = self._rest_api()
        wire = transport or self.transport
        if wire not in _HEARTBEAT:
            raise ValueError(f"transport must be {_TRANSPORTS}, not {wire!r}")
        protocol = ClientProtocol(
            channels,
            filter=filter,
            since=since,
            wire=wire,
            lane=lane,
            image=image,
            conflate_ms=conflate_ms,
            backoff=self.backoff,
            heartbeat_interval=self.heartbeat_interval or _HEARTBEAT[wire],
            backfill=self.backfill,
            can_refresh_auth=self.auth.can_refresh,
            rand=self._rand,
        )

        def make_driver(sink: Subscription) -> StreamDriver:
            options: DriverOptions = {
                "rest": rest,
                "sink": sink,
                "auth": self.auth,
                "open_timeout": self.open_timeout,
                "page_size": self.page_size,
            }
            if wire == "sse":
                return SseDriver(protocol, **options)
            if wire == "wt":
                return self._webtransport_driver(protocol, options)
            return WebSocketDriver(self.ws_url, protocol, ssl=self._ssl, **options)

        sub = Subscription(protocol, make_driver, max_queue=self.max_queue, on_state=self._notify,
                           latency=self.latency)
        self._subscriptions.append(sub)
        return sub

    def _webtransport_driver(self, protocol: ClientProtocol, options: DriverOptions
                             ) -> StreamDriver:
        # imported here: aioquic is only needed by clients that use WebTransport
        try:
            from wagerwire.client.webtransport import (
                WebTransportDriver,
                WtTrust,
                webtransport_url,
            )
        except ModuleNotFoundError as exc:
            raise ImportError(f"transport='wt' needs aioquic ({exc.name} is missing): "
                              "pip install 'wagerwire[webtransport]'") from exc

        if self._wt_trust is None:
            self._wt_trust = WtTrust.of(self.ca, self.cert_hashes)
        url = self._wt_url or webtransport_url(self.http_base)
        return WebTransportDriver(url, protocol, trust=self._wt_trust, **options)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        return tuple(self._subscriptions)

    @property
    def counters(self) -> Counters:
        """The sum of every subscription's counters."""
        return Counters.total(s.counters for s in self._subscriptions)

    async def states(self) -> AsyncIterator[State]:
        """State changes of every subscription of this client, until the client closes."""
        watcher: asyncio.Queue[State | None] = asyncio.Queue()
        self._watchers.append(watcher)
        try:
            while not self._closed:
                state = await watcher.get()
                if state is None:
                    return
                yield state
        finally:
            self._watchers.remove(watcher)

    def _notify(self, state: State) -> None:
        for watcher in self._watchers:
            watcher.put_nowait(state)

    # -- REST ----------------------------------------------------------------------------------

    async def publish(
        self, channel: str, data: Json, idempotency_key: str | None = None
    ) -> PublishResult:
        """Publish one message (needs a publisher key once auth is on).

        With ``idempotency_key``, transient failures are retried and the server delivers the
        message once however many times it arrives.
        """
        return await self._rest_api().publish(channel, data, idempotency_key)

    async def history(self, channel: str, since: int = 0, limit: int = 100) -> HistoryPage:
        """One page of ``channel``'s stored messages with offset > ``since``."""
        return await self._rest_api().history(channel, since, limit)

    async def certificate_hashes(self) -> list[bytes]:
        """The SHA-256 of the server's TLS certificate(s), from
        ``GET /v1/tls/certificate-hashes`` (pass them as ``cert_hashes=``)."""
        return await self._rest_api().certificate_hashes()

    async def channels(self) -> list[ChannelInfo]:
        """Every channel the caller may read, with its epoch and offsets."""
        return await self._rest_api().channels()

    async def start_token(self, channels: Sequence[str]) -> str | None:
        """A resume token at offset 0 of each of ``channels`` that has history.

        Patterns cover every existing channel they match. Pass it as ``since=`` to replay
        everything the server still keeps, then go live (what ``wagerwire tail --from-start``
        does); ``None`` when none of the channels has history yet. A channel first written
        after this call is read from its first message anyway.
        """
        exact = {c for c in channels if not is_pattern(c)}
        patterns = [pattern_matcher(c) for c in channels if is_pattern(c)]
        positions = {
            info.name: Position(info.epoch, 0)
            for info in await self.channels()
            if info.epoch and (info.name in exact or any(p.fullmatch(info.name) for p in patterns))
        }
        return encode_positions(positions) if positions else None
