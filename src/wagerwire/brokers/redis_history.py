"""A store whose offset reads come from the Redis broker's stream first.

With the Redis broker the hub's store is wrapped in :class:`HistoryStore`: ``read(channel,
after, limit)`` (replays, REST history) asks the broker's capped stream first and the wrapped
store only when the stream no longer reaches back (or Redis is down). Everything else, appends
included, goes straight to the wrapped store, :attr:`HistoryStore.inner`; what a backend
offers beyond the ``Store`` protocol (``commits``, ``path``, ``dsn``…) is read there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wagerwire.core.messages import Message, Position
from wagerwire.core.store import AppendDone, ChannelInfo, Store, append_soon

if TYPE_CHECKING:
    from wagerwire.brokers.redis import RedisBroker

__all__ = ["HistoryStore"]


class HistoryStore:
    """``inner`` with offset reads from ``broker``'s stream first (see the module docstring)."""

    def __init__(self, inner: Store, broker: RedisBroker) -> None:
        self.inner = inner
        self.broker = broker

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def append(self, message: Message) -> None:
        await self.inner.append(message)

    def append_soon(self, message: Message, done: AppendDone) -> None:
        append_soon(self.inner, message, done)

    async def positions(self) -> dict[str, Position]:
        return await self.inner.positions()

    async def read(self, channel: str, after: int, limit: int) -> list[Message]:
        try:
            page = await self.broker.history(channel, after, limit)
        except Exception:  # Redis down: the store has everything committed
            page = None
        if page is not None:
            return page
        return await self.inner.read(channel, after, limit)

    async def read_last(self, channel: str, limit: int) -> list[Message]:
        return await self.inner.read_last(channel, limit)

    async def read_by_time(
        self, channel: str, since_ms: int, until_ms: int | None, limit: int
    ) -> list[Message]:
        return await self.inner.read_by_time(channel, since_ms, until_ms, limit)

    async def channel_info(self, channel: str) -> ChannelInfo | None:
        return await self.inner.channel_info(channel)

    async def channels(self) -> list[ChannelInfo]:
        return await self.inner.channels()

    async def find_idempotent(self, channel: str, key: str, since_ms: int) -> Message | None:
        return await self.inner.find_idempotent(channel, key, since_ms)

    async def prune(self, now_ms: int) -> int:
        return await self.inner.prune(now_ms)


if TYPE_CHECKING:

    def _conforms(store: HistoryStore) -> Store:
        """mypy checks here that ``HistoryStore`` implements ``Store``."""
        return store
