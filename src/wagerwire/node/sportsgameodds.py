"""SportsGameOdds as one feature: its Pusher app, its REST routes and the notification bridge.

The bridge listens to the hub: each turn's ``sports:event:*`` updates become one ``data``
event per feed channel (``[{"eventID"}, …]``), published as hub messages on the app's Pusher
channels (:mod:`wagerwire.dialects.sportsgameodds`). With several nodes every node's bridge
publishes the notifications of what it sees; run the sports source where the bridge is
wanted (the embedded default: one node).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import orjson

from wagerwire.api.feature import Feature
from wagerwire.api.sportsgameodds import sgo_router
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.dialects.pusher import envelope
from wagerwire.dialects.pusher_apps import PusherApp
from wagerwire.dialects.pusher_names import hub_channel
from wagerwire.dialects.sportsgameodds import APP_ID, notifications

__all__ = ["SgoBridge", "sgo_app", "sgo_feature"]

log = logging.getLogger("wagerwire.sportsgameodds")

PREFIX = "sports:event:"
MAX_TRACKED = 100_000


def sgo_app() -> PusherApp:
    """The built-in app the bootstrap hands out (key ``sportsgameodds``; nobody else signs
    with it: the secret is random per process)."""
    return PusherApp(APP_ID, "sportsgameodds", secrets.token_hex(16), client_events=False,
                     builtin=True)


class SgoBridge:
    """Hub listener: sports Event updates → ``data`` notifications on the feed channels."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.status: dict[str, Any] = {}  # event id -> last status seen
        self.batch: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def on_message(self, message: Message) -> None:
        if not message.channel.startswith(PREFIX):
            return
        try:
            data = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        event_id = str(data.get("event_id", ""))
        before = self.status.get(event_id)
        if data.get("status") == "finished" or len(self.status) > MAX_TRACKED:
            self.status.pop(event_id, None)
        else:
            self.status[event_id] = data.get("status")
        if not self.batch:
            asyncio.get_running_loop().call_soon(self.flush)
        self.batch.append((data, None if before is None else {"status": before}))

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        for channel, ids in notifications(batch).items():
            task = asyncio.get_running_loop().create_task(self._publish(channel, ids))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _publish(self, channel: str, ids: list[dict[str, str]]) -> None:
        hub = hub_channel(APP_ID, channel)
        try:
            await self.hub.publish(hub, envelope("data", ids, channel=channel, hub=hub))
        except Exception as exc:  # the hub is closing, the store failed: logged, not raised
            log.warning("SportsGameOdds notification on %s not published: %s", channel, exc)


def sgo_feature(app: PusherApp) -> Feature:
    """REST routes and the bridge (started with the server)."""

    def install(hub: Hub, services: Any) -> None:
        hub.add_listener(SgoBridge(hub).on_message)

    return Feature(routers=[sgo_router(app)], on_start=[install])
