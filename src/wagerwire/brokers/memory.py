"""In-process broker: assigns offsets and delivers in order, for a hub that runs alone.

Publishing on a channel is pipelined: the offset is taken synchronously (no await between
reading and bumping the counter), then ``persist(message)`` runs as its own task, so many
publishes of one channel can be in the store's group commit at once. Each channel keeps its
in-flight publishes in offset order; a publish is delivered (``handler.on_message``) only when
it and every earlier one have settled, so delivery follows offset order even if persists
complete out of order.

Failure keeps offsets free of holes. When the persist of offset *n* fails, that publish raises
the persist's error, the channel's next offset goes back to *n*, and every later publish of the
channel still in flight is abandoned: it raises :class:`Unavailable` and is not delivered,
whatever its own persist does (a store that enforces no holes refuses it anyway). Their offsets
are reused by the next publishes.

Persist tasks are shielded from the publisher: cancelling a ``publish`` stops the wait, not
the publish, which is still delivered once persisted (its outcome cannot be withdrawn from the
store).

Idempotency: a key is remembered per channel for ``idempotency_window_s``, measured on the
publishes' ``ts`` (the hub's clock), the same measure the hub uses with
``Store.find_idempotent``. A retry within the window returns the first message with
``duplicate=True``; a retry that arrives while the first is in flight waits for it, and if
the first fails the retry publishes afresh (one retry does, the others then match it).
What the window remembers is bounded in bytes too (``idempotency_window_bytes``: each key
weighs its message's data, channel and key plus a fixed overhead); past it the oldest keys
are forgotten first. A retry of a forgotten key is still answered as a duplicate by the hub's
``Store.find_idempotent`` while the first message is in the store's history and the window;
only a retry racing a first publish still in flight could then be stored twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Unpack

from wagerwire.brokers.inflight import (
    IDEMPOTENCY_WINDOW_BYTES,
    IdempotencyWindow,
    Publish,
    abandoned_error,
    cut_from,
    publish_key,
    start_persist,
)
from wagerwire.core.broker import BrokerHandler, PublishArgs
from wagerwire.core.messages import Message, Position, PublishResult
from wagerwire.errors import Unavailable

if TYPE_CHECKING:
    from wagerwire.core.broker import Broker

__all__ = ["IDEMPOTENCY_WINDOW_BYTES", "MemoryBroker", "new_epoch"]

log = logging.getLogger("wagerwire.brokers.memory")

_EPOCH_ALPHABET = string.ascii_lowercase + string.digits


def new_epoch() -> str:
    """A fresh epoch: 8 random base36 characters (short, lowercase, URL-safe)."""
    return "".join(secrets.choice(_EPOCH_ALPHABET) for _ in range(8))


class _Channel:
    """Offsets of one channel; ``inflight`` holds its undelivered publishes in offset order."""

    __slots__ = ("delivered", "epoch", "inflight", "next_offset")

    def __init__(self, epoch: str, last_offset: int) -> None:
        self.epoch = epoch
        self.next_offset = last_offset + 1
        self.delivered = last_offset
        self.inflight: deque[Publish] = deque()


class MemoryBroker:
    """The Broker for one process; see the module docstring for ordering and failures."""

    def __init__(
        self,
        idempotency_window_s: float = 300,
        idempotency_window_bytes: int = IDEMPOTENCY_WINDOW_BYTES,
    ) -> None:
        if idempotency_window_s < 0 or idempotency_window_bytes < 0:
            raise ValueError("idempotency_window_s and idempotency_window_bytes must be >= 0")
        self.idempotency_window_s = idempotency_window_s
        self.idempotency_window_bytes = idempotency_window_bytes
        self._window_ms = int(idempotency_window_s * 1000)
        self._handler: BrokerHandler | None = None
        self._closed = False
        self._channels: dict[str, _Channel] = {}
        self._window = IdempotencyWindow(self._window_ms, idempotency_window_bytes)
        self._tasks: set[asyncio.Future[None]] = set()  # persists in flight (strong refs)

    async def start(self, handler: BrokerHandler, positions: Mapping[str, Position]) -> None:
        """Begin delivering to ``handler``; each seeded channel continues in its epoch."""
        if self._closed:
            raise Unavailable("the broker is closed")
        self._handler = handler
        for name, position in positions.items():
            if name not in self._channels:
                self._channels[name] = _Channel(position.epoch, position.offset)

    async def close(self) -> None:
        """Stop delivering; publishes still in flight fail with ``Unavailable``."""
        if self._closed:
            return
        self._closed = True
        for channel in self._channels.values():
            for pub in channel.inflight:
                pub.abandoned = True
                self._finish(pub, Unavailable("the broker closed before delivery"))
            channel.inflight.clear()
        self._window.clear()

    @property
    def idempotency_bytes(self) -> int:
        """What the remembered idempotency keys weigh now."""
        return self._window.nbytes

    def position(self, channel: str) -> Position | None:
        """The last delivered position of ``channel``, ``None`` before its first delivery."""
        state = self._channels.get(channel)
        if state is None or state.delivered <= 0:
            return None
        return Position(state.epoch, state.delivered)

    def knows_latest(self, channel: str) -> bool:
        """True: every publish is delivered in this process."""
        return True

    async def latest(self, channel: str) -> Position | None:
        """``position(channel)``: nothing is delivered anywhere else."""
        return self.position(channel)

    async def subscribe(self, channel: str) -> None:
        """Nothing to do: every publish of this process is delivered to its hub."""

    async def unsubscribe(self, channel: str) -> None:
        """Nothing to do (see ``subscribe``)."""

    async def publish(self, channel: str, data: bytes, **args: Unpack[PublishArgs]
                      ) -> PublishResult:
        """Assign the next offset, persist, deliver in offset order; see the module docstring.

        Raises:
            Unavailable: the broker is not started or closed, or an earlier publish of the
                channel failed while this one was in flight (its offset is reused).
            Exception: whatever ``persist`` raised; nothing was delivered.
        """
        ts, key = args["ts"], publish_key(channel, args)
        if key is not None:  # (no coroutine to await for the usual publish without a key)
            duplicate = await self._window.duplicate(key, ts)
            if duplicate is not None:
                return duplicate
        if self._closed or self._handler is None:
            raise Unavailable("the broker is closed" if self._closed else "broker not started")
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel(new_epoch(), 0)
        offset = state.next_offset
        state.next_offset = offset + 1
        message = Message(channel, offset, state.epoch, ts, data, args["attrs"], args["idempotency_key"])
        pub = Publish(ts, asyncio.get_running_loop().create_future(), key)
        pub.message = message
        state.inflight.append(pub)
        if key is not None:
            self._window.remember(pub, len(message.data))
        start_persist(args["persist"], message, self._tasks, partial(self._persisted, state, pub))
        await pub.done
        return PublishResult(message)

    def _persisted(self, state: _Channel, pub: Publish, error: BaseException | None
                   ) -> None:
        """Persist finished: deliver what is now in order, or fail and roll the offset back."""
        if self._closed or pub.abandoned:
            return
        if error is not None:
            self._fail(state, pub, error)
            return
        pub.persisted = True
        self._deliver(state)

    def _deliver(self, state: _Channel) -> None:
        inflight = state.inflight
        handler = self._handler
        assert handler is not None
        while inflight and inflight[0].persisted:
            pub = inflight.popleft()
            message = pub.message
            assert message is not None
            state.delivered = message.offset
            pub.delivered = True
            try:
                handler.on_message(message)
            except Exception:  # a handler bug must not stall the channel
                log.exception("handler failed on %s #%d", message.channel, message.offset)
            pub.settle(None)

    def _fail(self, state: _Channel, pub: Publish, error: BaseException) -> None:
        """Fail ``pub``, abandon the later in-flight publishes, reuse their offsets."""
        later = cut_from(state.inflight, pub)
        assert pub.message is not None
        state.next_offset = pub.message.offset
        self._finish(pub, error)
        for other in later:
            other.abandoned = True
            self._finish(other, abandoned_error(other, pub, error))

    def _finish(self, pub: Publish, error: BaseException) -> None:
        self._window.forget(pub)
        pub.settle(error)


if TYPE_CHECKING:
    _conforms: Broker = MemoryBroker()
