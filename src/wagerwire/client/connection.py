"""asyncio drivers that carry out a :class:`ClientProtocol`'s actions; the WebSocket one here.

A driver owns the I/O and the clock and nothing else: it opens the transport, feeds what it
reads and the time into the protocol, runs the REST backfills the protocol asks for, and sleeps
until the protocol's next deadline or retry. Every decision (what to resend, what to drop, when
to reconnect, what is fatal) is the protocol's. :mod:`wagerwire.client.sse` is the other driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from ssl import SSLContext
from typing import Protocol, Required, TypedDict, TypeVar, Unpack

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from wagerwire.client.actions import (
    Action,
    BackfillNeeded,
    Deliver,
    Fail,
    GapDetected,
    Reconnect,
    SendFrame,
    StateChanged,
    Superseded,
)
from wagerwire.client.auth import Auth
from wagerwire.client.errors import RequestError, SdkError, TransportError
from wagerwire.client.messages import ClientMessage
from wagerwire.client.protocol import ClientProtocol
from wagerwire.client.rest import RestApi, error_from_response
from wagerwire.client.states import Closed, Connected, Connecting, Disconnected, Recovering, State
from wagerwire.types import Json

__all__ = ["DriverOptions", "Sink", "StreamDriver", "WebSocketDriver"]

logger = logging.getLogger("wagerwire.client")

_LIVE = (Connecting, Recovering, Connected)

T = TypeVar("T")


class Sink(Protocol):
    """Where a driver puts what the application should see (a :class:`Subscription`)."""

    def deliver(self, message: ClientMessage) -> None: ...

    def state_changed(self, state: State) -> None: ...

    def gap(self, gap: GapDetected) -> None: ...

    # optional: ``superseded(gap: Superseded)``, offsets the datagram lane skipped (a sink
    # without it, e.g. a connector's relay that never uses the lane, is not told)

    def failed(self, error: SdkError) -> None: ...

    async def writable(self) -> None:
        """Return once the application has room for more messages (backpressure)."""


class DriverOptions(TypedDict, total=False):
    """What every driver takes besides its protocol; see :class:`StreamDriver` for each."""

    rest: Required[RestApi]
    sink: Required[Sink]
    auth: Required[Auth]
    open_timeout: float
    page_size: int


class StreamDriver:
    """Runs one protocol until it is closed or fails; subclasses open the transport.

    Args:
        protocol: the subscription's state machine.
        rest: REST calls for backfill.
        sink: receives messages, states, gaps and the final error.
        auth: credentials, refreshed when the protocol asks.
        open_timeout: seconds allowed for a connection attempt (TCP, TLS and handshake).
        page_size: messages per REST backfill page.
    """

    def __init__(
        self,
        protocol: ClientProtocol,
        *,
        rest: RestApi,
        sink: Sink,
        auth: Auth,
        open_timeout: float = 10.0,
        page_size: int = 1000,
    ) -> None:
        self.protocol = protocol
        self.rest = rest
        self.sink = sink
        self.auth = auth
        self.open_timeout = open_timeout
        self.page_size = page_size
        self._outgoing: list[dict[str, Json]] = []
        self._backfill_tasks: set[asyncio.Task[None]] = set()
        self._refresh_auth = False
        self._wake = asyncio.Event()
        self.credential: str | None = None  # what the current connection authenticates with

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, read, reconnect with backoff, until the protocol is closed."""
        proto = self.protocol
        try:
            while not isinstance(proto.state, Closed):
                self.dispatch(proto.connect_started(self.now()))
                await self._attempt()
                state = proto.state
                if isinstance(state, Disconnected):
                    logger.info(
                        "%s: %s; retrying in %.2fs",
                        ",".join(proto.channels),
                        state.reason,
                        max(0.0, state.next_retry_at - self.now()),
                    )
                    await self._sleep_until(state.next_retry_at)
        finally:
            for task in self._backfill_tasks:
                task.cancel()
            if self._backfill_tasks:
                await asyncio.gather(*self._backfill_tasks, return_exceptions=True)

    async def _attempt(self) -> None:
        """Credentials first (a stream token, refreshed if the last one was refused), then
        one connection."""
        try:
            if self._refresh_auth:
                self._refresh_auth = False
                await self.auth.refresh(self.credential)
            self.credential = await self.auth.stream_credential(self.rest)
            self.protocol.can_refresh_auth = self.auth.can_refresh
        except SdkError as exc:
            self.dispatch(self.protocol.auth_failed(exc, self.now()))
            return
        await self.session()

    async def session(self) -> None:
        """One connection: open, subscribe, read until the protocol leaves the live states."""
        raise NotImplementedError

    def close(self) -> None:
        """Tell the protocol the owner is done; the caller then cancels :meth:`run`."""
        self.dispatch(self.protocol.close(self.now()))
        self._wake.set()

    # -- helpers for subclasses ----------------------------------------------------------------

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    def live(self) -> bool:
        return isinstance(self.protocol.state, _LIVE)

    def deadline(self) -> float | None:
        """Loop time of the protocol's next deadline (``None``: wait for traffic only).

        Never in the past: a reader that was paused by backpressure first gets a moment to
        take frames already buffered, so a long pause is not mistaken for a dead link.
        """
        deadline = self.protocol.next_deadline()
        return None if deadline is None else max(deadline, self.now() + 0.01)

    async def receive(self, read: Awaitable[T]) -> T | None:
        """What ``read`` gives, or ``None`` when the protocol's deadline came first.

        A passed deadline is reported to the protocol (``tick``) before returning.
        """
        try:
            async with asyncio.timeout_at(self.deadline()):
                return await read
        except TimeoutError:
            self.dispatch(self.protocol.tick(self.now()))
            return None

    def dispatch(self, actions: Iterable[Action]) -> None:
        """Carry out actions in order; frames to send are queued for :meth:`flush`."""
        for action in actions:
            match action:
                case SendFrame(frame=frame):
                    self._outgoing.append(frame)
                case Deliver(message=message):
                    self.sink.deliver(message)
                case BackfillNeeded():
                    task = asyncio.create_task(self._backfill(action))
                    self._backfill_tasks.add(task)
                    task.add_done_callback(self._backfill_tasks.discard)
                case GapDetected():
                    self.sink.gap(action)
                case Superseded():
                    note = getattr(self.sink, "superseded", None)
                    if note is not None:
                        note(action)
                case Reconnect(refresh_auth=refresh):
                    self._refresh_auth = self._refresh_auth or refresh
                case StateChanged(state=state):
                    self.sink.state_changed(state)
                case Fail(error=error):
                    self.sink.failed(error)
                case _:
                    raise AssertionError(f"unhandled action {action!r}")

    async def flush(self) -> None:
        """Send queued frames; subclasses with an outbound channel override :meth:`send`."""
        while self._outgoing:
            await self.send(self._outgoing.pop(0))

    async def send(self, frame: dict[str, Json]) -> None:
        """Send one frame (transports without an upstream channel drop it)."""

    async def _sleep_until(self, at: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, at - self.now()))

    async def _backfill(self, need: BackfillNeeded) -> None:
        """Fetch history pages for one BackfillNeeded and feed them back into the protocol."""
        proto = self.protocol
        error: SdkError | None = None
        probed = False
        try:
            since = proto.backfill_next(need.request_id)
            while since is not None:
                try:
                    page = await self.rest.history(need.channel, since, self.page_size)
                except RequestError as exc:
                    # `since` beyond the end: the channel restarted with a shorter history.
                    # Read from the start once so the protocol learns the new epoch.
                    if exc.code != "bad_parameter" or probed:
                        raise
                    probed = True
                    page = await self.rest.history(need.channel, 0, self.page_size)
                if page.epoch:
                    self.dispatch(
                        proto.backfill_page(need.request_id, page.epoch, page.messages, self.now())
                    )
                if not page.messages or page.next is None:
                    break
                nxt = proto.backfill_next(need.request_id)
                if nxt is None or nxt <= since:
                    break
                since = nxt
                await self.sink.writable()
        except SdkError as exc:
            error = exc
            logger.warning("backfill of %s failed: %s", need.channel, exc)
        self.dispatch(proto.backfill_done(need.request_id, self.now(), error))


class WebSocketDriver(StreamDriver):
    """Drives the protocol over ``ws://HOST/v1/ws`` with the ``websockets`` asyncio client."""

    def __init__(
        self,
        url: str,
        protocol: ClientProtocol,
        *,
        max_size: int | None = 16 * 1024 * 1024,
        ssl: SSLContext | None = None,
        **options: Unpack[DriverOptions],
    ) -> None:
        super().__init__(protocol, **options)
        self.url = url
        self.max_size = max_size
        secure = url.startswith("wss:")
        self.ssl: SSLContext | bool | None = (ssl or True) if secure else None
        self._ws: ClientConnection | None = None

    async def send(self, frame: dict[str, Json]) -> None:
        ws = self._ws
        if ws is None:
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(orjson.dumps(frame).decode())

    async def session(self) -> None:
        proto = self.protocol
        try:
            ws = await connect(
                self.url,
                additional_headers=self.auth.header_for(self.credential),
                open_timeout=self.open_timeout,
                ping_interval=None,  # the protocol's own ping op and watchdog keep time
                close_timeout=2.0,
                max_size=self.max_size,
                compression=None,
                ssl=self.ssl,
            )
        except InvalidStatus as exc:
            resp = exc.response
            err = error_from_response(
                resp.status_code, bytes(resp.body or b""), resp.headers.get("Retry-After")
            )
            self.dispatch(proto.connection_failed(err, self.now()))
            return
        except InvalidURI as exc:
            self.dispatch(proto.connection_failed(RequestError(str(exc)), self.now()))
            return
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            self.dispatch(
                proto.connection_failed(TransportError(f"connect failed: {exc!r}"), self.now())
            )
            return
        self._ws = ws
        try:
            self.dispatch(proto.connection_opened(self.now()))
            await self.flush()
            while self.live():
                try:
                    text = await self.receive(ws.recv())
                except ConnectionClosed as exc:
                    code = exc.rcvd.code if exc.rcvd is not None else None
                    reason = exc.rcvd.reason if exc.rcvd is not None else ""
                    self.dispatch(proto.connection_lost(code, reason, self.now()))
                else:
                    if text is not None:
                        self.dispatch(proto.text_received(text, self.now()))
                        await self.flush()
                        await self.sink.writable()
                        continue
                await self.flush()  # after a tick (it may have queued a ping) or a close
        finally:
            self._ws = None
            self._outgoing.clear()
            await ws.close()
