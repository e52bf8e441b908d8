"""The Pusher :class:`~wagerwire.dialects.pusher.Cluster`: occupancy, presence, connection
counts and ``terminate_connections`` for every node of the hub.

:class:`PusherState` takes the dialect's synchronous calls, runs them *in order* (one queue,
one task: a leave queued after a join is applied after it) against a backend, and turns the
answers into effects: webhooks (``channel_occupied``/``vacated``, ``member_added``/
``removed``) and the hub messages ``pusher_internal:member_added``/``member_removed``, each
sent once for the whole cluster because the backend decides "first"/"last" atomically.

Backends: :class:`LocalBackend` (one process: the memory broker) and
:class:`~wagerwire.brokers.redis_pusher.RedisPusher` (the Redis broker: every node shares it,
see that module for why and how nodes that die are cleaned up).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson

from wagerwire.dialects.pusher import EXCLUDE, Cluster, Hook, Users, envelope
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps
from wagerwire.dialects.pusher_names import hub_channel
from wagerwire.dialects.pusher_presence import (
    HEARTBEAT_S,
    Heartbeat,
    LocalPresence,
    Members,
    Reaped,
)
from wagerwire.errors import Unavailable, WagerwireError

__all__ = ["Backend", "LocalBackend", "PusherState"]

log = logging.getLogger("wagerwire.node.pusher_state")

Publish = Callable[[str, Any, Mapping[str, str] | None], Awaitable[object]]
"""Publishes one hub message (``hub.publish(channel, data, attrs=…)``)."""


class Backend(Protocol):
    """Where occupancy and members live (see :mod:`wagerwire.dialects.pusher_presence` for
    the answers' meaning)."""

    async def occupy(self, app_id: str, name: str, hub: str, delta: int) -> tuple[int, int]: ...
    async def join(self, app_id: str, name: str, hub: str, user_id: str, info: str
                   ) -> tuple[bool, Members]: ...
    async def leave(self, app_id: str, name: str, hub: str, user_id: str) -> bool: ...
    async def members(self, hub: str) -> Members: ...
    async def counts(self, app_id: str, hubs: Callable[[str], str]) -> dict[str, int]: ...
    async def count(self, hub: str) -> int: ...
    async def heartbeat(self, connections: Mapping[str, int]) -> Heartbeat: ...
    async def terminate(self, app_id: str, user_id: str) -> None: ...
    def listen(self, on_terminate: Callable[[str, str], None]) -> None: ...
    async def release(self) -> None: ...
    async def aclose(self) -> None: ...


class LocalBackend:
    """One process's state (:class:`LocalPresence`); nothing to renew, reap or broadcast."""

    def __init__(self) -> None:
        self.state = LocalPresence()

    async def occupy(self, app_id: str, name: str, hub: str, delta: int) -> tuple[int, int]:
        return self.state.occupy(app_id, name, hub, delta)

    async def join(self, app_id: str, name: str, hub: str, user_id: str, info: str
                   ) -> tuple[bool, Members]:
        return self.state.join(hub, user_id, info)

    async def leave(self, app_id: str, name: str, hub: str, user_id: str) -> bool:
        return self.state.leave(hub, user_id)

    async def members(self, hub: str) -> Members:
        return self.state.members(hub)

    async def counts(self, app_id: str, hubs: Callable[[str], str]) -> dict[str, int]:
        return self.state.counts(app_id)

    async def count(self, hub: str) -> int:
        return self.state.count(hub)

    async def heartbeat(self, connections: Mapping[str, int]) -> Heartbeat:
        return Heartbeat({}, (), False)

    async def terminate(self, app_id: str, user_id: str) -> None:
        return None

    def listen(self, on_terminate: Callable[[str, str], None]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _members(found: Members) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for uid, info in found:
        try:
            out[uid] = orjson.loads(info)
        except orjson.JSONDecodeError:
            out[uid] = None
    return out


Job = Callable[[], Awaitable[None]]


class PusherState:
    """:class:`~wagerwire.dialects.pusher.Cluster` over a backend (module docstring)."""

    def __init__(self, apps: PusherApps, backend: Backend, publish: Publish, *,
                 users: Users | None = None, hook: Hook | None = None,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        self.apps = apps
        self.backend = backend
        self.publish = publish
        self.users = users if users is not None else Users()
        self.hook = hook
        self.heartbeat_s = heartbeat_s
        self.local: dict[str, int] = {}  # app id -> this node's connections
        self.others: Mapping[str, int] = {}  # app id -> other nodes' (last heartbeat)
        # what this node has applied, to apply again if another node reaped it (a pause
        # longer than its lease): (app, name, hub) -> subscriptions, (app, name, hub, user)
        # -> [user_info, connections, a socket id]
        self._occ: dict[tuple[str, str, str], int] = {}
        self._mem: dict[tuple[str, str, str, str], list[Any]] = {}
        self._jobs: deque[Job] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """First heartbeat (this node's lease exists before its first update), then one
        every ``heartbeat_s``; listen for other nodes' terminations."""
        with contextlib.suppress(WagerwireError):
            await self._heartbeat()
        self._ready.set()
        self.backend.listen(self._terminated)
        self._beat = asyncio.get_running_loop().create_task(self._beats())
        self._kick()

    async def stop(self, drain_s: float = 2.0) -> None:
        """Apply what is queued (bounded), end the lease, close the backend."""
        if self._beat is not None:
            self._beat.cancel()
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._worker), drain_s)
        if self._worker is not None:
            self._worker.cancel()
        await self.backend.release()
        await self.backend.aclose()

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self._heartbeat()
            except WagerwireError as exc:
                log.warning("Pusher state heartbeat failed: %s", exc.message)

    async def _heartbeat(self) -> None:
        beat = await self.backend.heartbeat(dict(self.local))
        self.others = beat.others
        if beat.was_reaped and (self._occ or self._mem):
            log.warning("Pusher state: this node's lease had expired (a long pause) and "
                        "another node dropped its occupancy and members; applying them again")
            self._reapply()
        for reaped in beat.reaped:
            await self._reaped(reaped)

    async def _reaped(self, gone: Reaped) -> None:
        app = self.apps.by_id.get(gone.app_id)
        if app is None:
            return
        for uid in gone.removed:
            await self._member_removed(app, gone.name, gone.hub, uid)
        if gone.vacated:
            self._notify(app, {"name": "channel_vacated", "channel": gone.name})

    def _reapply(self) -> None:
        for (app_id, name, hub), n in list(self._occ.items()):
            app = self.apps.by_id.get(app_id)
            if app is not None:
                self._enqueue(self._occupy_job(app, name, hub, n))
        for (app_id, name, hub, uid), (info, n, sid) in list(self._mem.items()):
            app = self.apps.by_id.get(app_id)
            for _ in range(n if app is not None else 0):
                assert app is not None
                self.join(app, name, hub, uid, info, sid, mirror=False)

    # -- the queue -------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        self._jobs.append(job)
        self._kick()

    def _kick(self) -> None:
        if self._jobs and (self._worker is None or self._worker.done()):
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        await self._ready.wait()
        jobs = self._jobs
        while jobs:
            job = jobs.popleft()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except WagerwireError as exc:
                log.warning("Pusher state update lost: %s", exc.message)
            except Exception:
                log.exception("Pusher state update failed")

    def _notify(self, app: PusherApp, event: dict[str, Any]) -> None:
        if app.webhook_url and self.hook is not None:
            self.hook(app, event)

    async def _member_removed(self, app: PusherApp, name: str, hub: str, uid: str) -> None:
        self._notify(app, {"name": "member_removed", "channel": name, "user_id": uid})
        try:
            await self.publish(hub, envelope("pusher_internal:member_removed",
                                             {"user_id": uid}, channel=name, hub=hub), None)
        except WagerwireError as exc:
            log.warning("member_removed on %s not published: %s", hub, exc.message)

    # -- Cluster ---------------------------------------------------------------------------

    def occupy(self, app: PusherApp, name: str, hub: str, delta: int) -> None:
        key = (app.app_id, name, hub)
        n = self._occ.get(key, 0) + delta
        if n > 0:
            self._occ[key] = n
        else:
            self._occ.pop(key, None)
        backend = self.backend
        if not self._jobs and isinstance(backend, LocalBackend):  # nothing ahead: at once
            self._occupied(app, name, *backend.state.occupy(app.app_id, name, hub, delta))
            return
        self._enqueue(self._occupy_job(app, name, hub, delta))

    def _occupied(self, app: PusherApp, name: str, before: int, after: int) -> None:
        if before == 0 and after > 0:
            self._notify(app, {"name": "channel_occupied", "channel": name})
        elif before > 0 and after == 0:
            self._notify(app, {"name": "channel_vacated", "channel": name})

    def _occupy_job(self, app: PusherApp, name: str, hub: str, delta: int) -> Job:
        async def job() -> None:
            self._occupied(app, name, *await self.backend.occupy(app.app_id, name, hub,
                                                                 delta))
        return job

    def join(self, app: PusherApp, name: str, hub: str, user_id: str, info: object,
             socket_id: str, *, mirror: bool = True) -> Awaitable[dict[str, Any]]:
        if mirror:
            entry = self._mem.setdefault((app.app_id, name, hub, user_id), [info, 0, socket_id])
            entry[1] += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved

        async def job() -> None:
            try:
                first, found = await self.backend.join(app.app_id, name, hub, user_id,
                                                       orjson.dumps(info).decode())
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, WagerwireError) else
                                         Unavailable("presence state unavailable"))
                raise
            if not future.done():
                future.set_result(_members(found))
            if first:
                self._notify(app, {"name": "member_added", "channel": name,
                                   "user_id": user_id})
                try:
                    await self.publish(hub, envelope(
                        "pusher_internal:member_added", {"user_id": user_id, "user_info": info},
                        channel=name, hub=hub), {EXCLUDE: socket_id})
                except WagerwireError as exc:
                    log.warning("member_added on %s not published: %s", hub, exc.message)
        self._enqueue(job)
        return future

    def leave(self, app: PusherApp, name: str, hub: str, user_id: str) -> None:
        key = (app.app_id, name, hub, user_id)
        entry = self._mem.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del self._mem[key]

        async def job() -> None:
            if await self.backend.leave(app.app_id, name, hub, user_id):
                await self._member_removed(app, name, hub, user_id)
        self._enqueue(job)

    def connections(self, app: PusherApp) -> int:
        return self.local.get(app.app_id, 0) + self.others.get(app.app_id, 0)

    def connected(self, app: PusherApp, delta: int) -> None:
        n = self.local.get(app.app_id, 0) + delta
        if n > 0:
            self.local[app.app_id] = n
        else:
            self.local.pop(app.app_id, None)

    # -- the HTTP API ----------------------------------------------------------------------

    async def channels(self, app: PusherApp) -> dict[str, int]:
        """Occupied channels of ``app`` on every node: name → subscriptions."""
        return await self.backend.counts(app.app_id, lambda n: hub_channel(app.app_id, n))

    async def subscriptions(self, app: PusherApp, name: str) -> int:
        return await self.backend.count(hub_channel(app.app_id, name))

    async def members(self, app: PusherApp, name: str) -> dict[str, Any]:
        return _members(await self.backend.members(hub_channel(app.app_id, name)))

    async def terminate(self, app: PusherApp, user_id: str) -> None:
        """End the user's connections on this node now, and on the others through the
        backend's control channel."""
        self.users.terminate(app.app_id, user_id)
        await self.backend.terminate(app.app_id, user_id)

    def _terminated(self, app_id: str, user_id: str) -> None:
        self.users.terminate(app_id, user_id)


_: type[Cluster] = PusherState
