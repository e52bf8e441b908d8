"""The Python SDK over WebTransport (``transport="wt"``) against a real server on 127.0.0.1:
live delivery, resume across a kill and a restart with no gap and no duplicate, REST backfill
when history no longer reaches, refusals as typed errors (no retry loop), the datagram lane,
and certificate trust (CA file, SSLContext, pinned hash, served hash)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dialect_harness import TEST_KEYS, TEST_PLANS, Live
from serverproc import ServerProcess
from wsutil import take, until_connected
from wtclient import TestCertificate

from wagerwire.client import (
    AuthError,
    Backoff,
    Client,
    ClientMessage,
    Connected,
    ForbiddenError,
    RequestError,
)
from wagerwire.client.webtransport import CertificateError, parse_hash, webtransport_url
from wagerwire.config import Settings
from wagerwire.node.features import default_features
from wagerwire.node.server import Server

pytestmark = pytest.mark.timeout(120)

FAST = Backoff(initial=0.05, maximum=0.5)
CERT = TestCertificate()


@contextlib.asynccontextmanager
async def wt_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Live]:
    """An in-process server: REST on plain HTTP, WebTransport with :data:`CERT`."""
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        plans=TEST_PLANS, webtransport=True, webtransport_port=0,
                        anonymous_publish=True, **overrides)
    server = Server(settings, default_features)
    server.certificate = CERT.certified
    await server.start()
    keys = {name: server.gate.keystore.create(role, plan, user, name)[1]
            for name, (role, plan, user) in TEST_KEYS.items()}
    try:
        yield Live(server, keys)
    finally:
        await server.stop()


def client_for(live: Live, **kwargs: Any) -> Client:
    assert live.server.webtransport is not None
    port = live.server.webtransport.port
    kwargs.setdefault("cert_hashes", [CERT.sha256])
    kwargs.setdefault("backoff", FAST)
    return Client(f"http://127.0.0.1:{live.port}", transport="wt",
                  webtransport_url=f"https://127.0.0.1:{port}/v1/wt", **kwargs)


def keyed(msgs: list[ClientMessage]) -> list[tuple[str, int]]:
    return [(m.channel, m.offset) for m in msgs]


async def test_live_messages_arrive_in_order_over_webtransport(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, client_for(live) as client:
        sub = client.subscribe(["game:crash", "odds:football:*"])
        await until_connected(sub)
        for i in range(5):
            await client.publish("game:crash", {"i": i})
        await client.publish("odds:football:epl", {"price": 2.1})
        await client.publish("odds:tennis:atp", {"price": 1.1})  # not subscribed
        msgs = await take(sub, 6)
        assert keyed(msgs) == [("game:crash", n) for n in range(1, 6)] + [("odds:football:epl", 1)]
        assert msgs[0].data == {"i": 0} and all(m.source == "live" for m in msgs)
        assert client.latency.snapshot()["wt"]["count"] == 6
        assert sub.resume_token is not None
