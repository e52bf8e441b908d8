"""The Pusher protocol as one feature: ``/app/{key}`` streams, the HTTP API, ``/pusher/auth``.

Apps come from the ``pusher_apps`` setting (:mod:`wagerwire.dialects.pusher_apps`) and from
the key store (``wagerwire apps create``: PostgreSQL's when the store is, so every node knows
every app; the gate's poll brings new ones within seconds). A built-in app (SportsGameOdds')
takes its secret from the key store too, so a channel auth signed by one node is good on
every other. The WebSocket route and the REST routes share one
:class:`~wagerwire.node.pusher_state.PusherState`: occupancy, presence members, connection
counts and terminations for every node (in Redis with the Redis broker, in this process with
the memory broker).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from wagerwire.api.feature import Feature
from wagerwire.api.pusher import pusher_router
from wagerwire.auth.gate import KeyGate
from wagerwire.auth.keys import AppRecord
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dialects.pusher import Pusher, Users
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps, apps_from_config
from wagerwire.node.backends import redis_url_and_prefix
from wagerwire.node.pusher_state import Backend, LocalBackend, PusherState
from wagerwire.node.pusher_webhooks import WebhookSender
from wagerwire.transports.dialects import dialect_stream

__all__ = ["app_of_record", "pusher_backend", "pusher_feature"]

log = logging.getLogger("wagerwire.node.pusher")


def pusher_backend(broker_url: str) -> Backend:
    """Redis (shared by every node) with the Redis broker, else this process's state."""
    if broker_url.startswith(("redis://", "rediss://")):
        from wagerwire.brokers.redis_pusher import RedisPusher

        url, prefix = redis_url_and_prefix(broker_url)
        return RedisPusher.from_url(url, prefix=prefix)
    return LocalBackend()


def app_of_record(record: AppRecord) -> PusherApp:
    """The :class:`PusherApp` of a stored app (a bad master key is dropped, logged)."""
    master = None
    if record.encryption_master_key is not None:
        try:
            master = base64.b64decode(record.encryption_master_key, validate=True)
        except (ValueError, binascii.Error):
            log.warning("stored pusher app %s: bad encryption master key ignored", record.app_id)
    return PusherApp(record.app_id, record.key, record.secret, record.plan,
                     record.client_events, record.max_client_events, record.builtin,
                     master if master is not None and len(master) == 32 else None,
                     record.webhook_url)


def _record_of(app: PusherApp) -> AppRecord:
    master = app.encryption_master_key
    return AppRecord(app.app_id, app.key, app.secret, app.plan, app.client_events,
                     app.max_client_events,
                     None if master is None else base64.b64encode(master).decode(),
                     app.webhook_url, app.builtin)


def pusher_feature(settings: Settings, hub: Hub, extra: Iterable[PusherApp] = ()) -> Feature:
    """Routes of the configured and stored Pusher apps (plus ``extra`` ones, e.g.
    SportsGameOdds')."""
    extra = list(extra)
    apps = PusherApps([*apps_from_config(settings.pusher_apps), *extra])
    users = Users()
    hooks = WebhookSender()

    async def publish(channel: str, data: Any, attrs: Mapping[str, str] | None) -> object:
        return await hub.publish(channel, data, attrs=attrs)

    state = PusherState(apps, pusher_backend(settings.broker), publish, users=users,
                        hook=hooks)

    def start(hub: Hub, services: Any) -> None:
        import asyncio

        task = asyncio.get_running_loop().create_task(state.start())
        _STARTS.add(task)
        task.add_done_callback(_STARTS.discard)

    def share(_hub: Hub, svc: Any) -> None:
        """Built-in apps' secrets from the key store; stored apps, now and as they change."""
        gate = svc.gate
        if not isinstance(gate, KeyGate):
            return
        for app in extra:
            if app.builtin:
                shared = gate.keystore.builtin_app(_record_of(app))
                apps.replace(dataclasses.replace(app, secret=shared.secret))

        def stored(records: list[AppRecord]) -> None:
            skipped = apps.set_stored(app_of_record(r) for r in records if not r.builtin)
            for app_id in skipped:
                log.warning("stored pusher app %s skipped: a configured app has its id or "
                            "key", app_id)

        gate.on_apps(stored)

    return Feature(
        routers=[pusher_router(apps, state)],
        stream_routes=[("ws", "/app/{key}", dialect_stream(
            Pusher(apps, clock=time.monotonic, cluster=state, users=users, hook=hooks,
                   max_connections=settings.pusher_max_connections)
        ))],
        on_start=[share, start],
        on_stop=[state.stop],
    )


_STARTS: set[Any] = set()  # start tasks, held until done
