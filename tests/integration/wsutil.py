"""Small helpers for the integration tests (real sockets, real server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from wagerwire.client import ClientMessage, Connected, Subscription

__all__ = [
    "collect_messages",
    "join_tokens",
    "publish_many",
    "raw_socket",
    "split_server_frames",
    "subscribe",
    "take",
    "until_connected",
]


async def subscribe(
    url: str, channels: list[str], *, since: str | None = None, **extra: Any
) -> tuple[ClientConnection, list[dict[str, Any]]]:
    """Connect, subscribe, and return the socket plus the ``subscribed`` replies."""
    ws = await connect(url + "/v1/ws", max_size=2**22)
    op: dict[str, Any] = {"op": "subscribe", "channels": channels, **extra}
    if since:
        op["since"] = since
    await ws.send(json.dumps(op))
    replies: list[dict[str, Any]] = []
    expected = len(channels)
    pending: list[dict[str, Any]] = []
    while len(replies) < expected:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if frame["op"] == "subscribed":
            replies.append(frame)
        elif frame["op"] == "message":
            pending.append(frame)
        else:
            raise AssertionError(f"unexpected frame {frame}")
    ws.pending = pending  # type: ignore[attr-defined]  # replayed messages already read
    return ws, replies


async def collect_messages(
    ws: ClientConnection, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """Read until ``count`` message frames arrived (including any already read)."""
    out: list[dict[str, Any]] = list(getattr(ws, "pending", []))
    ws.pending = []  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(out) < count:
        frame = json.loads(await asyncio.wait_for(ws.recv(), max(0.1, deadline - loop.time())))
        if frame["op"] == "message":
            out.append(frame)
    return out


async def publish_many(url: str, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Publish over one WebSocket with every publish in flight; returns the acks."""
    async with connect(url + "/v1/ws") as ws:
        for channel, data in items:
            await ws.send(json.dumps({"op": "publish", "channel": channel, "data": data}))
        acks: list[dict[str, Any]] = []
        while len(acks) < len(items):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert frame["op"] == "published", frame
            acks.append(frame)
        return acks


def join_tokens(messages: list[dict[str, Any]]) -> str:
    """The multi-channel resume token: the latest token of each channel joined by '.'."""
    latest: dict[str, str] = {}
    for m in messages:
        latest[m["channel"]] = m["token"]
    return ".".join(latest[c] for c in sorted(latest))


@contextlib.asynccontextmanager
async def raw_socket(srv: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to ``srv`` (anything with a ``port``), closed on exit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def split_server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """(opcode, payload) of each complete server frame in ``data``, and what is left after them.

    Server frames are never masked (asserted).
    """
    frames = []
    pos = 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        start = pos + 2
        if n == 126:
            n, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        elif n == 127:
            n, start = int.from_bytes(data[start : start + 8], "big"), start + 8
        if start + n > len(data):
            break
        frames.append((b0 & 0x0F, data[start : start + n]))
        pos = start + n
    return frames, data[pos:]


# -- the Python SDK ----------------------------------------------------------------------------


async def take(sub: Subscription, n: int, timeout: float = 20.0) -> list[ClientMessage]:
    """The next ``n`` messages of an SDK subscription, within ``timeout`` seconds."""
    out: list[ClientMessage] = []

    async def run() -> None:
        async for msg in sub:
            out.append(msg)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def until_connected(sub: Subscription, timeout: float = 20.0) -> None:
    """Return once an SDK subscription reports ``Connected`` (fail after ``timeout`` seconds)."""

    async def run() -> None:
        async for state in sub.states():
            if isinstance(state, Connected):
                return

    await asyncio.wait_for(run(), timeout)
