"""A client that stops reading is cut off by the policy; everyone else keeps full speed."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import time
from typing import Any

import httpx
from wsutil import collect_messages, publish_many, subscribe

MESSAGES = 1000
PAD = "x" * 8000  # 8 KB each: 8 MB in all, far past the 256 KiB outbox limit + socket buffers


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def _stalled_subscriber(port: int, channel: str) -> socket.socket:
    """A raw WebSocket client with a tiny receive buffer that never reads after subscribing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    sock.sendall(_masked_text(b'{"op":"subscribe","channels":["%s","slow:small"]}'
                              % channel.encode()))
    return sock


def _read_close_code(sock: socket.socket, timeout: float) -> int | None:
    """Drain the socket; return the close code of the server's Close frame, if any."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    pos = 0
    code = None
    while pos + 2 <= len(buf):
        op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
        pos += 2
        if ln == 126:
            (ln,) = struct.unpack("!H", buf[pos:pos + 2])
            pos += 2
        elif ln == 127:
            (ln,) = struct.unpack("!Q", buf[pos:pos + 8])
            pos += 8
        if op == 0x8 and ln >= 2:
            (code,) = struct.unpack("!H", buf[pos:pos + 2])
        pos += ln
    return code


async def test_slow_consumer_is_cut_and_fifty_others_get_everything(server_factory: Any) -> None:
    server = server_factory(["--outbox-limit", "262144"])
    # The stalled client also takes a big-message channel, so it falls behind by megabytes;
    # the 50 others read the small-message channel both share.
    stalled = _stalled_subscriber(server.port, "slow:big")
    others = [(await subscribe(server.ws_url, ["slow:small"]))[0] for _ in range(50)]
    await asyncio.sleep(0.2)
    started = time.monotonic()
    items: list[tuple[str, Any]] = []
    for i in range(MESSAGES):
        items += [("slow:big", {"i": i, "pad": PAD}), ("slow:small", {"i": i})]
    pub = asyncio.create_task(publish_many(server.ws_url, items))
    results = await asyncio.gather(*(collect_messages(ws, MESSAGES, 60) for ws in others))
    await pub
    elapsed = time.monotonic() - started
    for frames in results:
        assert [f["offset"] for f in frames] == list(range(1, MESSAGES + 1))
    metrics = httpx.get(server.url + "/metrics").text
    assert re.search(r"^wagerwire_slow_consumer_disconnects_total 1(\.0)?$", metrics, re.M)
    code = await asyncio.to_thread(_read_close_code, stalled, 5.0)
    assert code == 4000  # the close waits behind at most ~64 KiB until the peer reads it
    stalled.close()
    print(f"50 clients x {MESSAGES} delivered in {elapsed:.2f}s with one stalled peer")
    for ws in others:
        await ws.close()
