"""SportsGameOdds as one feature: its Pusher app, its REST routes and the notification bridge.

The bridge listens to the hub: each turn's ``sports:event:*`` updates become one ``data``
event per feed channel (``[{"eventID"}, …]``), published as hub messages on the app's Pusher
channels (:mod:`wagerwire.dialects.sportsgameodds`). With the Redis broker every node sees
every update, so only the node holding the Redis lease ``<prefix>:sgo:bridge``
(:class:`~wagerwire.brokers.redis_lease.RedisLease`, renewed every 3 s, lost 10 s after its
holder stops) publishes: a client gets each notification once, whichever node it is on. When
the holder dies, notifications of the updates until another node takes the lease (≤ 10 s)
are not sent (clients refetch on reconnect anyway). The bridge needs every update on the
node that holds the lease: the Redis broker's default ``listen=all``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Protocol

import orjson

from wagerwire.api.feature import Feature
from wagerwire.api.sportsgameodds import sgo_router
from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.dialects.pusher import envelope
from wagerwire.dialects.pusher_apps import PusherApp
from wagerwire.dialects.pusher_names import hub_channel
from wagerwire.dialects.sportsgameodds import APP_ID, notifications

__all__ = ["Lease", "SgoBridge", "sgo_app", "sgo_feature"]

log = logging.getLogger("wagerwire.sportsgameodds")

PREFIX = "sports:event:"
MAX_TRACKED = 100_000


def sgo_app() -> PusherApp:
    """The built-in app the bootstrap hands out (key ``sportsgameodds``; nobody else signs
    with it: the secret is random per process)."""
    return PusherApp(APP_ID, "sportsgameodds", secrets.token_hex(16), client_events=False,
                     builtin=True)


class Lease(Protocol):
    """Who publishes (:class:`~wagerwire.brokers.redis_lease.RedisLease`)."""

    def held(self) -> bool: ...
    async def take(self) -> bool: ...
    async def aclose(self) -> None: ...


RENEW_S = 3.0


class SgoBridge:
    """Hub listener: sports Event updates → ``data`` notifications on the feed channels,
    published only while this node holds ``lease`` (None: always, one node)."""

    def __init__(self, hub: Hub, lease: Lease | None = None) -> None:
        self.hub = hub
        self.lease = lease
        self.status: dict[str, Any] = {}  # event id -> last status seen
        self.batch: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.lease is not None and self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        assert self.lease is not None
        was = False
        while True:
            held = await self.lease.take()
            if held != was:
                log.info("SportsGameOdds bridge: %s", "publishing from this node" if held
                         else "another node publishes")
                was = held
            await asyncio.sleep(RENEW_S)

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self.lease is not None:
            await self.lease.aclose()

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
        if self.lease is not None and not self.lease.held():
            return  # another node publishes (the status is kept for a takeover)
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


def sgo_feature(app: PusherApp, broker_url: str = "memory://") -> Feature:
    """REST routes and the bridge (started with the server; with a Redis broker, behind
    the lease)."""
    bridges: list[SgoBridge] = []

    def install(hub: Hub, services: Any) -> None:
        lease: Lease | None = None
        if broker_url.startswith(("redis://", "rediss://")):
            from wagerwire.brokers.redis_lease import RedisLease
            from wagerwire.node.backends import redis_url_and_prefix

            url, prefix = redis_url_and_prefix(broker_url)
            lease = RedisLease.from_url(url, f"{prefix}:sgo:bridge")
        bridge = SgoBridge(hub, lease)
        bridges.append(bridge)
        hub.add_listener(bridge.on_message)
        bridge.start()

    async def stop() -> None:
        for bridge in bridges:
            await bridge.stop()

    return Feature(routers=[sgo_router(app)], on_start=[install], on_stop=[stop])
