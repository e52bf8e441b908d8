"""Publishes in flight and the idempotency window, shared by every broker backend.

A broker takes a publish's offset at once and persists it as its own task, so several
publishes of one channel are in flight together (see ``brokers/memory.py``). :class:`Publish`
is one of them, from its offset (or its idempotency claim) to its outcome;
:class:`IdempotencyWindow` remembers, per (channel, key), the first publish made with a key so
that a retry within the window gets that publish's very result, waiting if it is in flight.
The window is measured on the publishes' ``ts`` (the hub's clock), as ``Store.find_idempotent``
measures it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from wagerwire.core.broker import Persist, PublishArgs
from wagerwire.core.messages import Message, PublishResult
from wagerwire.errors import Unavailable

__all__ = [
    "IdempotencyWindow",
    "Publish",
    "abandoned_error",
    "cut_from",
    "publish_key",
    "start_persist",
]

Key = tuple[str, str]  # (channel, idempotency key)
P = TypeVar("P", bound="Publish")


class Publish:
    """One publish between its offset (or key claim) and its outcome.

    ``message`` is set once the offset is assigned (a Redis publish claims its key first).
    """

    __slots__ = (
        "abandoned", "delivered", "done", "key", "message", "persisted", "settled", "ts",
    )

    def __init__(self, ts: int, done: asyncio.Future[None], key: Key | None = None) -> None:
        self.ts = ts
        self.key = key
        self.message: Message | None = None
        self.done = done  # the publisher's: result at delivery, exception on failure
        self.settled: asyncio.Future[None] | None = None  # for retries, made on demand
        self.persisted = False
        self.delivered = False
        self.abandoned = False

    def settle(self, error: BaseException | None) -> None:
        """Tell the publisher (if still waiting) and any waiting retries the outcome."""
        done = self.done
        if not done.done():  # it is cancelled when the publisher stopped waiting
            if error is None:
                done.set_result(None)
            else:
                done.set_exception(error)
                done.exception()  # retrieved here, in case nobody awaits it any more
        if self.settled is not None and not self.settled.done():
            self.settled.set_result(None)

    def delivered_now(self) -> None:
        """The message reached the handler (here or through another copy): settle it."""
        self.delivered = True
        self.settle(None)


KEY_OVERHEAD_BYTES = 512  # a remembered key's objects beyond its data, channel and key
IDEMPOTENCY_WINDOW_BYTES = 16 * 1024 * 1024


class IdempotencyWindow:
    """The first publish of each (channel, key) within ``window_ms`` of the newest ``ts``.

    Bounded in bytes too: each key weighs its message's data, channel and key plus
    :data:`KEY_OVERHEAD_BYTES`; past ``budget_bytes`` the oldest keys are forgotten first, and
    a key heavier than the whole budget is not remembered (the store's ``find_idempotent``
    still answers a retry of a forgotten key while the message is in its history).
    """

    __slots__ = ("_keys", "_order", "budget_bytes", "nbytes", "window_ms")

    def __init__(self, window_ms: int, budget_bytes: int = IDEMPOTENCY_WINDOW_BYTES) -> None:
        self.window_ms = window_ms
        self.budget_bytes = budget_bytes
        self.nbytes = 0  # what the remembered keys weigh now
        self._keys: dict[Key, Publish] = {}
        self._order: deque[tuple[int, Key, Publish, int]] = deque()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    async def first(self, key: Key, ts: int) -> Message | None:
        """The first message published with ``key`` within the window, waiting if in flight.

        ``None`` when there is none (or the first failed): publish afresh.
        """
        while True:
            first = self._keys.get(key)
            if first is None or ts - first.ts > self.window_ms:
                return None
            if first.delivered:
                return first.message
            if first.settled is None:
                first.settled = asyncio.get_running_loop().create_future()
            # Shielded: one retry giving up must not cancel the wait of the others. Once
            # settled, look again: delivered, or failed and forgotten (then publish).
            await asyncio.shield(first.settled)

    async def duplicate(self, key: Key | None, ts: int) -> PublishResult | None:
        """The answer to a publish repeating ``key`` within the window, else ``None``."""
        if key is None:
            return None
        first = await self.first(key, ts)
        return None if first is None else PublishResult(first, duplicate=True)

    def remember(self, pub: Publish, data_bytes: int) -> None:
        """``pub`` (which has a key) is the first of its key; forget keys out of the window."""
        key = pub.key
        assert key is not None
        weight = data_bytes + len(key[0]) + len(key[1]) + KEY_OVERHEAD_BYTES
        order = self._order
        budget = self.budget_bytes - weight
        while order and (order[0][0] < pub.ts - self.window_ms or self.nbytes > budget):
            _, old_key, old, old_weight = order.popleft()
            self.nbytes -= old_weight
            if self._keys.get(old_key) is old:
                del self._keys[old_key]
        if budget < 0:
            return  # heavier than the whole window: not remembered (the store still is)
        self._keys[key] = pub
        order.append((pub.ts, key, pub, weight))
        self.nbytes += weight

    def forget(self, pub: Publish) -> None:
        """``pub`` failed: a retry of its key publishes afresh."""
        key = pub.key
        if key is not None and self._keys.get(key) is pub:
            del self._keys[key]

    def clear(self) -> None:
        self._keys.clear()
        self._order.clear()
        self.nbytes = 0


def publish_key(channel: str, args: PublishArgs) -> Key | None:
    """The idempotency window's key of a publish; ``None`` without an idempotency key."""
    idempotency_key = args["idempotency_key"]
    return None if idempotency_key is None else (channel, idempotency_key)


def start_persist(
    persist: Persist, message: Message, tasks: set[asyncio.Future[Any]],
    done: Callable[[BaseException | None], None],
) -> None:
    """Run ``persist(message)`` as a task kept in ``tasks``; ``done`` gets its outcome.

    ``done(None)`` once persisted, ``done(error)`` if it failed (also when ``persist`` raised
    before returning an awaitable); a cancelled persist is ``Unavailable``. A ``persist`` with
    a ``soon`` method (``core.broker.PersistSoon``, the hub's) reports to ``done`` itself:
    no task.
    """
    soon: Callable[[Message, Callable[[BaseException | None], None]], None] | None = getattr(
        persist, "soon", None
    )
    if soon is not None:
        try:
            soon(message, done)
        except Exception as exc:  # nothing was started
            done(exc)
        return
    try:
        task = asyncio.ensure_future(persist(message))
    except Exception as exc:  # persist raised before returning an awaitable
        done(exc)
        return

    def finished(task: asyncio.Future[None]) -> None:
        tasks.discard(task)
        done(Unavailable("persist was cancelled") if task.cancelled() else task.exception())

    tasks.add(task)
    task.add_done_callback(finished)


def cut_from(inflight: deque[P], pub: P) -> list[P]:
    """Remove ``pub`` and every later publish from ``inflight``; the later ones, in order."""
    index = inflight.index(pub)
    later = [inflight.pop() for _ in range(len(inflight) - index - 1)]
    inflight.pop()
    later.reverse()
    return later


def abandoned_error(other: Publish, failed: Publish, cause: BaseException) -> Unavailable:
    """Why ``other`` (after ``failed`` in its channel) is abandoned: its offset is reused."""
    assert other.message is not None and failed.message is not None
    error = Unavailable(
        f"publish #{other.message.offset} on {other.message.channel} abandoned: "
        f"#{failed.message.offset} failed to persist and its offset is reused"
    )
    error.__cause__ = cause
    return error

