"""OddsStream as a client: a fresh token per attempt within the daily quota, text pings.

Every connection attempt first gets a fresh token (``POST /api/stream/token``,
``X-Api-Key``), as the seed demands; every request the upstream answered counts against the
day (UTC), saved in the cursor at once so a restart does not forget it, and once ``daily_token_quota`` is reached the source waits in the
``error`` state (code ``token_quota``) without asking for more until the next UTC day.
The stream (``/api/stream?token=…`` plus the ``sport``/``competition``/``bookmaker`` options
as filters) gets a text ``ping`` every ``ping_s`` (30) seconds; no frame at all for two
intervals means the link is dead. OddsStream has no identifiers and no backfill: after every
reconnect each odds channel the source published on gets a gap marker (reason
``reconnected``) before its first new price, since prices may have moved unseen.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from websockets.exceptions import ConnectionClosed

from wagerwire.connectors.model import Gap
from wagerwire.connectors.normalise import oddsstream_price
from wagerwire.connectors.rounds import http_base, open_ws, refused_status, ws_base
from wagerwire.connectors.runner import Connector, SessionEnded, SourceRefused
from wagerwire.connectors.sources import SourceConfig
from wagerwire.types import now_ms

__all__ = ["OddsStreamSession"]

DAY_MS = 86_400_000


class OddsStreamSession:
    def __init__(self, config: SourceConfig) -> None:
        self.config = config

    def _tokens_used(self, connector: Connector) -> tuple[int, int]:
        """(today as a UTC day number, tokens requested today)."""
        day = now_ms() // DAY_MS
        raw = connector.cursor.get("tokens")
        used = int(raw.get("used", 0)) if isinstance(raw, dict) and raw.get("day") == day else 0
        return day, used

    async def run(self, connector: Connector) -> None:
        config = self.config
        quota = config.options.get("daily_token_quota")
        day, used = self._tokens_used(connector)
        if quota is not None and used >= int(quota):
            raise SourceRefused("token_quota", f"the daily token quota ({quota}) is used up; "
                                "no new token before 00:00 UTC")
        async with httpx.AsyncClient(base_url=http_base(config.url), timeout=10.0) as http:
            response = await http.post("/api/stream/token",
                                       headers={"X-Api-Key": config.credentials or ""})
            # the upstream counted this attempt, whatever it answered: so do we, durably
            connector.advance("tokens", {"day": day, "used": used + 1})
            await connector.save_cursor()
            if response.status_code != 200:
                refused = refused_status(response.status_code, "token exchange")
                raise refused or SessionEnded(f"token exchange: {response.status_code}")
            token = str(response.json()["token"])
        query: dict[str, Any] = {"token": token}
        for name in ("sport", "competition", "bookmaker"):
            if name in config.options:
                query[name] = str(config.options[name])
        url = f"{ws_base(config.url)}/api/stream?{urlencode(query)}"
        ping = float(config.options.get("ping_s", 30.0))
        async with open_ws(url, {}, 3600.0) as ws:
            connector.connected()
            channels = connector.cursor.get("channels")
            seen: dict[str, Any] = dict(channels) if isinstance(channels, dict) else {}
            await self._reconcile(connector, seen)
            marked: set[str] = set()
            reconnect = bool(seen)
            silent = 0
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), ping)
                except TimeoutError:
                    silent += 1
                    if silent >= 2:
                        raise SessionEnded("no frame for two ping intervals") from None
                    await ws.send("ping")
                    continue
                except ConnectionClosed as exc:
                    raise SessionEnded(f"the upstream closed the stream: {exc}") from exc
                silent = 0
                if raw == "pong":
                    continue
                try:
                    frame = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                pub = oddsstream_price(frame, f"oddsstream:{config.name}")
                if pub is None:
                    continue
                if reconnect and pub.channel not in marked:
                    marked.add(pub.channel)
                    if pub.channel in seen:
                        await self._marker(connector, pub.channel, str(seen[pub.channel]))
                await connector.publish(pub)
                seen[pub.channel] = frame.get("scraped_at")
                connector.advance("channels", seen)
                await connector.maybe_checkpoint()

    async def _reconcile(self, connector: Connector, seen: dict[str, Any]) -> None:
        """The last price each channel really has (the saved cursor may be a checkpoint
        interval older after a crash), so a marker's ``after`` is exact."""
        source = f"oddsstream:{self.config.name}"
        for channel in seen:
            last = await connector.hub.store.read_last(self.config.target(channel), 1)
            if not last:
                continue
            try:
                data = orjson.loads(last[0].data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict) and data.get("source") == source:
                seen[channel] = data.get("scraped_at")

    async def _marker(self, connector: Connector, channel: str, after: str) -> None:
        connector.health.gaps_found += 1
        await connector.gap(Gap(channel, channel, after, None, None, "reconnected"))
