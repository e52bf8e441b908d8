"""The Store protocol: durable history and channel positions.

Contract (checked by ``tests/contract/test_store_contract.py`` for every backend):

* ``append`` returns only once the message is durable (committed). Concurrent appends are
  grouped into one transaction ("group commit"); a failed batch fails every append in it.
* Offsets within a channel are stored as given; ``positions()`` reports, per channel, the epoch
  and the highest offset ever appended, even after retention removed the messages.
* ``read`` returns messages with ``offset > after`` in ascending order; ``read_last`` the
  newest ones in ascending order; ``read_by_time`` those with ``since <= ts < until``.
* ``append`` refuses a hole (an offset that is not the channel's last + 1, or 1 in a new
  epoch) with ``Unavailable``; a new epoch drops the old epoch's history.
* Retention (``prune``) removes the oldest messages per channel by count and by age, so the
  retained offsets have no gaps; it never removes the channel's position.
* ``read_by_time`` orders by (ts, offset); ``find_idempotent`` returns the earliest match;
  ``close`` is idempotent. Every backend exposes a ``commits`` counter (batches committed),
  which the contract suite uses to check group commit.
* Optional fast path (:class:`AppendSoon`): ``append_soon(message, done)`` queues the message
  for the same group commit as ``append`` and calls ``done(None)`` on the event loop once it
  is committed, or ``done(error)`` with the error ``append`` would raise; the ``done`` calls
  of one batch run in queue order within one loop callback. It raises at once (nothing
  queued) when the store cannot take the append (closed). The hub uses it so that a publish
  costs no task and no future of its own between the broker and the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from wagerwire.core.channels import pattern_matcher
from wagerwire.core.messages import Message, Position
from wagerwire.errors import Unavailable

__all__ = [
    "AppendDone", "AppendSoon", "ChannelInfo", "RetentionPolicy", "RetentionRule", "Store",
    "append_soon", "hole_error",
]

AppendDone = Callable[[BaseException | None], None]  # an append's outcome: None = committed


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Keep at most ``max_count`` messages no older than ``max_age_s`` in matching channels.

    ``pattern`` uses the channel pattern syntax (``*`` wildcards); the first matching rule
    applies. ``None`` means unlimited.
    """

    pattern: str
    max_count: int | None = None
    max_age_s: float | None = None


class RetentionPolicy:
    """The first rule whose pattern matches a channel, cached per channel (every backend)."""

    __slots__ = ("rules", "_cache")

    def __init__(self, rules: Iterable[RetentionRule]) -> None:
        self.rules = tuple(rules)
        self._cache: dict[str, RetentionRule | None] = {}

    def rule_for(self, channel: str) -> RetentionRule | None:
        try:
            return self._cache[channel]
        except KeyError:
            rule = next(
                (r for r in self.rules if pattern_matcher(r.pattern).fullmatch(channel)), None
            )
            self._cache[channel] = rule
            return rule


def hole_error(message: Message, state: tuple[str, int] | None) -> Unavailable:
    """The error every backend raises for an append that would leave a hole.

    ``state`` is the stored (epoch, last offset) of the channel, None for a new channel.
    """
    if state is None:
        where = "a new channel starts at offset 1"
    elif state[0] != message.epoch:
        where = f"a new epoch starts at offset 1 (stored epoch {state[0]})"
    else:
        where = f"the stored last offset is {state[1]} in epoch {state[0]}"
    return Unavailable(
        f"refused offset {message.offset} of {message.channel} (epoch {message.epoch}): "
        f"{where}; offsets must have no holes"
    )


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the store knows about one channel."""

    name: str
    epoch: str
    last_offset: int
    first_offset: int | None  # oldest retained offset; None when none is retained
    count: int
    last_ts: int | None


class AppendSoon(Protocol):
    """What a store offers besides ``Store.append`` for the hub's publish path (optional)."""

    def append_soon(self, message: Message, done: AppendDone) -> None:
        """Queue ``message`` for the group commit; ``done`` hears its outcome (see above)."""


class Store(Protocol):
    """Durable history. Implementations: ``stores.sqlite.SqliteStore`` (embedded default)."""

    async def open(self) -> None:
        """Create or migrate the schema; must be called before anything else."""

    async def close(self) -> None:
        """Commit what is pending, then release resources."""

    async def append(self, message: Message) -> None:
        """Persist one message; returns when its batch is committed."""

    async def positions(self) -> dict[str, Position]:
        """The last position of every channel ever written."""

    async def read(self, channel: str, after: int, limit: int) -> list[Message]:
        """Messages with offset > ``after``, ascending, at most ``limit``."""

    async def read_last(self, channel: str, limit: int) -> list[Message]:
        """The newest ``limit`` messages, ascending."""

    async def read_by_time(
        self, channel: str, since_ms: int, until_ms: int | None, limit: int
    ) -> list[Message]:
        """Messages with ``since_ms <= ts < until_ms``, ascending, at most ``limit``."""

    async def channel_info(self, channel: str) -> ChannelInfo | None:
        """Positions and retained range of one channel, ``None`` if never written."""

    async def channels(self) -> list[ChannelInfo]:
        """Every channel ever written, sorted by name."""

    async def find_idempotent(self, channel: str, key: str, since_ms: int) -> Message | None:
        """The message published with ``key`` on ``channel`` at or after ``since_ms``."""

    async def prune(self, now_ms: int) -> int:
        """Apply the retention rules; returns how many messages were removed."""


_APPENDS: set[asyncio.Task[None]] = set()  # append_soon's fallback tasks (strong refs)


def append_soon(store: Store, message: Message, done: AppendDone) -> None:
    """``store.append_soon(message, done)``, or ``append`` in a task for a store without it.

    Raises:
        Exception: whatever ``append_soon`` raises (the append was not queued).
    """
    soon: Callable[[Message, AppendDone], None] | None = getattr(store, "append_soon", None)
    if soon is not None:
        soon(message, done)
        return

    def finished(task: asyncio.Task[None]) -> None:
        _APPENDS.discard(task)
        done(Unavailable("the append was cancelled") if task.cancelled() else task.exception())

    task = asyncio.ensure_future(store.append(message))
    _APPENDS.add(task)
    task.add_done_callback(finished)
