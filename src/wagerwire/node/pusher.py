"""The Pusher protocol as one feature: ``/app/{key}`` streams, the HTTP API, ``/pusher/auth``.

Apps come from the ``pusher_apps`` setting (:mod:`wagerwire.dialects.pusher_apps`); the
WebSocket route and the REST routes share one :class:`~wagerwire.dialects.pusher.Presence`
(this node's presence members).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from wagerwire.api.feature import Feature
from wagerwire.api.pusher import pusher_router
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dialects.pusher import Presence, Pusher, Users
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps, apps_from_config
from wagerwire.node.pusher_webhooks import WebhookSender
from wagerwire.transports.dialects import dialect_stream

__all__ = ["pusher_feature"]


def pusher_feature(settings: Settings, hub: Hub, extra: Iterable[PusherApp] = ()) -> Feature:
    """Routes of the configured Pusher apps (plus ``extra`` ones, e.g. SportsGameOdds')."""
    apps = PusherApps([*apps_from_config(settings.pusher_apps), *extra])
    presence = Presence()
    users = Users()
    hooks = WebhookSender()

    return Feature(
        routers=[pusher_router(apps, presence, users)],
        stream_routes=[("ws", "/app/{key}", dialect_stream(
            Pusher(apps, clock=time.monotonic, presence=presence, users=users,
                   hook=hooks)
        ))],
    )
