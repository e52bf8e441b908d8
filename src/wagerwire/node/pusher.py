"""The Pusher protocol as one feature: ``/app/{key}`` streams, the HTTP API, ``/pusher/auth``.

Apps come from the ``pusher_apps`` setting (:mod:`wagerwire.dialects.pusher_apps`); the
WebSocket route and the REST routes share one :class:`~wagerwire.node.pusher_state.
PusherState`: occupancy, presence members, connection counts and terminations for every node
(in Redis with the Redis broker, in this process with the memory broker).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wagerwire.api.feature import Feature
from wagerwire.api.pusher import pusher_router
from wagerwire.auth.identity import Gate
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dialects.pusher import KeyedStreams, Pusher, Users
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps, apps_from_config
from wagerwire.node.backends import redis_url_and_prefix
from wagerwire.node.pusher_state import Backend, LocalBackend, PusherState
from wagerwire.node.pusher_webhooks import WebhookSender
from wagerwire.transports.dialects import dialect_stream

__all__ = ["pusher_backend", "pusher_feature"]


def pusher_backend(broker_url: str) -> Backend:
    """Redis (shared by every node) with the Redis broker, else this process's state."""
    if broker_url.startswith(("redis://", "rediss://")):
        from wagerwire.brokers.redis_pusher import RedisPusher

        url, prefix = redis_url_and_prefix(broker_url)
        return RedisPusher.from_url(url, prefix=prefix)
    return LocalBackend()


def pusher_feature(settings: Settings, hub: Hub, extra: Iterable[PusherApp] = (),
                   keyed: Callable[[Gate], KeyedStreams] | None = None,
                   apps: PusherApps | None = None) -> Feature:
    """Routes of the configured Pusher apps (plus ``extra`` ones, e.g. SportsGameOdds'),
    or of ``apps`` when given (the caller made them from the config); ``keyed`` makes the
    per-key channels counted against a key's streams from the gate."""
    if apps is None:
        apps = PusherApps([*apps_from_config(settings.pusher_apps), *extra])
    users = Users()
    hooks = WebhookSender()

    async def publish(channel: str, data: Any, attrs: Mapping[str, str] | None) -> object:
        return await hub.publish(channel, data, attrs=attrs)

    state = PusherState(apps, pusher_backend(settings.broker), publish, users=users,
                        hook=hooks)

    dialect = Pusher(apps, clock=time.monotonic, cluster=state, users=users, hook=hooks,
                     max_connections=settings.pusher_max_connections)

    def start(hub: Hub, services: Any) -> None:
        import asyncio

        if keyed is not None:
            dialect.keyed = keyed(services.gate)

        task = asyncio.get_running_loop().create_task(state.start())
        _STARTS.add(task)
        task.add_done_callback(_STARTS.discard)

    return Feature(
        routers=[pusher_router(apps, state)],
        stream_routes=[("ws", "/app/{key}", dialect_stream(dialect))],
        on_start=[start],
        on_stop=[state.stop],
    )


_STARTS: set[Any] = set()  # start tasks, held until done
