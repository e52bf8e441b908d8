"""PusherState over the in-process backend: updates applied in order, webhooks and member
events sent once per cluster-wide transition, member lists for presence subscriptions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from wagerwire.dialects.pusher import Users
from wagerwire.dialects.pusher_apps import PusherApp, PusherApps
from wagerwire.dialects.pusher_presence import Heartbeat, LocalPresence
from wagerwire.node.pusher_state import LocalBackend, PusherState

APP = PusherApp("42", "k", "s", webhook_url="http://127.0.0.1:1/h")
HUB = "pusher:42:presence-r"


def state() -> tuple[PusherState, list[dict[str, Any]], list[tuple[str, Any, Any]]]:
    hooked: list[dict[str, Any]] = []
    published: list[tuple[str, Any, Any]] = []

    async def publish(channel: str, data: Any, attrs: Mapping[str, str] | None) -> None:
        published.append((channel, data, attrs))

    s = PusherState(PusherApps([APP]), LocalBackend(), publish, users=Users(),
                    hook=lambda app, event: hooked.append(event), heartbeat_s=3600)
    return s, hooked, published


async def settle(s: PusherState) -> None:
    for _ in range(50):
        await asyncio.sleep(0)
        if not s._jobs and (s._worker is None or s._worker.done()):
            return


async def test_occupancy_and_members_once_per_transition() -> None:
    s, hooked, published = state()
    await s.start()
    s.occupy(APP, "presence-r", HUB, 1)
    first = await s.join(APP, "presence-r", HUB, "u1", {"n": 1}, "1.1")
    s.occupy(APP, "presence-r", HUB, 1)
    second = await s.join(APP, "presence-r", HUB, "u1", {"n": 1}, "2.2")
    assert first == second == {"u1": {"n": 1}}
    await settle(s)
    assert await s.channels(APP) == {"presence-r": 2}
    assert await s.subscriptions(APP, "presence-r") == 2
    assert await s.members(APP, "presence-r") == {"u1": {"n": 1}}
    s.leave(APP, "presence-r", HUB, "u1")
    s.occupy(APP, "presence-r", HUB, -1)
    await settle(s)
    assert [e["name"] for e in hooked] == ["channel_occupied", "member_added"]
    s.leave(APP, "presence-r", HUB, "u1")
    s.occupy(APP, "presence-r", HUB, -1)
    await settle(s)
    assert [e["name"] for e in hooked] == ["channel_occupied", "member_added",
                                           "member_removed", "channel_vacated"]
    assert [(c, d["event"], a) for c, d, a in published] == [
        (HUB, "pusher_internal:member_added", {"pusher_socket": "1.1"}),
        (HUB, "pusher_internal:member_removed", None)]
    assert await s.channels(APP) == {}
    await s.stop()


async def test_a_leave_queued_after_its_join_is_applied_after_it() -> None:
    s, hooked, _ = state()
    await s.start()
    joined = s.join(APP, "presence-r", HUB, "u1", None, "1.1")  # never awaited by a session
    s.leave(APP, "presence-r", HUB, "u1")
    await settle(s)
    assert joined.done() if isinstance(joined, asyncio.Future) else True
    assert await s.members(APP, "presence-r") == {}
    assert [e["name"] for e in hooked] == ["member_added", "member_removed"]
    await s.stop()


async def test_connection_counts_and_terminate() -> None:
    s, _, _ = state()
    await s.start()
    s.connected(APP, 1)
    s.connected(APP, 1)
    s.connected(APP, -1)
    assert s.connections(APP) == 1
    s.others = {"42": 5}  # as another node's heartbeat reported
    assert s.connections(APP) == 6
    await s.terminate(APP, "nobody")  # no connection: nothing to end, no error
    await s.stop()


async def test_a_node_reaped_while_paused_applies_its_state_again() -> None:
    class Reaping(LocalBackend):
        async def heartbeat(self, connections: Mapping[str, int]) -> Heartbeat:
            self.state = LocalPresence()  # another node dropped everything of this one
            return Heartbeat({}, (), True)

    published: list[Any] = []

    async def publish(channel: str, data: Any, attrs: Mapping[str, str] | None) -> None:
        published.append(data["event"])

    backend = Reaping()
    s = PusherState(PusherApps([APP]), backend, publish, heartbeat_s=3600)
    s._ready.set()
    s.occupy(APP, "presence-r", HUB, 1)
    await s.join(APP, "presence-r", HUB, "u1", {"n": 1}, "1.1")
    s.occupy(APP, "presence-r", HUB, 1)
    await s.join(APP, "presence-r", HUB, "u2", None, "2.2")
    s.leave(APP, "presence-r", HUB, "u2")
    s.occupy(APP, "presence-r", HUB, -1)
    await settle(s)
    await s._heartbeat()
    await settle(s)
    assert await s.subscriptions(APP, "presence-r") == 1
    assert await s.members(APP, "presence-r") == {"u1": {"n": 1}}
    await s.stop()
