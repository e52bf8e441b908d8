"""Keeps a :class:`DomainState` current: seeded from the store at start, then fed by the hub.

:meth:`DomainFeed.install` (a server start hook) registers a hub listener and starts seeding:
the latest rounds of every ``game:*`` channel, the latest Event object of the most recently
updated ``sports:event:*`` channels and the latest prices of every ``odds:*`` channel are read
from the store, so a restarted server answers at once with what it knew. Messages delivered
while seeding runs are held and applied after it, in order, so the snapshot never sees a round
before the ones that preceded it (replays are ignored by the state).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from wagerwire.core.hub import Hub
from wagerwire.core.messages import Message
from wagerwire.core.store import Store
from wagerwire.domain.history import RoundHistory
from wagerwire.domain.state import DomainState

__all__ = ["SEED_ODDS_PER_CHANNEL", "DomainFeed"]

log = logging.getLogger("wagerwire.domain")

SEED_ODDS_PER_CHANNEL = 2000
"""Latest price updates read per ``odds:*`` channel at start (event snapshots carry the rest)."""

_PREFIXES = ("game:", "sports:event:", "odds:")


class DomainFeed:
    """The server's domain snapshot, its store-backed round history and their feeding."""

    def __init__(self, state: DomainState | None = None) -> None:
        self.state = state or DomainState()
        self.store: Store | None = None
        self.history = RoundHistory(self.state, None)
        self._pending: list[Message] | None = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- wiring -----------------------------------------------------------------------------

    def install(self, hub: Hub, services: Any = None) -> None:
        """Start hook ``hook(hub, services)``: listen to the hub and seed from its store."""
        self.store = hub.store
        self.history = RoundHistory(self.state, hub.store)
        if services is not None and hasattr(services, "extra"):
            services.extra["domain"] = self
        hub.add_listener(self.on_message)
        self._task = asyncio.get_running_loop().create_task(self.seed(hub.store))

    async def ready(self) -> None:
        """Wait until seeding is done (at once afterwards)."""
        if not self._ready.is_set():
            await self._ready.wait()

    # -- feeding ----------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Hub listener: apply a delivered message, or hold it while seeding runs."""
        if not message.channel.startswith(_PREFIXES):
            return
        if self._pending is not None:
            self._pending.append(message)
            return
        self._apply(message)

    def _apply(self, message: Message) -> None:
        try:
            data = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            return
        self.state.apply(message.channel, data, message.ts)

    async def seed(self, store: Store) -> None:
        """Read the latest known state from ``store``, then apply what was held meanwhile."""
        try:
            await self._seed(store)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("seeding the domain state from the store failed; continuing live")
        finally:
            pending, self._pending = self._pending or [], None
            for message in pending:
                self._apply(message)
            self._ready.set()

    async def _seed(self, store: Store) -> None:
        state = self.state
        infos = await store.channels()
        events = [i for i in infos if i.name.startswith("sports:event:") and i.count]
        events.sort(key=lambda i: (i.last_ts or 0, i.name))
        chosen = events[len(events) - state.max_events :] if events else []
        skipped = {i.name[13:] for i in events} - {i.name[13:] for i in chosen}
        for info in infos:  # prices first: the event snapshots applied next are newer
            if info.name.startswith("odds:") and info.count:
                for message in await store.read_last(info.name, SEED_ODDS_PER_CHANNEL):
                    self._apply_price(message, skipped)
        for info in chosen:
            for message in await store.read_last(info.name, 1):
                self._apply(message)
        for info in infos:
            if not info.name.startswith("game:") or not info.count:
                continue
            for message in await store.read_last(info.name, state.max_rounds):
                self._apply(message)
            if info.count > state.max_rounds:
                state.mark_incomplete(info.name[5:])

    def _apply_price(self, message: Message, skipped: set[str]) -> None:
        """Apply a stored price unless it belongs to an old event left out of the seed."""
        try:
            data = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict) and str(data.get("event_id")) in skipped:
            return
        self.state.apply(message.channel, data, message.ts)
