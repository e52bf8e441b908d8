"""A blocking facade for scripts and notebooks: ``for msg in stream(url, channels): …``.

The async client runs on an event loop in a background thread. Each ``next()`` asks that loop
for the subscription's next message, so nothing sits in a second queue between the threads:
the resume token always covers exactly the messages the caller has been given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from wagerwire.client.client import Client
from wagerwire.client.errors import ClosedError
from wagerwire.client.messages import ClientMessage
from wagerwire.client.protocol import Counters
from wagerwire.client.states import State
from wagerwire.client.subscription import Subscription
from wagerwire.types import Json

__all__ = ["SyncStream", "stream"]

T = TypeVar("T")

logger = logging.getLogger("wagerwire.client")


class SyncStream(Iterator[ClientMessage]):
    """An iterator of messages backed by an async :class:`Client` in a daemon thread.

    Close it (or use ``with``) to stop the thread; iteration raises the fatal
    :class:`~wagerwire.client.errors.SdkError` that ended the stream, if any.
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        *,
        filter: Mapping[str, Json] | None = None,
        since: str | None = None,
        **client_options: Any,
    ) -> None:
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sub: Subscription | None = None
        self._startup_error: BaseException | None = None
        self._closed = False
        self._final_token: str | None = None
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._main(url, channels, filter, since, client_options),),
            name="wagerwire-stream",
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error

    async def _main(
        self,
        url: str,
        channels: Sequence[str],
        filter: Mapping[str, Json] | None,
        since: str | None,
        options: dict[str, Any],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with Client(url, **options) as client:
                self._sub = client.subscribe(channels, filter=filter, since=since)
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
            else:
                logger.exception("wagerwire stream thread failed")
        finally:
            self._ready.set()

    def _call(self, fn: Callable[[Subscription], T]) -> T:
        """Run ``fn(subscription)`` on the loop thread and return its result."""
        if self._loop is None or self._sub is None or not self._thread.is_alive():
            raise ClosedError("the stream is closed")
        sub = self._sub

        async def run() -> T:
            return fn(sub)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> ClientMessage:
        if self._closed or self._loop is None or self._sub is None:
            raise StopIteration
        future = asyncio.run_coroutine_threadsafe(self._sub.__anext__(), self._loop)
        try:
            return future.result()
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        except concurrent.futures.CancelledError:
            self.close()
            raise StopIteration from None
        except BaseException:
            future.cancel()
            self.close()
            raise

    @property
    def resume_token(self) -> str | None:
        """Pass as ``since=`` to continue after the last message returned."""
        if self._closed:
            return self._final_token
        return self._call(lambda s: s.resume_token)

    @property
    def state(self) -> State:
        return self._call(lambda s: s.state)

    @property
    def counters(self) -> Counters:
        return self._call(lambda s: Counters.total([s.counters]))

    def close(self) -> None:
        """Stop the stream and its thread."""
        if self._closed:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            try:
                self._final_token = self._call(lambda s: s.resume_token)
            except ClosedError:
                pass
            loop.call_soon_threadsafe(stop.set)
        self._closed = True
        self._thread.join(timeout=10)

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def stream(
    url: str,
    channels: Sequence[str],
    *,
    filter: Mapping[str, Json] | None = None,
    since: str | None = None,
    **client_options: Any,
) -> SyncStream:
    """Iterate over messages without asyncio; ``client_options`` go to :class:`Client`.

    ``with stream("http://localhost:8080", ["game:crash"]) as s: for msg in s: …``
    """
    return SyncStream(url, channels, filter=filter, since=since, **client_options)
