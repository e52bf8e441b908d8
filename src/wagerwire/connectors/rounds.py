"""Round feeds as clients: TrackerSino, Data Stream (WebSocket and SSE) and Stake.

Each keeps, per game, the last round index it published (the cursor's ``last``) and passes
every round through :class:`RoundFeed`, which drops what was published already, fills a hole
through the dialect's backfill where it has one (TrackerSino's ``/rounds?since=``, Data
Stream SSE's ``Last-Event-ID`` replay), asks the failover peers' publications, and publishes a
gap marker for what is still missing. Indexes are the source's own (TrackerSino
``round_index``, Data Stream ``round_id``, the round's ``index`` in a Stake payload).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from wagerwire.connectors.gaps import SequenceTracker
from wagerwire.connectors.model import Gap, Publication
from wagerwire.connectors.normalise import datastream_round, stake_publication, trackersino_round
from wagerwire.connectors.runner import Connector, SessionEnded, SourceRefused
from wagerwire.connectors.sources import SourceConfig
from wagerwire.wire.sse_parser import SseParser

__all__ = ["DataStreamSseSession", "DataStreamWsSession", "RoundFeed", "StakeSession",
           "TrackerSinoSession", "http_base", "refused_status", "ws_base"]

EARLIEST = "1970-01-01T00:00:00Z"
MAX_PEER_CHECK = 1000  # missing rounds looked up one by one in the failover peers' keys

Backfill = Callable[[str], Awaitable[None]]


def ws_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def http_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def refused_status(status: int, what: str) -> SourceRefused | None:
    """The source error for an HTTP refusal that retrying soon cannot fix, else None."""
    if status == 401:
        return SourceRefused("unauthorized", f"credentials refused upstream ({what}: 401)")
    if status == 403:
        return SourceRefused("forbidden", f"upstream forbids it ({what}: 403)")
    if status == 429:
        return SourceRefused("rate_limited", f"upstream rate limit ({what}: 429)")
    if status in (400, 404, 422):
        return SourceRefused("bad_subscription", f"upstream refused the request ({what}: "
                             f"{status}); check the source's url and subscriptions")
    return None


@contextlib.asynccontextmanager
async def open_ws(url: str, headers: dict[str, str], heartbeat: float
                  ) -> AsyncIterator[ClientConnection]:
    """A WebSocket to ``url``; a refusal at the upgrade becomes the matching source error.
    Our own pings every ``heartbeat`` seconds and a pong due within as long mean a dead link
    is dropped after two silent intervals."""
    try:
        ws = await connect(url, additional_headers=headers, open_timeout=10,
                           ping_interval=heartbeat, ping_timeout=heartbeat, max_size=2**22)
    except InvalidStatus as exc:
        refused = refused_status(exc.response.status_code, "WebSocket upgrade")
        raise refused or SessionEnded(str(exc)) from exc
    try:
        yield ws
    finally:
        await ws.close()


class RoundFeed:
    """Continuity of one source's rounds, per game: dedupe, holes, backfill, markers."""

    def __init__(self, connector: Connector, reason: str, backfill: Backfill | None = None
                 ) -> None:
        self.connector = connector
        self.reason = reason  # why a remaining hole cannot be filled (gap marker reason)
        self.backfill = backfill
        last = connector.cursor.get("last")
        self.tracker = SequenceTracker(
            {str(k): int(v) for k, v in last.items()} if isinstance(last, dict) else None)

    async def reconcile(self) -> None:
        """Move each game's position to the newest round its hub channel has: a crash loses
        up to one checkpoint interval of the cursor, and those rounds must neither come twice
        (however long the node was down) nor be claimed lost by a marker."""
        for slug, last in list(self.tracker.last.items()):
            stored = await self.connector.stored_round_index(
                self.connector.config.target(f"game:{slug}"))
            if stored > last:
                self.tracker.advance(slug, stored)
                self.connector.advance("last", dict(self.tracker.last))

    async def live(self, pub: Publication, slug: str, index: int) -> None:
        """A round as the stream delivered it."""
        health = self.connector.health
        last = self.tracker.last.get(slug)
        if last is None and self.backfill is not None and self.connector.config.start == "earliest":
            await self.backfill(slug)  # first sight of the game: everything before it first
        elif last is not None and index > last + 1:
            health.gaps_found += 1
            if self.backfill is not None:
                await self.backfill(slug)
            if self.tracker.last.get(slug, last) >= index - 1:
                health.gaps_filled += 1
            await self.emit(pub, slug, index, counted=True)
            return
        await self.emit(pub, slug, index)

    async def emit(self, pub: Publication, slug: str, index: int, *, counted: bool = False,
                   backfilled: bool = False) -> None:
        """Publish ``pub`` unless it is not newer; a hole before it is filled or marked."""
        connector = self.connector
        last = self.tracker.last.get(slug)
        if last is not None and index <= last:
            return
        if last is not None and index > last + 1:
            if not counted:
                connector.health.gaps_found += 1
            await self._missing(pub.channel, slug, last, index)
        await connector.publish(pub)
        if backfilled:
            connector.health.backfilled += 1
        self.tracker.advance(slug, index)
        connector.advance("last", dict(self.tracker.last))
        await connector.maybe_checkpoint()

    async def _missing(self, channel: str, slug: str, last: int, index: int) -> None:
        connector = self.connector
        missing = range(last + 1, index)
        if len(missing) <= MAX_PEER_CHECK and connector.config.group:
            found = [await connector.seen(channel, f"round:{slug}:{i}") for i in missing]
            if all(found):  # a failover peer of the group published them
                connector.health.gaps_filled += 1
                return
        await connector.gap(Gap(channel, slug, str(last), str(index), len(missing), self.reason))


class TrackerSinoSession:
    """``/v1-beta/stream?games=`` (Bearer key) with the ``/rounds?since=`` backfill.

    On every connect it first backfills each known game from the last ``finalized_at`` it
    has (inclusive; rounds are deduplicated by index), while the stream's frames wait, so the
    switch from backfill to live has no hole. Options: ``heartbeat_s`` (25).
    """

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        cred = self.config.credentials
        return {"Authorization": f"Bearer {cred}"} if cred else {}

    async def run(self, connector: Connector) -> None:
        config = self.config
        games = ",".join(config.subscriptions)
        url = ws_base(config.url) + "/v1-beta/stream" + (f"?games={quote(games)}" if games else "")
        heartbeat = float(config.options.get("heartbeat_s", 25.0))
        at = connector.cursor.get("at")
        self.at: dict[str, str] = dict(at) if isinstance(at, dict) else {}
        async with httpx.AsyncClient(base_url=http_base(config.url), timeout=10.0,
                                     headers=self._headers()) as http:
            self.http = http
            self.connector = connector
            feed = self.feed = RoundFeed(connector, "history_lost", self._backfill)
            await feed.reconcile()
            async with open_ws(url, self._headers(), heartbeat) as ws:
                connector.connected()
                frames: asyncio.Queue[bytes | str | None] = asyncio.Queue()
                reader = asyncio.get_running_loop().create_task(_pump(ws, frames))
                try:
                    known = sorted(set(config.subscriptions) | set(feed.tracker.last))
                    for slug in known:
                        if slug in feed.tracker.last or config.start == "earliest":
                            await self._backfill(slug)
                    while True:
                        raw = await frames.get()
                        if raw is None:
                            raise SessionEnded("the upstream closed the stream")
                        await self._frame(raw)
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)

    async def _frame(self, raw: bytes | str) -> None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        pub = trackersino_round(frame, f"trackersino:{self.config.name}")
        if pub is None:
            return
        slug, index = frame["game_id"], frame["round_index"]
        await self.feed.live(pub, slug, index)
        self._moved(slug, frame)

    def _moved(self, slug: str, frame: dict[str, Any]) -> None:
        if isinstance(frame.get("finalized_at"), str):
            self.at[slug] = frame["finalized_at"]
            self.connector.advance("at", dict(self.at))

    async def _backfill(self, slug: str) -> None:
        """Every round of ``slug`` from the last ``finalized_at`` on, page by page."""
        since = self.at.get(slug, EARLIEST)
        limit = int(self.config.options.get("page_size", 1000))
        while True:
            response = await self.http.get(f"/v1-beta/games/{quote(slug)}/rounds",
                                           params={"since": since, "limit": limit})
            if response.status_code != 200:
                refused = refused_status(response.status_code, "rounds backfill")
                raise refused or SessionEnded(f"rounds backfill: {response.status_code}")
            page = response.json()
            progressed = False
            for frame in page if isinstance(page, list) else []:
                pub = trackersino_round(frame, f"trackersino:{self.config.name}")
                if pub is None:
                    continue
                before = self.feed.tracker.last.get(slug)
                await self.feed.emit(pub, slug, frame["round_index"], backfilled=True)
                if self.feed.tracker.last.get(slug) != before:
                    progressed = True
                    self._moved(slug, frame)
            if len(page) < limit or not progressed:
                return
            since = self.at.get(slug, since)


async def _pump(ws: ClientConnection, out: asyncio.Queue[bytes | str | None]) -> None:
    """Every frame of ``ws`` into ``out``, then None when it closes."""
    try:
        async for frame in ws:
            out.put_nowait(frame)
    except ConnectionClosed:
        pass
    finally:
        out.put_nowait(None)


class DataStreamWsSession:
    """``/ws/{game}`` or ``/ws/type/{type}`` per subscription; no backfill exists, so a hole
    in ``round_id`` is published as a gap marker (reason ``no_backfill``)."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    async def run(self, connector: Connector) -> None:
        feed = RoundFeed(connector, "no_backfill")
        await feed.reconcile()
        heartbeat = float(self.config.options.get("heartbeat_s", 20.0))
        paths = self.config.subscriptions or ("type/multiplier",)
        async with asyncio.TaskGroup() as group:
            for path in paths:
                group.create_task(self._one(connector, feed, path, heartbeat))

    async def _one(self, connector: Connector, feed: RoundFeed, path: str, heartbeat: float
                   ) -> None:
        url = f"{ws_base(self.config.url)}/ws/{path}"
        headers = ({"Authorization": f"Bearer {self.config.credentials}"}
                   if self.config.credentials else {})
        async with open_ws(url, headers, heartbeat) as ws:
            connector.connected()
            try:
                async for raw in ws:
                    await _datastream_frame(feed, self.config.name, raw)
            except ConnectionClosed:
                pass
        raise SessionEnded(f"the upstream closed /ws/{path}")


async def _datastream_frame(feed: RoundFeed, name: str, raw: bytes | str) -> None:
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return
    pub = datastream_round(frame, f"datastream:{name}")
    if pub is not None:
        await feed.live(pub, frame["game_slug"], frame["round_id"])


class DataStreamSseSession:
    """``/sse/{game}`` or ``/sse/type/{type}`` with ``Last-Event-ID``: the upstream replays
    the rounds missed while disconnected, so only what its history lost becomes a marker
    (reason ``history_lost``). The cursor keeps the last event id of every path."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    async def run(self, connector: Connector) -> None:
        feed = RoundFeed(connector, "history_lost")
        await feed.reconcile()
        ids = connector.cursor.get("event_ids")
        self.ids: dict[str, str] = dict(ids) if isinstance(ids, dict) else {}
        paths = self.config.subscriptions or ("type/multiplier",)
        async with httpx.AsyncClient(base_url=http_base(self.config.url),
                                     timeout=httpx.Timeout(10.0, read=60.0)) as http:
            async with asyncio.TaskGroup() as group:
                for path in paths:
                    group.create_task(self._one(connector, feed, http, path))

    async def _one(self, connector: Connector, feed: RoundFeed, http: httpx.AsyncClient,
                   path: str) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.config.credentials:
            headers["Authorization"] = f"Bearer {self.config.credentials}"
        if path in self.ids:
            headers["Last-Event-ID"] = self.ids[path]
        async with http.stream("GET", f"/sse/{path}", headers=headers) as response:
            if response.status_code != 200:
                refused = refused_status(response.status_code, "SSE stream")
                raise refused or SessionEnded(f"/sse/{path}: {response.status_code}")
            connector.connected()
            parser = SseParser()
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    if event.event not in ("initial", "message"):
                        continue
                    await _datastream_frame(feed, self.config.name, event.data)
                    if event.id:
                        self.ids[path] = event.id
                        connector.advance("event_ids", dict(self.ids))
        raise SessionEnded(f"the upstream ended /sse/{path}")


class StakeSession:
    """``/_api/websocket`` with ``x-access-token``; sends one ``subscribe`` per channel.

    Stake has no resume and no backfill: rounds are deduplicated by their index and a hole is
    published as a gap marker (``no_backfill``). Balances and score updates carry no
    identifier, so they are not relayed. Options: ``origin`` (``https://stake.com``).
    """

    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    async def run(self, connector: Connector) -> None:
        config = self.config
        feed = RoundFeed(connector, "no_backfill")
        await feed.reconcile()
        headers = {"Origin": str(config.options.get("origin", "https://stake.com"))}
        if config.credentials:
            headers["x-access-token"] = config.credentials
        heartbeat = float(config.options.get("heartbeat_s", 30.0))
        async with open_ws(ws_base(config.url) + "/_api/websocket", headers, heartbeat) as ws:
            for channel in config.subscriptions:
                await ws.send(orjson.dumps({"type": "subscribe", "channel": channel}).decode())
            connector.connected()
            try:
                async for raw in ws:
                    try:
                        frame = orjson.loads(raw)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(frame, dict) and frame.get("type") == "error":
                        payload = frame.get("payload") or {}
                        raise SourceRefused(str(payload.get("code", "upstream_error")),
                                            f"upstream refused: {payload.get('message')}")
                    pub = stake_publication(frame)
                    if pub is not None:
                        await feed.live(pub, pub.data["game_slug"], pub.data["index"])
            except ConnectionClosed:
                pass
        raise SessionEnded("the upstream closed the Stake socket")
