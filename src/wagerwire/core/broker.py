"""The Broker protocol: assigns positions and carries messages to every node's hub.

Contract (checked by ``tests/contract/test_broker_contract.py`` for every backend):

* ``publish`` assigns the next offset of the channel atomically (no holes, no reuse), creating
  an epoch for a channel it has never seen; it awaits ``persist(message)`` before the publish
  counts as done, then delivers the message to the handler of every started broker instance
  (every node), per channel in offset order, exactly once.
* A publish with an ``idempotency_key`` seen on the same channel within the idempotency window
  returns the first message with ``duplicate=True`` and delivers nothing.
* If ``persist`` raises, the publish raises the same error, nothing is delivered, and the
  offset is reused by the next publish (no hole); later publishes of that channel still in
  flight fail with ``Unavailable`` and their offsets are reused too.
* ``position`` is the last *delivered* position; cancelling a ``publish`` stops the caller
  waiting, not the publish. The idempotency window is measured on the messages' ``ts``.
* ``persist`` may also have a ``soon(message, done)`` method (:class:`PersistSoon`): a broker
  may call it instead of awaiting ``persist(message)``; ``done(None)`` then means persisted and
  ``done(error)`` failed, as if ``persist`` had returned or raised ``error``.
* ``latest`` is at least every position any node has delivered of the channel (a client may
  hold a position another node delivered); ``position`` is the same when ``knows_latest``.
* ``positions`` passed to ``start`` seed the offsets (the store's last positions), so a
  restarted node continues each channel in the same epoch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypedDict, Unpack

from wagerwire.core.messages import Message, Position, PublishResult

__all__ = ["Broker", "BrokerHandler", "Persist", "PersistSoon", "PublishArgs"]

Persist = Callable[[Message], Awaitable[None]]


class PersistSoon(Protocol):
    """A ``persist`` that can also report its outcome to a callback (no task, no future)."""

    def __call__(self, message: Message) -> Awaitable[None]: ...

    def soon(self, message: Message, done: Callable[[BaseException | None], None]) -> None:
        """Start persisting ``message``; ``done`` hears the outcome (``None``: persisted)."""


class PublishArgs(TypedDict):
    """The keyword arguments of every ``Broker.publish`` (all required)."""

    ts: int  # the hub's clock (ms): the message's timestamp and the idempotency window's measure
    attrs: Mapping[str, str] | None
    idempotency_key: str | None
    persist: Persist  # awaited before the publish counts as done


class BrokerHandler(Protocol):
    """Receives messages from the broker (the hub implements it)."""

    def on_message(self, message: Message) -> None:
        """Deliver one message to local subscribers; must not block."""


class Broker(Protocol):
    """Implementations: ``brokers.memory.MemoryBroker`` (one process)."""

    async def start(self, handler: BrokerHandler, positions: Mapping[str, Position]) -> None:
        """Begin delivering to ``handler``; seed offsets from ``positions``."""

    async def close(self) -> None:
        """Stop delivering; pending publishes fail with ``Unavailable``."""

    async def publish(self, channel: str, data: bytes, **args: Unpack[PublishArgs]
                      ) -> PublishResult:
        """Assign a position, persist, deliver everywhere; see the module contract."""

    def position(self, channel: str) -> Position | None:
        """The newest position this node knows of ``channel``, ``None`` if it has none."""

    def knows_latest(self, channel: str) -> bool:
        """``position(channel)`` is never behind a position another node delivered (one
        process); False when it may lag (a scale-out broker: ask ``latest``)."""

    async def latest(self, channel: str) -> Position | None:
        """The newest position of ``channel`` delivered on any node, or ``None`` if there is
        none or it cannot be told now: what a client's resume position is judged against."""

    async def subscribe(self, channel: str) -> None:
        """This node has local subscribers to ``channel`` (a scale-out broker listens)."""

    async def unsubscribe(self, channel: str) -> None:
        """The last local subscriber of ``channel`` left."""
