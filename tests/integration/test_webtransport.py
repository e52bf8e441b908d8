"""WebTransport on 127.0.0.1 with a real aioquic client: Data Stream datagrams, the native
/v1/wt protocol with resume across a dropped connection, the datagram lane, auth refusals,
revocation, hostile input and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from dialect_harness import TEST_KEYS, TEST_PLANS, Live, Rounds, subscribed
from wtclient import TestCertificate, WtSession, wt_connect

from wagerwire.config import Settings
from wagerwire.node.features import default_features
from wagerwire.node.server import Server

pytestmark = pytest.mark.timeout(120)

ROUND_FIELDS = {"round_id", "game_id", "game_slug", "game_type", "finished_at", "extras",
                "timestamp"}
CERT = TestCertificate()


@contextlib.asynccontextmanager
async def wt_server(tmp_path: Path, **overrides: Any) -> AsyncIterator[Live]:
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        plans=TEST_PLANS, webtransport=True, webtransport_port=0, **overrides)
    server = Server(settings, default_features)
    server.certificate = CERT.certified
    await server.start()
    keys = {name: server.gate.keystore.create(role, plan, user, name)[1]
            for name, (role, plan, user) in TEST_KEYS.items()}
    try:
        yield Live(server, keys)
    finally:
        await server.stop()


def wt_port(live: Live) -> int:
    assert live.server.webtransport is not None
    return live.server.webtransport.port


async def token_for(live: Live, key: str) -> str:
    gate = live.server.gate
    identity = gate.authenticate({"authorization": f"Bearer {key}"})
    token, _ = await gate.issue_token(identity)
    return token


async def first_datagram(live: Live, session: WtSession, slug: str, rounds: Rounds
                         ) -> dict[str, Any]:
    """Publish rounds until one arrives (datagrams are lossy from the first packet on)."""
    for _ in range(50):
        await rounds.publish(slug)
        with contextlib.suppress(TimeoutError):
            return dict(orjson.loads(await session.datagram(timeout=0.3)))
    raise AssertionError("no datagram arrived")


async def test_datastream_rounds_arrive_as_datagrams_in_the_seed_schema(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        rounds = Rounds(live)
        crash = await conn.open("/wt/crash")
        assert crash.status == 200
        await subscribed(live, "game:crash")
        got = await first_datagram(live, crash, "crash", rounds)
        assert set(got) == ROUND_FIELDS
        assert got["game_slug"] == "crash" and got["game_type"] == "multiplier"
        assert isinstance(got["extras"], str) and "point" in orjson.loads(got["extras"])
        # /wt/type/{type} and /wt (every game the key may read) on the same connection
        typed = await conn.open("/wt/type/color")
        everything = await conn.open("/wt")
        assert typed.status == everything.status == 200
        await subscribed(live, "game:double", 2)
        double = await first_datagram(live, typed, "double", rounds)
        assert double["game_type"] == "color"
        slugs = set()
        for _ in range(40):
            await rounds.publish("double")
            await rounds.publish("crash")
            with contextlib.suppress(TimeoutError):
                while True:
                    slugs.add(orjson.loads(await everything.datagram(timeout=0.2))["game_slug"])
            if {"crash", "double"} <= slugs:
                break
        assert {"crash", "double"} <= slugs


async def test_a_round_too_big_for_a_datagram_goes_on_a_unidirectional_stream(
        tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        session = await conn.open("/wt/crash")
        await subscribed(live, "game:crash")
        big = {"round_id": 7, "game_id": 1, "game_slug": "crash", "game_type": "multiplier",
               "finished_at": "2026-01-17T00:45:42Z", "extras": '{"point":"' + "9" * 3000 + '"}'}
        await live.hub.publish("game:crash", {"raw": big, "index": 7, "game_slug": "crash"})
        async with asyncio.timeout(20):
            stream = await session.uni.get()
        got = orjson.loads(await stream.read_all())
        assert set(got) == ROUND_FIELDS and got["extras"] == big["extras"]


async def native_session(conn: Any, path: str = "/v1/wt") -> tuple[WtSession, Any]:
    session = await conn.open(path)
    assert session.status == 200, bytes(session.body)
    return session, session.open_bidi()


async def test_native_session_drops_and_resumes_with_no_gap(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live:
        hub = live.hub
        async with wt_connect(wt_port(live)) as conn:
            _, stream = await native_session(conn)
            stream.send_line({"op": "subscribe", "channels": ["game:crash"]})
            assert (await stream.line())["op"] == "subscribed"
            for n in range(1, 4):
                await hub.publish("game:crash", {"n": n})
            seen = [await stream.line() for _ in range(3)]
            assert [m["data"]["n"] for m in seen] == [1, 2, 3]
            assert [m["offset"] for m in seen] == [1, 2, 3]
            token = seen[-1]["token"]
        # the connection is gone (closed without a goodbye); publishing goes on meanwhile
        for n in range(4, 7):
            await hub.publish("game:crash", {"n": n})
        async with wt_connect(wt_port(live)) as conn:
            _, stream = await native_session(conn)
            stream.send_line({"op": "subscribe", "channels": ["game:crash"], "since": token})
            reply = await stream.line()
            assert reply["op"] == "subscribed" and reply["recovered"] is True
            missed = [await stream.line() for _ in range(3)]
            await hub.publish("game:crash", {"n": 7})
            live_msg = await stream.line()
            assert [m["data"]["n"] for m in [*missed, live_msg]] == [4, 5, 6, 7]
            assert [m["offset"] for m in [*missed, live_msg]] == [4, 5, 6, 7]
            stream.send_line({"op": "ping"})
            assert await stream.line() == {"op": "pong"}


async def test_resume_past_history_says_recovered_false(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        await live.hub.publish("game:crash", {"n": 1})
        _, stream = await native_session(conn)
        stream.send_line({"op": "subscribe", "channels": ["game:crash"],
                          "since": _token_with_epoch("game:crash", "zzzz", 1)})
        reply = await stream.line()
        assert reply["op"] in ("subscribed", "error")
        if reply["op"] == "subscribed":
            assert reply["recovered"] is False


def _token_with_epoch(channel: str, epoch: str, offset: int) -> str:
    from wagerwire.core.tokens import encode_position
    return encode_position(channel, epoch, offset)


async def test_the_datagram_lane_carries_odds_with_offsets(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        session, stream = await native_session(conn)
        stream.send_line({"op": "subscribe", "channels": ["odds:soccer:epl"],
                          "lane": "datagram"})
        reply = await stream.line()
        assert reply["op"] == "subscribed" and reply["lane"] == "datagram", reply
        got: list[dict[str, Any]] = []
        for n in range(60):
            await live.hub.publish("odds:soccer:epl", {"price": n})
            with contextlib.suppress(TimeoutError):
                while True:
                    got.append(orjson.loads(await session.datagram(timeout=0.1)))
            if len(got) >= 3:
                break
        assert len(got) >= 3
        assert all(m["op"] == "message" and m["channel"] == "odds:soccer:epl" for m in got)
        offsets = [m["offset"] for m in got]
        assert offsets == sorted(offsets) and all(m["data"]["price"] == m["offset"] - 1
                                                  for m in got)
        # only latest-value channels, and live only
        stream.send_line({"op": "subscribe", "channels": ["game:crash"], "lane": "datagram"})
        assert (await stream.line())["code"] == "bad_parameter"
        stream.send_line({"op": "subscribe", "channels": ["odds:x"], "lane": "datagram",
                          "since": got[-1]["token"]})
        assert (await stream.line())["code"] == "bad_parameter"
        stream.send_line({"op": "unsubscribe", "channels": ["odds:soccer:epl"],
                          "lane": "datagram"})
        assert await stream.line() == {"op": "unsubscribed", "channels": ["odds:soccer:epl"],
                                       "lane": "datagram"}


async def test_auth_refusals_are_http3_errors_before_the_session(tmp_path: Path) -> None:
    async with wt_server(tmp_path, auth="required") as live, \
            wt_connect(wt_port(live)) as conn:
        async def refused(path: str) -> tuple[int, str]:
            session = await conn.open(path)
            assert session.status is not None
            return session.status, orjson.loads(bytes(session.body))["error"]["code"]

        assert await refused("/wt/crash") == (401, "unauthorized")
        assert await refused("/v1/wt") == (401, "unauthorized")
        assert (await refused(f"/v1/wt?token={live.key('key-reader')}"))[0] == 401  # key in URL
        stake = await token_for(live, live.key("key-stake-only"))
        assert await refused(f"/wt/crash?token={stake}") == (403, "forbidden")
        reader = await token_for(live, live.key("key-reader"))
        assert await refused(f"/wt/nope?token={reader}") == (404, "not_found")
        assert await refused(f"/wt/type/nope?token={reader}") == (404, "not_found")
        assert await refused("/elsewhere") == (404, "not_found")
        ok = await conn.open(f"/wt/crash?token={reader}")
        assert ok.status == 200
        # private channels: only the token's own user
        demo1 = await token_for(live, live.key("key-demo-1"))
        session, stream = await native_session(conn, f"/v1/wt?token={demo1}")
        stream.send_line({"op": "subscribe", "channels": ["user:demo-2:balances"]})
        assert (await stream.line())["code"] == "forbidden"
        stream.send_line({"op": "subscribe", "channels": ["user:balances"]})
        reply = await stream.line()
        assert reply["op"] == "subscribed" and reply["channel"] == "user:demo-1:balances"


async def test_revocation_closes_the_session_with_4001(tmp_path: Path) -> None:
    async with wt_server(tmp_path, auth="required") as live, \
            wt_connect(wt_port(live)) as conn:
        key = live.key("key-reader")
        token = await token_for(live, key)
        session, stream = await native_session(conn, f"/v1/wt?token={token}")
        stream.send_line({"op": "subscribe", "channels": ["game:crash"]})
        assert (await stream.line())["op"] == "subscribed"
        key_id = live.server.gate.authenticate({"authorization": f"Bearer {key}"}).key_id
        assert key_id is not None
        live.server.gate.revoke(key_id)
        assert await session.closed() == (4001, "API key revoked")


async def test_hostile_input_never_disturbs_other_sessions(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as good_conn, \
            wt_connect(wt_port(live)) as bad_conn:
        _, good = await native_session(good_conn)
        good.send_line({"op": "subscribe", "channels": ["game:crash"]})
        assert (await good.line())["op"] == "subscribed"
        bad_session, bad = await native_session(bad_conn)
        for line, code in ((b"not json\n", "malformed_json"), (b"[1]\n", "malformed_json"),
                           (b'{"op":"nope"}\n', "unknown_op"),
                           (b"\xff\xfe\n", "malformed_json"),
                           (b'{"op":"subscribe","channels":["a b"]}\n', "invalid_channel"),
                           (b"x" * 80_000 + b"\n", "payload_too_large")):
            bad.send(line)
            reply = await bad.line()
            assert reply["op"] == "error" and reply["code"] == code, (line[:20], reply)
        bad_session.send_datagram(b"\x00garbage")
        assert (await bad.line())["code"] == "unknown_op"
        # streams per session are bounded
        extra = [bad_session.open_bidi() for _ in range(8)]
        for s in extra:
            s.send_line({"op": "ping"})
        answers = [await s.line() for s in extra]
        assert sum(a == {"op": "pong"} for a in answers) == 7
        assert sum(a.get("code") == "rate_limited" for a in answers) == 1
        bad.send_line({"op": "ping"})
        assert await bad.line() == {"op": "pong"}  # still served
        await live.hub.publish("game:crash", {"n": 1})
        assert (await good.line())["data"] == {"n": 1}
        # a datagram whose session prefix is not a varint ends only its own connection
        bad_conn._quic.send_datagram_frame(b"\xff")
        bad_conn.transmit()
        await asyncio.wait_for(bad_conn.terminated.wait(), 20)
        await live.hub.publish("game:crash", {"n": 2})
        assert (await good.line())["data"] == {"n": 2}


async def test_sessions_per_connection_are_bounded(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        statuses = [(await conn.open("/wt/crash")).status for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]


async def test_shutdown_closes_sessions_with_1001_and_a_resume_hint(tmp_path: Path) -> None:
    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        native, stream = await native_session(conn)
        stream.send_line({"op": "ping"})
        assert await stream.line() == {"op": "pong"}
        datastream = await conn.open("/wt/crash")
        await live.server.stop()
        for session in (native, datastream):
            info = await session.closed()
            assert info is not None and info[0] == 1001 and "resume" in info[1]


async def test_the_listener_serves_the_node_certificate_and_rest_advertises_it(
        tmp_path: Path) -> None:
    """With --tls-dev (no injected certificate) the QUIC handshake presents the node's
    certificate, whose hash /v1/tls/certificate-hashes publishes; REST answers carry Alt-Svc."""
    import base64
    import hashlib

    import httpx
    from cryptography.hazmat.primitives import serialization

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        webtransport=True, webtransport_port=0, tls_dev=True,
                        tls_dev_dir=str(tmp_path / "tls"))
    server = Server(settings, default_features)
    await server.start()
    try:
        assert server.webtransport is not None
        port = server.webtransport.port
        async with httpx.AsyncClient(verify=False) as http:
            reply = await http.get(f"https://127.0.0.1:{server.port}/v1/tls/certificate-hashes")
        assert reply.headers["alt-svc"] == f'h3=":{port}"; ma=86400'
        served = {h["value"] for h in reply.json()["hashes"]}
        async with wt_connect(port) as conn:
            session = await conn.open("/wt/crash")
            assert session.status == 200
            peer = conn._quic.tls._peer_certificate
            assert peer is not None
            der = peer.public_bytes(serialization.Encoding.DER)
            assert base64.b64encode(hashlib.sha256(der).digest()).decode() in served
    finally:
        await server.stop()


def test_webtransport_needs_one_process() -> None:
    from wagerwire.config import load_settings
    from wagerwire.errors import BadParameter

    with pytest.raises(BadParameter, match="one process"):
        load_settings({"webtransport": True, "workers": 2, "broker": "redis://127.0.0.1/0"},
                      environ={})


async def test_stream_token_expiry_closes_the_session_with_4001(tmp_path: Path) -> None:
    async with wt_server(tmp_path, auth="required", token_ttl=1) as live, \
            wt_connect(wt_port(live)) as conn:
        token = await token_for(live, live.key("key-reader"))
        session = await conn.open(f"/wt/crash?token={token}")
        assert session.status == 200
        assert await session.closed() == (4001, "stream token expired: get a new one and resume")


async def test_wagerwire_serve_webtransport_end_to_end(tmp_path: Path) -> None:
    """`wagerwire serve --tls-dev --webtransport`: the banner names the UDP port, a session
    opens, SIGTERM closes it with 1001 and the process exits 0."""
    import re
    import signal
    import sys

    from dialect_harness import Child

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo",
        "--store", f"sqlite:///{tmp_path / 'hub.db'}", "--tls-dev", "--tls-dev-dir",
        str(tmp_path / "tls"), "--webtransport", "--webtransport-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    child = Child(proc)
    try:
        lines = await child.wait_lines(lambda ls: any("WebTransport" in x for x in ls),
                                       timeout=60, what="the banner")
        [port] = [int(m.group(1)) for x in lines
                  if (m := re.search(r"WebTransport https://127\.0\.0\.1:(\d+)/wt", x))]
        async with wt_connect(port) as conn:
            session = await conn.open("/wt/crash")
            assert session.status == 200
            proc.send_signal(signal.SIGTERM)
            info = await session.closed()
            assert info is not None and info[0] == 1001
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        await child.stop()


async def test_webtransport_without_a_certificate_is_refused_at_start(tmp_path: Path) -> None:
    from wagerwire.errors import BadParameter

    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        webtransport=True, webtransport_port=0)
    server = Server(settings, default_features)
    with pytest.raises(BadParameter, match="certificate"):
        await server.start()
    await server.stop()


async def test_a_reset_stream_ends_only_its_own_subscriptions(tmp_path: Path) -> None:
    from dialect_harness import wait_until

    async with wt_server(tmp_path) as live, wt_connect(wt_port(live)) as conn:
        session, first = await native_session(conn)
        second = session.open_bidi()
        for stream in (first, second):
            stream.send_line({"op": "subscribe", "channels": ["game:crash"]})
            assert (await stream.line())["op"] == "subscribed"
        await subscribed(live, "game:crash", 2)
        conn._quic.reset_stream(first.stream_id, 0)
        conn._quic.stop_stream(first.stream_id, 0)
        conn.transmit()
        await wait_until(lambda: live.hub.local_subscriber_counts().get("game:crash") == 1,
                         20, "the reset stream's subscription is gone")
        await live.hub.publish("game:crash", {"n": 1})
        assert (await second.line())["data"] == {"n": 1}


async def test_a_replaced_certificate_serves_new_connections_without_a_restart(
        tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    def write(cert: TestCertificate) -> None:
        (tmp_path / "cert.pem").write_bytes(
            cert.certificate.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "key.pem").write_bytes(cert.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    def presented(conn: Any) -> bytes:
        peer = conn._quic.tls._peer_certificate
        return bytes(peer.public_bytes(serialization.Encoding.DER))

    first, second = TestCertificate(), TestCertificate()
    write(first)
    settings = Settings(port=0, store=f"sqlite:///{tmp_path / 'hub.db'}", demo=False,
                        webtransport=True, webtransport_port=0,
                        tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"))
    server = Server(settings, default_features)
    await server.start()
    try:
        assert server.webtransport is not None and server.tls is not None
        port = server.webtransport.port
        async with wt_connect(port) as old:
            assert presented(old) == first.der
            write(second)
            os.utime(tmp_path / "cert.pem", (1, 1))  # a changed mtime, whatever the clock
            assert server.tls.check()
            async with wt_connect(port) as new:
                assert presented(new) == second.der
                assert (await new.open("/wt/crash")).status == 200
            assert (await old.open("/wt/crash")).status == 200  # the old one goes on
    finally:
        await server.stop()


class FreezingUdpProxy(asyncio.DatagramProtocol):
    """127.0.0.1 UDP relay to ``port`` for one client; while ``frozen`` it drops everything
    (a peer that stops reading and acknowledging)."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.frozen = False
        self.client: Any = None
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        proxy = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if not proxy.frozen and proxy.transport is not None and proxy.client:
                    proxy.transport.sendto(data, proxy.client)

        self.upstream, _ = await loop.create_datagram_endpoint(
            Upstream, remote_addr=self.target)
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        if not self.frozen and self.upstream is not None:
            self.upstream.sendto(data)

    def close(self) -> None:
        for t in (self.transport, self.upstream):
            if t is not None:
                t.close()


async def test_a_native_stream_past_the_outbox_limit_is_closed_4000_and_resumes(
        tmp_path: Path) -> None:
    """A peer that stops acknowledging: the stream pauses, frames wait in the outbox, past
    the limit the session closes with 4000 (delivered once the peer reads again); a resume
    replays a backlog bigger than the limit page by page, without another cut."""
    async with wt_server(tmp_path, outbox_limit=256 * 1024) as live:
        proxy = FreezingUdpProxy(wt_port(live))
        proxy_port = await proxy.start()
        try:
            async with wt_connect(proxy_port) as conn:
                session, stream = await native_session(conn)
                stream.send_line({"op": "subscribe", "channels": ["game:crash"]})
                assert (await stream.line())["op"] == "subscribed"
                await live.hub.publish("game:crash", {"n": 0})
                token = (await stream.line())["token"]
                proxy.frozen = True
                await asyncio.gather(*(live.hub.publish("game:crash", {"n": n, "pad": "x" * 300})
                                       for n in range(1, 1201)))
                await wait_for(lambda: live.registry is not None
                               and live.registry.slow_consumers == 1, "the 4000 cut")
                proxy.frozen = False
                info = await session.closed(timeout=60)
                assert info is not None and info[0] == 4000
        finally:
            proxy.close()
        async with wt_connect(wt_port(live)) as conn:
            _, stream = await native_session(conn)
            stream.send_line({"op": "subscribe", "channels": ["game:crash"], "since": token})
            assert (await stream.line())["recovered"] is True
            got = [(await stream.line())["data"]["n"] for _ in range(1200)]
            assert got == list(range(1, 1201))
            assert live.registry is not None and live.registry.slow_consumers == 1


async def wait_for(pred: Any, what: str, timeout: float = 30.0) -> None:
    from dialect_harness import wait_until
    await wait_until(pred, timeout, what)




async def test_server_pings_keep_an_idle_session_alive(tmp_path: Path) -> None:
    """The client's QUIC idle timeout is 1.5 s and it sends nothing: the server's PING every
    ping interval (0.5 s here) keeps the session through 3 quiet seconds."""
    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from wtclient import WtConn

    async with wt_server(tmp_path, ping_interval=0.5) as live:
        config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                   max_datagram_frame_size=65536, idle_timeout=1.5)
        config.verify_mode = ssl.CERT_NONE
        async with connect("127.0.0.1", wt_port(live), configuration=config,
                           create_protocol=WtConn) as conn:
            assert isinstance(conn, WtConn)
            conn.port = wt_port(live)
            _, stream = await native_session(conn)
            stream.send_line({"op": "subscribe", "channels": ["game:crash"]})
            assert (await stream.line())["op"] == "subscribed"
            await asyncio.sleep(3)
            assert not conn.terminated.is_set()
            await live.hub.publish("game:crash", {"n": 1})
            assert (await stream.line())["data"] == {"n": 1}
