"""How the HTTP layer opens streams against the plan limits, on an in-process server.

Requests are fed to ``HttpProtocol`` over a recording transport, so each step is observable:
an anonymous upgrade is answered in the same call (no await, no task); a keyed one waits for
its stream slot without blocking the loop, then upgrades, or answers 429/503 as plain HTTP;
a client that leaves while its slot is being acquired gives the slot back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from wagerwire.auth.limits import LocalLimits, SlotRef
from wagerwire.config import Settings
from wagerwire.errors import LimitsUnavailable
from wagerwire.node.server import Server
from wagerwire.transports.http import HttpProtocol


class Recorder:
    """The asyncio transport surface the HTTP layer and a stream use, recorded."""

    def __init__(self) -> None:
        self.protocol: Any = None
        self.written = b""
        self.closing = False
        self.ended = False  # write_eof (a lingering close after an error answer) or close
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += data

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def close(self) -> None:
        self.closing = self.ended = True

    abort = close

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:  # the answer is complete: the server's side is done
        self.ended = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class GatedLimits(LocalLimits):
    """Local limits whose slot acquisitions wait for ``go`` (a slow Redis), or fail."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.fail = False
        self.released: list[SlotRef] = []

    async def acquire_stream(self, subject: str, limit: int) -> str | None:
        await self.go.wait()
        if self.fail:
            raise LimitsUnavailable("plan limits cannot be checked now (test)")
        return await super().acquire_stream(subject, limit)

    async def release_streams(self, slots: Sequence[SlotRef]) -> None:
        self.released.extend(slots)
        await super().release_streams(slots)


def upgrade(headers: str = "") -> bytes:
    return ("GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{headers}\r\n").encode()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Server, GatedLimits, str]]:
    server = Server(Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}",
                             plans={"one": {"max_streams": 1}}))
    limits = GatedLimits()
    server.gate.limits = limits
    _, key = server.gate.keystore.create("reader", "one", None, "test")
    await server.start()
    yield server, limits, key
    await server.stop()


def connect(server: Server, head: bytes) -> Recorder:
    assert server._http is not None
    transport = Recorder()
    protocol = HttpProtocol(server._http)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    transport.protocol = protocol
    protocol.data_received(head)
    return transport


async def test_anonymous_upgrades_at_once_and_keyed_ones_after_their_slot(
    node: tuple[Server, GatedLimits, str],
) -> None:
    server, limits, key = node
    anonymous = connect(server, upgrade())
    assert anonymous.written.startswith(b"HTTP/1.1 101 ")  # in the same call
    assert not isinstance(anonymous.protocol, HttpProtocol)

    keyed = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))
    assert keyed.written == b"" and keyed.paused  # waiting for its slot; the loop runs on
    await asyncio.sleep(0.01)
    assert keyed.written == b""
    limits.go.set()
    await asyncio.sleep(0.01)
    assert keyed.written.startswith(b"HTTP/1.1 101 ") and not keyed.paused

    over = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))  # max_streams = 1
    await asyncio.sleep(0.01)
    assert over.written.startswith(b"HTTP/1.1 429 ") and over.ended
    assert b'"code":"rate_limited"' in over.written

    keyed.protocol.connection_lost(None)  # the stream closes: its slot is freed
    await asyncio.sleep(0.01)
    assert len(limits.released) == 1
    again = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))
    await asyncio.sleep(0.01)
    assert again.written.startswith(b"HTTP/1.1 101 ")
    again.protocol.connection_lost(None)


async def test_a_client_leaving_while_its_slot_is_acquired_gives_it_back(
    node: tuple[Server, GatedLimits, str],
) -> None:
    server, limits, key = node
    gone = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))
    gone.protocol.connection_lost(None)
    gone.closing = True
    limits.go.set()
    await asyncio.sleep(0.01)
    assert gone.written == b"" and len(limits.released) == 1
    fresh = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))
    await asyncio.sleep(0.01)
    assert fresh.written.startswith(b"HTTP/1.1 101 ")  # the slot really came back
    fresh.protocol.connection_lost(None)


async def test_limits_that_cannot_answer_refuse_keyed_upgrades_with_503(
    node: tuple[Server, GatedLimits, str],
) -> None:
    server, limits, key = node
    limits.fail = True
    limits.go.set()
    refused = connect(server, upgrade(f"X-Api-Key: {key}\r\n"))
    await asyncio.sleep(0.01)
    assert refused.written.startswith(b"HTTP/1.1 503 ") and refused.ended
    assert b'{"error":{"code":"limits_unavailable","message":' in refused.written
    anonymous = connect(server, upgrade())
    assert anonymous.written.startswith(b"HTTP/1.1 101 ")
    anonymous.protocol.connection_lost(None)
