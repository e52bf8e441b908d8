"""One live subscription as the application holds it: an async iterator of messages.

It is the driver's :class:`~wagerwire.client.connection.Sink`: delivered messages wait in a
queue until the application takes them, and past ``max_queue`` the driver stops reading, so a
slow application slows its own connection (and, past the server's limit, is disconnected and
resumes) instead of growing memory. The resume token it reports counts only messages the
application has actually taken.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from wagerwire.client.actions import GapDetected, Superseded
from wagerwire.client.connection import StreamDriver
from wagerwire.client.errors import SdkError
from wagerwire.client.latency import LatencyHistogram
from wagerwire.client.messages import ClientMessage
from wagerwire.client.protocol import ClientProtocol, Counters
from wagerwire.client.states import Closed, State
from wagerwire.core.messages import Position
from wagerwire.core.tokens import encode_positions

__all__ = ["Subscription"]

logger = logging.getLogger("wagerwire.client")


class Subscription:
    """Messages of some channels, in offset order per channel, surviving reconnects.

    Iterate with ``async for``; the iteration ends when the subscription is closed and raises
    the :class:`SdkError` that ended it if one did. Created by
    :meth:`wagerwire.client.Client.subscribe`.
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        make_driver: Callable[[Subscription], StreamDriver],
        *,
        max_queue: int = 1000,
        on_state: Callable[[State], None] | None = None,
        latency: LatencyHistogram | None = None,
    ) -> None:
        self.protocol = protocol
        self._latency = latency
        self.max_queue = max_queue
        self.gaps: collections.deque[GapDetected] = collections.deque(maxlen=100)
        #: Datagram lane only: offsets that never arrived, superseded by a newer value.
        self.skipped: collections.deque[Superseded] = collections.deque(maxlen=100)
        self._queue: collections.deque[ClientMessage] = collections.deque()
        self._ready = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._error: SdkError | None = None
        self._watchers: list[asyncio.Queue[State]] = []
        self._on_state = on_state
        self._driver = make_driver(self)
        self._task = asyncio.create_task(self._driver.run())
        self._task.add_done_callback(self._driver_done)

    # -- views ---------------------------------------------------------------------------------

    @property
    def channels(self) -> tuple[str, ...]:
        return self.protocol.channels

    @property
    def state(self) -> State:
        return self.protocol.state

    @property
    def counters(self) -> Counters:
        return self.protocol.counters

    @property
    def error(self) -> SdkError | None:
        """The fatal error that ended the subscription, if any."""
        return self._error

    @property
    def positions(self) -> Mapping[str, Position]:
        """Per channel, the position just before the next message the application will get."""
        positions = dict(self.protocol.positions)
        seen: set[str] = set()
        for msg in self._queue:
            if msg.channel not in seen:
                seen.add(msg.channel)
                positions[msg.channel] = Position(msg.epoch, msg.offset - 1)
        return positions

    @property
    def resume_token(self) -> str | None:
        """Pass as ``since=`` to continue after the last message the application took."""
        positions = self.positions
        return encode_positions(positions) if positions else None

    # -- iteration -----------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ClientMessage:
        while not self._queue:
            if isinstance(self.protocol.state, Closed) or self._task.done():
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        msg = self._queue.popleft()
        if len(self._queue) <= self.max_queue // 2:
            self._writable.set()
        return msg

    async def states(self) -> AsyncIterator[State]:
        """The current state, then every change, ending after :class:`Closed`."""
        watcher: asyncio.Queue[State] = asyncio.Queue()
        self._watchers.append(watcher)
        try:
            state = self.protocol.state
            yield state
            while not isinstance(state, Closed):
                state = await watcher.get()
                yield state
        finally:
            self._watchers.remove(watcher)

    # -- control -------------------------------------------------------------------------------

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        """Stop receiving some channels or patterns (on SSE, from the next reconnect)."""
        self._driver.dispatch(self.protocol.unsubscribe(channels, self._driver.now()))
        await self._driver.flush()

    async def aclose(self) -> None:
        """Close the connection; iteration ends once the queued messages are taken."""
        if not self._task.done():
            self._driver.close()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._ready.set()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- Sink ----------------------------------------------------------------------------------

    def deliver(self, message: ClientMessage) -> None:
        if self._latency is not None and message.source == "live":
            self._latency.observe_ts(message.ts, self.protocol.wire)
        self._queue.append(message)
        self._ready.set()
        if len(self._queue) >= self.max_queue:
            self._writable.clear()

    def state_changed(self, state: State) -> None:
        logger.debug("%s: %r", ",".join(self.protocol.channels), state)
        for watcher in self._watchers:
            watcher.put_nowait(state)
        if self._on_state is not None:
            self._on_state(state)
        if isinstance(state, Closed):
            self._ready.set()

    def gap(self, gap: GapDetected) -> None:
        self.gaps.append(gap)
        logger.warning(
            "%s: messages after offset %d%s of epoch %s are lost",
            gap.channel,
            gap.after_offset,
            "" if gap.before_offset is None else f" and before {gap.before_offset}",
            gap.epoch,
        )

    def superseded(self, gap: Superseded) -> None:
        self.skipped.append(gap)
        logger.debug("%s: datagram lane skipped offsets %d..%d (superseded)", gap.channel,
                     gap.after_offset + 1, gap.before_offset - 1)

    def failed(self, error: SdkError) -> None:
        self._error = error
        self._writable.set()  # nobody will read the rest; do not keep the driver waiting
        self._ready.set()

    async def writable(self) -> None:
        await self._writable.wait()

    def _driver_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and self._error is None:
            exc = task.exception()
            logger.error("client driver crashed", exc_info=exc)
            self._error = SdkError(f"the client driver crashed: {exc!r}")
            self._driver.dispatch(self.protocol.close(asyncio.get_running_loop().time()))
        self._ready.set()
