"""The Python SDK over WebTransport (``transport="wt"``) against a real server on 127.0.0.1:
REST backfill when history no longer reaches, refusals as typed errors (no retry loop),
stream token expiry, the datagram lane, certificate trust (pinned and served hashes), and
``wagerwire tail --transport wt``. Live order, restarts (SIGTERM, SIGKILL), new epochs and
resume tokens over WebTransport are in test_client_sdk.py's transport matrix."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from dialect_harness import TEST_KEYS, TEST_PLANS, Live
from sdkservers import wt_process  # noqa: F401  (a fixture)
from wsutil import take, until_connected
from wtclient import TestCertificate

from serverproc import ServerProcess
from tlsutil import TestCA
from wagerwire.client import (
    AuthError,
    Backoff,
    CertificateError,
    Client,
    ClientMessage,
    Connected,
    ForbiddenError,
    RequestError,
)
from wagerwire.client.webtransport import parse_hash, webtransport_url
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




# -- history, refusals, tokens (in-process server) ---------------------------------------------


async def test_history_that_no_longer_reaches_is_backfilled_and_the_hole_reported(
    tmp_path: Path,
) -> None:
    async with wt_server(tmp_path, retention_count=5) as live, client_for(live) as client:
        sub = client.subscribe(["game:crash"])
        await until_connected(sub)
        for i in range(2):
            await client.publish("game:crash", i)
        await take(sub, 2)
        token = sub.resume_token
        await sub.aclose()
        for i in range(2, 20):
            await client.publish("game:crash", i)
        await live.hub.store.prune(int(time.time() * 1000))  # only offsets 16..20 are kept
        again = client.subscribe(["game:crash"], since=token)
        kept = await take(again, 5)
        await until_connected(again)
        await client.publish("game:crash", 20)
        (live_msg,) = await take(again, 1)
        assert [m.offset for m in kept] == [16, 17, 18, 19, 20]
        assert {m.source for m in kept} == {"backfill"} and live_msg.source == "live"
        assert live_msg.offset == 21
        gap = again.gaps[0]
        assert (gap.after_offset, gap.before_offset) == (2, 16)
        assert again.counters.gaps_unrecovered == 1


def refusals(live: Live, code: str) -> int:
    return int(live.registry.errors["wt", "refused", code])


async def test_a_refused_key_is_an_auth_error_with_one_attempt(tmp_path: Path) -> None:
    async with wt_server(tmp_path, auth="required") as live:
        async with client_for(live, key="ww_0000_not-a-key", stream_tokens=False) as client:
            sub = client.subscribe(["game:crash"])
            t = time.monotonic()
            with pytest.raises(AuthError):
                async for _ in sub:
                    pass
            took = time.monotonic() - t
            await asyncio.sleep(1.0)  # a retry loop would have come back by now (FAST)
        assert took < 10
        assert refusals(live, "unauthorized") == 1
        assert client.counters.reconnects == 0


async def test_a_forbidden_channel_is_a_forbidden_error_with_one_attempt(tmp_path: Path) -> None:
    async with wt_server(tmp_path, auth="required") as live:
        async with client_for(live, key=live.key("key-stake-only")) as client:
            sub = client.subscribe(["game:crash"])
            with pytest.raises(ForbiddenError):
                async for _ in sub:
                    pass
            await asyncio.sleep(1.0)
        assert client.counters.reconnects == 0
        assert refusals(live, "forbidden") + refusals(live, "unauthorized") <= 1


async def test_the_stream_outlives_its_tokens(tmp_path: Path) -> None:
    """Each stream token expires after 2 s: the server closes the session with 4001, the
    SDK fetches a new token and resumes, and no message is lost or repeated."""
    async with wt_server(tmp_path, auth="required", token_ttl=2) as live:
        async with client_for(live, key=live.key("key-reader")) as client:
            sub = client.subscribe(["game:crash"])
            await until_connected(sub)
            got: list[ClientMessage] = []
            for n in range(30):
                await live.hub.publish("game:crash", {"n": n})
                got += await take(sub, 1)
                await asyncio.sleep(0.2)  # 6 s in all: past three token lifetimes
            assert [m.offset for m in got] == list(range(1, 31))
            assert client.counters.reconnects >= 2 and sub.error is None
            assert client.auth.tokens_fetched >= 3


# -- the datagram lane --------------------------------------------------------------------------


async def test_the_datagram_lane_delivers_odds_with_offsets(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, client_for(live) as client:
        sub = client.subscribe(["odds:soccer:*"], lane="datagram")
        await until_connected(sub)
        got: list[ClientMessage] = []
        for n in range(200):
            await client.publish("odds:soccer:epl", {"price": n})
            with contextlib.suppress(TimeoutError):
                got += await take(sub, 1, timeout=0.05)
            if len(got) >= 5:
                break
        assert len(got) >= 5
        offsets = [m.offset for m in got]
        assert offsets == sorted(set(offsets))  # in order, no duplicate
        assert all(m.data == {"price": m.offset - 1} for m in got)
        # what never arrived is counted, not fetched: delivered + skipped covers the range
        c = sub.counters
        assert c.messages_delivered + c.datagrams_superseded == offsets[-1] - offsets[0] + 1
        assert c.gaps_backfilled == 0 and c.gaps_unrecovered == 0
        assert sum(s.before_offset - s.after_offset - 1 for s in sub.skipped) == \
            c.datagrams_superseded


async def test_a_lane_message_too_big_for_a_datagram_arrives_on_its_own_stream(
    tmp_path: Path,
) -> None:
    async with wt_server(tmp_path) as live, client_for(live) as client:
        sub = client.subscribe(["odds:soccer:epl"], lane="datagram")
        await until_connected(sub)
        big = {"price": 1.5, "book": "x" * 3000}  # over the 1,100-byte datagram bound
        await client.publish("odds:soccer:epl", big)
        (msg,) = await take(sub, 1)
        assert msg.data == big and msg.offset == 1


async def test_the_datagram_lane_is_for_live_odds_over_webtransport(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, client_for(live) as client:
        with pytest.raises(RequestError, match="odds"):
            client.subscribe(["game:crash"], lane="datagram")
        with pytest.raises(RequestError, match="since"):
            client.subscribe(["odds:x"], lane="datagram", since="Z2FtZTpjcmFzaCxrM3g5cTJhYiw0Mg")
        with pytest.raises(RequestError, match="WebTransport"):
            client.subscribe(["odds:x"], lane="datagram", transport="ws")


# -- certificates -------------------------------------------------------------------------------


async def test_a_certificate_that_is_not_pinned_ends_the_subscription(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, \
            client_for(live, cert_hashes=[bytes(32)]) as client:
        sub = client.subscribe(["game:crash"])
        with pytest.raises(CertificateError, match="not pinned"):
            async for _ in sub:
                pass
        assert client.counters.reconnects == 0


async def test_a_dev_certificate_is_trusted_by_its_served_hash(tmp_path: Path) -> None:
    """``cert_hashes="served"``: the hash published at GET /v1/tls/certificate-hashes (here
    read over https trusting the dev certificate's own PEM) pins the QUIC handshake."""
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        webtransport=True, webtransport_port=0, tls_dev=True,
                        anonymous_publish=True, tls_dev_dir=str(tmp_path / "tls"))
    server = Server(settings, default_features)
    await server.start()
    try:
        assert server.webtransport is not None
        dev_pem = tmp_path / "tls" / "current.pem"
        base = f"https://127.0.0.1:{server.port}"
        async with Client(base, transport="wt", ca=str(dev_pem), cert_hashes="served",
                          webtransport_url=webtransport_url(base, server.webtransport.port),
                          backoff=FAST) as client:
            served = await client.certificate_hashes()
            assert len(served) >= 1 and all(len(h) == 32 for h in served)
            sub = client.subscribe(["game:crash"])
            await until_connected(sub)
            await client.publish("game:crash", {"n": 1})
            (msg,) = await take(sub, 1)
            assert msg.offset == 1 and isinstance(sub.state, Connected)
    finally:
        await server.stop()


def test_certificate_hashes_parse_from_every_form() -> None:
    raw = CERT.sha256
    import base64

    assert parse_hash(raw) == raw
    assert parse_hash(raw.hex()) == raw
    assert parse_hash(":".join(f"{b:02X}" for b in raw)) == raw
    assert parse_hash(base64.b64encode(raw).decode()) == raw
    for bad in ("", "abc", base64.b64encode(b"short").decode(), b"x" * 31):
        with pytest.raises(ValueError):
            parse_hash(bad)
    assert webtransport_url("http://example.test:8000/base") == \
        "https://example.test:4433/base/v1/wt"


def test_tail_follows_over_webtransport(
    wt_process: tuple[ServerProcess, TestCA, int],  # noqa: F811
) -> None:
    import httpx
    from test_client_faults import Tail

    srv, ca, port = wt_process
    wt_url = f"https://127.0.0.1:{port}/v1/wt"
    with httpx.Client(verify=ca.client_context()) as http:
        for i in range(3):
            http.post(srv.url + "/v1/publish",
                      json={"channel": "game:tail", "data": {"i": i}}).raise_for_status()
    tail = Tail("game:tail", "--from-start", "--json", "--url", srv.url, "--ca", str(ca.path),
                "--transport", "wt", "--webtransport-url", wt_url)
    try:
        lines = [orjson.loads(x) for x in tail.lines(3)]
        assert [(m["offset"], m["data"]["i"]) for m in lines] == [(1, 0), (2, 1), (3, 2)]
        code, token = tail.interrupt()
        assert code == 0 and token
        resume = next(x for x in tail.err if x.startswith("resume with:"))
        assert f"--transport wt --webtransport-url {wt_url} --ca" in resume
    finally:
        tail.kill()
