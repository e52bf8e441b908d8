"""SportsGameOdds as a client: the REST bootstrap, Pusher protocol 7, and refetching.

Each session: ``GET /v2/stream/events?feed=…`` (``x-api-key``) gives the feed's current Event
objects, the Pusher key, options and channel; every Event is published (a digest of its
content makes an unchanged one a duplicate), so whatever changed while the connector was away
is caught up by this refetch: SportsGameOdds' own continuity rule. Events the connector saw
and not yet finished (the cursor's ``open``) that the feed no longer lists (they ended while
it was away) are refetched by id, so their end is relayed too. Then the Pusher socket:
``pusher:subscribe`` (signed through ``channelAuthorization`` for ``private-`` channels), and
for every ``data`` event ``[{eventID}…]`` a ``GET /v2/events?eventIDs=…`` whose Events are
published on ``sports:event:{id}``.

Liveness follows pusher-js: after ``activity_timeout`` seconds without anything from the
server the client sends ``pusher:ping`` and gives up after ``pong_timeout_s`` (30) more.
Refusals: 401/403/429 at the bootstrap and ``pusher:error`` 4000-4099 go to the source error
state; 4100-4199 back off, 4200-4299 reconnect. Options: ``feed`` (``events:live``),
``leagueID``, ``eventID``, ``pong_timeout_s``.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wagerwire.connectors.normalise import sgo_event_publication
from wagerwire.connectors.rounds import http_base, open_ws, refused_status
from wagerwire.connectors.runner import Connector, SessionEnded, SourceRefused
from wagerwire.connectors.sources import SourceConfig

__all__ = ["SportsGameOddsSession"]

MAX_IDS = 50


class SportsGameOddsSession:
    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    async def run(self, connector: Connector) -> None:
        config = self.config
        headers = {"x-api-key": config.credentials} if config.credentials else {}
        params = {"feed": str(config.options.get("feed", "events:live"))}
        for name in ("leagueID", "eventID"):
            if name in config.options:
                params[name] = str(config.options[name])
        async with httpx.AsyncClient(base_url=http_base(config.url), timeout=10.0,
                                     headers=headers) as http:
            self.http = http
            response = await http.get("/v2/stream/events", params=params)
            if response.status_code != 200:
                refused = refused_status(response.status_code, "stream bootstrap")
                raise refused or SessionEnded(f"stream bootstrap: {response.status_code}")
            boot = response.json()
            events = list(boot.get("data") or [])
            listed = {e.get("eventID") for e in events if isinstance(e, dict)}
            gone = [i for i in _open(connector) if i not in listed]
            events += await self._fetch(gone)
            changed = await self._publish_all(connector, events)
            if changed and connector.health.reconnects:
                connector.health.gaps_found += 1  # changes made while away: refetched
                connector.health.gaps_filled += 1
            await self._pusher(connector, boot)

    async def _publish_all(self, connector: Connector, events: list[Any]) -> int:
        changed = 0
        open_ids = _open(connector)
        for event in events:
            pub = sgo_event_publication(event, f"sportsgameodds:{self.config.name}")
            if pub is None:
                continue
            if await connector.publish(pub):
                changed += 1
            if pub.data["status"] == "finished":
                open_ids.pop(pub.data["event_id"], None)
            else:
                open_ids[pub.data["event_id"]] = True
        connector.advance("open", open_ids)
        await connector.maybe_checkpoint()
        return changed

    async def _fetch(self, ids: list[str]) -> list[Any]:
        events: list[Any] = []
        for start in range(0, len(ids), MAX_IDS):
            response = await self.http.get(
                "/v2/events", params={"eventIDs": ",".join(ids[start:start + MAX_IDS])})
            if response.status_code != 200:
                raise refused_status(response.status_code, "events refetch") or \
                    SessionEnded(f"events refetch: {response.status_code}")
            events += response.json().get("data") or []
        return events

    async def _pusher(self, connector: Connector, boot: dict[str, Any]) -> None:
        options = boot.get("pusherOptions") or {}
        base = urlsplit(http_base(self.config.url))
        secure = bool(options.get("forceTLS")) or base.scheme == "https"
        host = options.get("wsHost") or base.hostname
        port = options.get("wssPort" if secure else "wsPort") or base.port
        path = options.get("wsPath") or ""
        url = (f"{'wss' if secure else 'ws'}://{host}:{port}{path}/app/{boot.get('pusherKey')}"
               "?protocol=7&client=wagerwire-connector&version=1.0")
        channel = str(boot.get("channel"))
        async with open_ws(url, {}, 3600.0) as ws:
            hello = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            if hello.get("event") == "pusher:error":
                raise _pusher_error(hello.get("data"))
            established = orjson.loads(hello.get("data") or "{}")
            activity = float(established.get("activity_timeout") or 120)
            subscribe: dict[str, Any] = {"channel": channel}
            if channel.startswith(("private-", "presence-")):
                subscribe["auth"] = await self._auth(options, established["socket_id"], channel)
            await ws.send(orjson.dumps({"event": "pusher:subscribe", "data": subscribe}).decode())
            await self._read(connector, ws, activity)

    async def _auth(self, options: dict[str, Any], socket_id: str, channel: str) -> str:
        auth = options.get("channelAuthorization") or {}
        response = await self.http.post(
            str(auth.get("endpoint")), headers=dict(auth.get("headers") or {}),
            data={"socket_id": socket_id, "channel_name": channel})
        if response.status_code != 200:
            raise refused_status(response.status_code, "channel authorization") or \
                SessionEnded(f"channel authorization: {response.status_code}")
        return str(response.json()["auth"])

    async def _read(self, connector: Connector, ws: ClientConnection, activity: float) -> None:
        pong_timeout = float(self.config.options.get("pong_timeout_s", 30.0))
        waiting_pong = False
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(),
                                             pong_timeout if waiting_pong else activity)
            except TimeoutError:
                if waiting_pong:
                    raise SessionEnded("no pusher:pong: the link is dead") from None
                await ws.send('{"event":"pusher:ping","data":{}}')
                waiting_pong = True
                continue
            except ConnectionClosed as exc:
                raise SessionEnded(f"the upstream closed the Pusher socket: {exc}") from exc
            waiting_pong = False
            frame = orjson.loads(raw)
            event = frame.get("event")
            if event == "pusher:ping":
                await ws.send('{"event":"pusher:pong","data":{}}')
            elif event == "pusher_internal:subscription_succeeded":
                connector.connected()
            elif event == "pusher:subscription_error":
                data = frame.get("data") or {}
                raise refused_status(int(data.get("status") or 401), "subscription") or \
                    SourceRefused("forbidden", f"subscription refused: {data}")
            elif event == "pusher:error":
                raise _pusher_error(frame.get("data"))
            elif event == "data":
                await self._changed(connector, frame.get("data"))

    async def _changed(self, connector: Connector, data: Any) -> None:
        try:
            items = orjson.loads(data) if isinstance(data, str) else data
        except orjson.JSONDecodeError:
            return
        ids = [str(i["eventID"]) for i in items or [] if isinstance(i, dict) and "eventID" in i]
        await self._publish_all(connector, await self._fetch(ids))


def _open(connector: Connector) -> dict[str, Any]:
    """The ids of events seen and not finished (the cursor's ``open``), as a dict (ordered)."""
    raw = connector.cursor.get("open")
    return dict(raw) if isinstance(raw, dict) else {}


def _pusher_error(data: Any) -> Exception:
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            data = {"message": data}
    code = int((data or {}).get("code") or 0) if isinstance(data, dict) else 0
    message = (data or {}).get("message") if isinstance(data, dict) else data
    if 4000 <= code < 4100:
        return SourceRefused("unauthorized" if code in (4001, 4009) else "refused",
                             f"pusher:error {code}: {message}")
    return SessionEnded(f"pusher:error {code}: {message}")
