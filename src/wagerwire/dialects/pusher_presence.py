"""Channel occupancy and presence members of one process, sans-I/O: :class:`LocalPresence`.

The bookkeeping a single node needs (the memory broker); with Redis the same answers come
from :mod:`wagerwire.brokers.redis_pusher`, which holds them for every node. Both answer in
the shape :mod:`wagerwire.node.pusher_state` turns into webhooks and member events:

* :meth:`LocalPresence.occupy` → ``(subscriptions before, after)`` of a hub channel;
* :meth:`LocalPresence.join` → ``(first connection of the user?, members)`` where members is
  ``[(user id, user_info JSON), …]`` in join order;
* :meth:`LocalPresence.leave` → whether it was the user's last connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["HEARTBEAT_S", "Heartbeat", "LocalPresence", "Members", "Reaped"]

HEARTBEAT_S = 5.0
"""Seconds between a node's heartbeats (lease renewal, other nodes' connection counts)."""

Members = list[tuple[str, str]]
"""(user id, user_info as JSON text) of a presence channel, first joiner first."""


@dataclass(frozen=True, slots=True)
class Reaped:
    """One channel a dead node had touched: whether it is now vacated, whose last
    connection went with the node."""

    app_id: str
    name: str
    hub: str
    vacated: bool
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A heartbeat's answer: other live nodes' connections per app, what this node reaped,
    and whether this node had itself been reaped (paused past its lease)."""

    others: Mapping[str, int]
    reaped: tuple[Reaped, ...]
    was_reaped: bool


@dataclass(slots=True)
class _Member:
    info: str  # user_info as JSON text
    connections: int


@dataclass(slots=True)
class LocalPresence:
    """Occupancy (hub channel → subscriptions) and members (hub channel → user id →
    [user_info JSON, connections]) of this process."""

    occupancy: dict[str, int] = field(default_factory=dict)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # hub -> (app id, name)
    channels: dict[str, dict[str, _Member]] = field(default_factory=dict)

    def occupy(self, app_id: str, name: str, hub: str, delta: int) -> tuple[int, int]:
        before = self.occupancy.get(hub, 0)
        after = max(before + delta, 0)
        if after:
            self.occupancy[hub] = after
            self.names[hub] = (app_id, name)
        else:
            self.occupancy.pop(hub, None)
            self.names.pop(hub, None)
        return before, after

    def join(self, hub: str, user_id: str, info: str) -> tuple[bool, Members]:
        members = self.channels.setdefault(hub, {})
        entry = members.get(user_id)
        if entry is None:
            members[user_id] = _Member(info, 1)
        else:
            entry.connections += 1
        return entry is None, [(uid, e.info) for uid, e in members.items()]

    def leave(self, hub: str, user_id: str) -> bool:
        members = self.channels.get(hub)
        entry = members.get(user_id) if members else None
        if members is None or entry is None:
            return False
        entry.connections -= 1
        if entry.connections > 0:
            return False
        del members[user_id]
        if not members:
            del self.channels[hub]
        return True

    def members(self, hub: str) -> Members:
        return [(uid, e.info) for uid, e in self.channels.get(hub, {}).items()]

    def counts(self, app_id: str) -> dict[str, int]:
        """Pusher name → subscriptions of the app's occupied channels."""
        return {name: self.occupancy[hub] for hub, (app, name) in self.names.items()
                if app == app_id}

    def count(self, hub: str) -> int:
        return self.occupancy.get(hub, 0)

    def hubs(self) -> Iterable[str]:
        return self.occupancy.keys()
