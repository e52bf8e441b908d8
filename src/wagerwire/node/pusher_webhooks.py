"""Pusher webhooks: batches of events POSTed to an app's ``webhook_url``, signed, retried.

The Pusher dialect hands events to :meth:`WebhookSender.__call__` (synchronous, never
blocks); within :data:`BATCH_DELAY_S` they are sent as one request per app::

    POST <webhook_url>
    Content-Type: application/json
    X-Pusher-Key: <app key>
    X-Pusher-Signature: <hex HMAC-SHA256 of the body with the app secret>

    {"time_ms": 1780000000000, "events": [{"name": "channel_occupied", "channel": "x"}, …]}

A response other than 2xx, or none within :data:`TIMEOUT_S`, is retried after 1, 2, 4, 8
seconds (:data:`ATTEMPTS` tries in all), then dropped with a warning. At most
:data:`MAX_PENDING` events wait per app; beyond that the oldest are dropped (logged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import orjson

from wagerwire.dialects.pusher_apps import PusherApp, sign

__all__ = ["ATTEMPTS", "BATCH_DELAY_S", "MAX_PENDING", "TIMEOUT_S", "WebhookSender"]

log = logging.getLogger("wagerwire.pusher.webhooks")

BATCH_DELAY_S = 0.05
ATTEMPTS = 5
TIMEOUT_S = 5.0
MAX_PENDING = 10_000


class WebhookSender:
    """Queues webhook events per app and sends them in signed, retried batches."""

    def __init__(self, backoff_s: float = 1.0) -> None:
        self.backoff_s = backoff_s
        self.pending: dict[str, tuple[PusherApp, list[dict[str, Any]]]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._armed = False

    def __call__(self, app: PusherApp, event: dict[str, Any]) -> None:
        entry = self.pending.get(app.app_id)
        if entry is None:
            entry = self.pending[app.app_id] = (app, [])
        events = entry[1]
        if len(events) >= MAX_PENDING:
            del events[0]
            log.warning("webhooks of app %s: %d events waiting; the oldest dropped",
                        app.app_id, MAX_PENDING)
        events.append(event)
        if not self._armed:
            self._armed = True
            asyncio.get_running_loop().call_later(BATCH_DELAY_S, self._flush)

    def _flush(self) -> None:
        self._armed = False
        batches, self.pending = self.pending, {}
        for app, events in batches.values():
            task = asyncio.get_running_loop().create_task(self._send(app, events))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, app: PusherApp, events: list[dict[str, Any]]) -> None:
        assert app.webhook_url is not None
        body = orjson.dumps({"time_ms": time.time_ns() // 1_000_000, "events": events})
        headers = {"Content-Type": "application/json", "X-Pusher-Key": app.key,
                   "X-Pusher-Signature": sign(app.secret, body.decode())}
        reason = ""
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:  # batches are rare
            for attempt in range(ATTEMPTS):
                try:
                    response = await client.post(app.webhook_url, content=body,
                                                 headers=headers)
                    if 200 <= response.status_code < 300:
                        return
                    reason = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(self.backoff_s * 2 ** attempt)
        log.warning("webhook of app %s (%d events) not delivered after %d attempts: %s",
                    app.app_id, len(events), ATTEMPTS, reason)

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
