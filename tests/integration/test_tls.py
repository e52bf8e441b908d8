"""TLS on the TCP listener: the seeds' own clients with their ``wss://``/``https://`` URLs (only
the host changed), trusting a test CA the usual way (``SSL_CERT_FILE`` for Python,
``NODE_EXTRA_CA_CERTS`` for Node); the Python SDK; the generated dev certificate and its hash
route; reload without restart; plain HTTP and garbage on the TLS port; the CLI flags.

Everything on 127.0.0.1; the CA and its leaves are made per test (tests/tlsutil.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from dialect_harness import (
    Live,
    Rounds,
    run_node,
    run_python,
    running_server,
    seed_python_path,
    seed_text,
    subscribed,
    wait_until,
)
from test_dialect_sportsgameodds import AXIOS_LOG, LIVE_HUB, event, publish_event
from test_dialect_stake import MAIN_ALL_CHANNELS, Balances, as_received, balance_line
from test_dialect_trackersino import key_of, rocket_lines
from test_scaleout import node_args
from websockets.asyncio.client import connect

from servers import PostgresServer, RedisServer, postgres_server, redis_server
from tlsutil import Leaf, TestCA, client_env
from wagerwire.client import Client
from wagerwire.tls import MAX_HASHABLE_LIFETIME

ROOT = Path(__file__).resolve().parents[2]
__all__ = ["postgres_server", "redis_server"]  # the fixtures, imported to be used here


@pytest.fixture(scope="session")
def seed_deps() -> Path:
    return seed_python_path()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def install(leaf: Leaf, cert: Path, key: Path) -> None:
    """Put a certificate in place the way deployment tools do: write aside, rename over."""
    for src, dst in ((leaf.cert, cert), (leaf.key, key)):
        tmp = dst.with_name(dst.name + ".new")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


@contextlib.asynccontextmanager
async def tls_server(tmp_path: Path, ca: TestCA, **overrides: Any) -> AsyncIterator[Live]:
    """An in-process server with the operator's certificate (issued by ``ca``)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    install(ca.issue(), cert, key)
    async with running_server(tmp_path, tls_cert=str(cert), tls_key=str(key),
                              **overrides) as server:
        yield server


def tls_seed(name: str, port: int, replacements: dict[str, str] | None = None) -> str:
    """The seed copy with its own secure schemes back: only the host differs from the page."""
    text = seed_text(name, port, replacements)
    host = f"127.0.0.1:{port}"
    out = text.replace(f"ws://{host}", f"wss://{host}").replace(f"http://{host}",
                                                                f"https://{host}")
    assert f"ws://{host}" not in out and f"http://{host}" not in out
    return out


async def peer_der(port: int, ctx: ssl.SSLContext) -> bytes:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return bytes(der)


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- one seed client per dialect over wss:// ------------------------------------------------------


async def test_stake_seed_client_over_wss(tmp_path: Path, ca: TestCA, seed_deps: Path) -> None:
    async with tls_server(tmp_path, ca) as server:
        balances = Balances(server)
        rounds = Rounds(server)
        initial = await balances.snapshot()
        key = server.key("key-demo-1")
        source = tls_seed("stake_client.py", server.port, {"your_token": key})
        assert f'"wss://127.0.0.1:{server.port}/_api/websocket"' in source
        source = source.replace(source[source.index("async def main():"):],
                                MAIN_ALL_CHANNELS.replace("KEY", key))
        child = await run_python(source, tmp_path, seed_deps, env=client_env(ca))
        try:
            await subscribed(server, "sports:event:e1")
            want = [balance_line(d) for d in initial if d["user_id"] == "demo-1"]
            for data in await rounds.publish("stake-crash", 2):
                want.append(f"🎰 Game update: {as_received(data)}")
            await child.wait_lines(lambda ls: len(ls) >= len(want), what="every frame")
            await asyncio.sleep(0.3)
            assert child.lines == want
        finally:
            await child.stop()


async def test_trackersino_seed_clients_over_wss(tmp_path: Path, ca: TestCA,
                                                 seed_deps: Path) -> None:
    async with tls_server(tmp_path, ca) as server:
        rounds = Rounds(server)
        env = client_env(ca)
        py = await run_python(tls_seed("trackersino_stream.py", server.port, key_of(server)),
                              tmp_path, seed_deps, env=env)
        js = await run_node(tls_seed("trackersino_stream.mjs", server.port, key_of(server)),
                            env=env)
        try:
            await subscribed(server, "game:stake-crash", 2)
            want = rocket_lines(await rounds.publish("stake-crash", 30))
            assert len(want) >= 2
            for child in (py, js):
                await child.wait_lines(lambda ls: len(ls) >= len(want), what="every >10x")
            await asyncio.sleep(0.3)
            assert py.lines == want and js.lines == want
        finally:
            await py.stop()
            await js.stop()


async def test_datastream_ws_and_sse_seeds_over_tls(tmp_path: Path, ca: TestCA) -> None:
    async with tls_server(tmp_path, ca) as server:
        rounds = Rounds(server)
        before = await rounds.publish("crash", 2)
        env = client_env(ca)
        ws = await run_node(tls_seed("datastream_ws.mjs", server.port), env=env)
        sse = await run_node(tls_seed("datastream_sse.mjs", server.port), env=env)
        try:
            await ws.wait_lines(lambda ls: "Connected" in ls, what="ws Connected")
            await sse.wait_lines(lambda ls: any(x.startswith("Initial:") for x in ls),
                                 what="sse initial")
            await subscribed(server, "game:crash", 2)
            after = await rounds.publish("crash", 3)
            want = [f"Round {r['index']}: {json.dumps(r['extras'], separators=(',', ':'))}"
                    for r in after]
            await ws.wait_lines(lambda ls: len(ls) >= 1 + len(want), what="ws rounds")
            await sse.wait_lines(lambda ls: sum(x.startswith("New round:") for x in ls) >= 3,
                                 what="sse rounds")
            assert ws.lines == ["Connected", *want]
            text = "\n".join(sse.lines)
            assert sse.lines[0] == "Connected" and "Reconnecting" not in text
            assert f"round_id: {before[-1]['index']}," in text.split("New round:")[0]
            news = text.split("New round:")[1:]
            assert all(f"round_id: {r['index']}," in n for r, n in zip(after, news, strict=True))
        finally:
            await ws.stop()
            await sse.stop()


async def test_oddsstream_seed_client_over_tls(tmp_path: Path, ca: TestCA) -> None:
    from test_dialect_oddsstream import publish, streams_open

    async with tls_server(tmp_path, ca) as server:
        key = server.server.gate.keystore.create("reader", "free", None, "seed",
                                                 prefix="os_live_")[1]
        env = dict(client_env(ca), ODDSSTREAM_API_KEY=key)
        child = await run_node(tls_seed("oddsstream_client.mjs", server.port), env=env)
        try:
            await child.wait_lines(lambda ls: "OddsStream connected" in ls, what="connected")
            await streams_open(server, 1)
            await publish(server, "football", "epl", "sharpline", "Arsenal", 2.1)
            await publish(server, "football", "epl", "oddsfox", "Draw", 3.4)
            await child.wait_lines(lambda ls: "Arsenal - Chelsea | Draw: 3.4" in ls,
                                   what="prices")
            assert [ln for ln in child.lines if " | " in ln] == [
                "Arsenal - Chelsea | Arsenal: 2.1", "Arsenal - Chelsea | Draw: 3.4"]
        finally:
            await child.stop()


async def test_sportsgameodds_quick_start_over_tls(tmp_path: Path, ca: TestCA) -> None:
    async with tls_server(tmp_path, ca) as server:
        await publish_event(server, event("e1", "live"))
        key = server.key("key-reader")
        async with httpx.AsyncClient(verify=ca.client_context()) as http:
            r = await http.get(f"https://127.0.0.1:{server.port}/v2/stream/events",
                               params={"feed": "events:live"}, headers={"x-api-key": key})
        options = r.json()["pusherOptions"]
        assert options["forceTLS"] is True and options["wssPort"] == server.port
        assert options["channelAuthorization"]["endpoint"].startswith("https://127.0.0.1:")
        child = await run_node(tls_seed("sgo_quickstart.cjs", server.port, {"YOUR API KEY": key}),
                               suffix=".cjs", preload=AXIOS_LOG, env=client_env(ca))
        try:
            await child.wait_lines(lambda ls: any('"ids":["e1"]' in x for x in ls),
                                   what="bootstrap with e1")
            await subscribed(server, LIVE_HUB)
            update = event("e1", "live")
            update["score"] = {"home": 7, "away": 0}
            await publish_event(server, update)
            lines = await child.wait_lines(
                lambda ls: any('/v2/events"' in x and '"e1"' in x for x in ls),
                what="refetch after the data notification")
            assert any('"eventIDs":"e1"' in x for x in lines)
        finally:
            await child.stop()


# -- the Python SDK -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["ws", "sse"])
async def test_python_sdk_over_https_and_wss(tmp_path: Path, ca: TestCA,
                                             monkeypatch: pytest.MonkeyPatch,
                                             transport: str) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.path))  # httpx and websockets both read it
    async with tls_server(tmp_path, ca) as server:
        await server.hub.publish("game:tls", {"n": 0})
        async with Client(f"https://127.0.0.1:{server.port}",
                          key=server.key("key-reader")) as client:
            page = await client.history("game:tls")
            assert [m.data for m in page.messages] == [{"n": 0}]
            sub = client.subscribe(["game:tls"], transport=transport)  # type: ignore[arg-type]
            got: list[Any] = []

            async def read() -> None:
                async for msg in sub:
                    got.append(msg.data)
                    if len(got) == 3:
                        return

            reader = asyncio.create_task(read())
            await subscribed(server, "game:tls")
            for n in (1, 2, 3):
                await server.hub.publish("game:tls", {"n": n})
            await asyncio.wait_for(reader, 20)
            assert got == [{"n": 1}, {"n": 2}, {"n": 3}]
            await sub.aclose()


# -- the dev certificate and the hash route --------------------------------------------------------


async def test_dev_certificate_and_its_hash_route(tmp_path: Path) -> None:
    async with running_server(tmp_path, tls_dev=True) as server:
        der = await peer_der(server.port, unverified())
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime <= MAX_HASHABLE_LIFETIME
        async with httpx.AsyncClient(verify=unverified()) as http:
            r = await http.get(f"https://127.0.0.1:{server.port}/v1/tls/certificate-hashes")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
        body = r.json()
        assert body["tls"] is True and body["mode"] == "dev" and body["version"] == 1
        assert body["hashes"] == [{"algorithm": "sha-256",
                                   "value": base64.b64encode(hashlib.sha256(der).digest())
                                   .decode()}]
        assert body["certificates"][0]["serving"] and body["certificates"][0]["hashable"]


async def test_dev_rotation_publishes_the_next_hash_then_serves_it(tmp_path: Path) -> None:
    async with running_server(tmp_path, tls_dev=True) as server, \
            httpx.AsyncClient(verify=unverified()) as http:
        source = server.server.tls
        assert source is not None
        url = f"https://127.0.0.1:{server.port}/v1/tls/certificate-hashes"
        start = datetime.now(UTC)
        source.clock = lambda: start + timedelta(days=7)  # past half the 13 days
        source.check()
        body = (await http.get(url)).json()
        assert [c["serving"] for c in body["certificates"]] == [True, False]
        served, upcoming = (h["value"] for h in body["hashes"])
        assert b64sha(await peer_der(server.port, unverified())) == served
        source.clock = lambda: start + timedelta(days=9)  # past two thirds: switch
        assert source.check()
        body = (await http.get(url)).json()
        assert body["version"] == 2 and body["hashes"][0]["value"] == upcoming
        assert b64sha(await peer_der(server.port, unverified())) == upcoming


def b64sha(der: bytes) -> str:
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def test_hash_route_without_tls_and_with_auth_required(tmp_path: Path,
                                                              ca: TestCA) -> None:
    async with running_server(tmp_path / "plain") as server, httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{server.port}/v1/tls/certificate-hashes")
        assert r.json() == {"tls": False, "mode": "none", "version": 0, "hashes": [],
                            "certificates": []}
    async with tls_server(tmp_path / "tls", ca, auth="required") as server, \
            httpx.AsyncClient(verify=ca.client_context()) as http:
        base = f"https://127.0.0.1:{server.port}"
        assert (await http.get(base + "/v1/channels")).status_code == 401
        r = await http.get(base + "/v1/tls/certificate-hashes")  # public: no key needed
        assert r.status_code == 200 and r.json()["mode"] == "files"


async def test_alt_svc_advertises_http3_only_when_set(tmp_path: Path, ca: TestCA) -> None:
    async with tls_server(tmp_path, ca) as server, \
            httpx.AsyncClient(verify=ca.client_context()) as http:
        url = f"https://127.0.0.1:{server.port}/healthz"
        assert "alt-svc" not in (await http.get(url)).headers
        server.server.advertise_http3(4433)
        r = await http.get(url)
        assert r.headers["alt-svc"] == 'h3=":4433"; ma=86400'
        r = await http.get(f"https://127.0.0.1:{server.port}/v1/nope")  # errors too
        assert r.status_code == 404 and r.headers["alt-svc"] == 'h3=":4433"; ma=86400'
        server.server.advertise_http3(None)
        assert "alt-svc" not in (await http.get(url)).headers


# -- reload without restart ------------------------------------------------------------------------


async def test_replaced_files_reach_new_connections_and_open_streams_go_on(
    tmp_path: Path, ca: TestCA
) -> None:
    async with tls_server(tmp_path, ca, tls_reload_interval=0.2) as server:
        first = await peer_der(server.port, ca.client_context())
        async with connect(f"wss://127.0.0.1:{server.port}/v1/ws",
                           ssl=ca.client_context()) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channels": ["game:reload"]}))
            await subscribed(server, "game:reload")
            newer = ca.issue()
            install(newer, tmp_path / "server.crt", tmp_path / "server.key")
            assert server.server.tls is not None
            await wait_until(lambda: server.server.tls is not None
                             and server.server.tls.version == 2, what="reload by polling")
            assert await peer_der(server.port, ca.client_context()) == newer.der != first
            for n in range(3):
                await server.hub.publish("game:reload", {"n": n})
            seen = []
            while len(seen) < 3:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("channel") == "game:reload" and "data" in frame:
                    seen.append(frame["data"]["n"])
            assert seen == [0, 1, 2]
            ssl_object = ws.transport.get_extra_info("ssl_object")
            assert ssl_object.getpeercert(binary_form=True) == first
        async with httpx.AsyncClient(verify=ca.client_context()) as http:
            r = await http.get(f"https://127.0.0.1:{server.port}/v1/tls/certificate-hashes")
        assert r.json()["version"] == 2
        assert r.json()["hashes"][0]["value"] == base64.b64encode(
            hashlib.sha256(newer.der).digest()).decode()


async def test_a_broken_replacement_keeps_serving_the_old_certificate(
    tmp_path: Path, ca: TestCA
) -> None:
    async with tls_server(tmp_path, ca, tls_reload_interval=0.2) as server:
        first = await peer_der(server.port, ca.client_context())
        (tmp_path / "server.key").write_bytes(ca.issue().key.read_bytes())  # not its key
        await asyncio.sleep(1.0)
        assert server.server.tls is not None and server.server.tls.version == 1
        assert await peer_der(server.port, ca.client_context()) == first


# -- hostile or confused clients on the TLS port --------------------------------------------------


async def test_plain_http_and_garbage_handshakes_do_not_disturb_others(
    tmp_path: Path, ca: TestCA
) -> None:
    async with tls_server(tmp_path, ca, header_timeout=2.0) as server:
        async with connect(f"wss://127.0.0.1:{server.port}/v1/ws",
                           ssl=ca.client_context()) as ws:
            await ws.send(json.dumps({"op": "subscribe", "channels": ["game:calm"]}))
            await subscribed(server, "game:calm")
            # plain HTTP on the TLS port: refused by the handshake, connection closed
            async with httpx.AsyncClient() as http:
                with pytest.raises(httpx.HTTPError):
                    await http.get(f"http://127.0.0.1:{server.port}/healthz")
            # a record that never completes, random bytes, a record header alone, an HTTP
            # request: each is closed at once or when the handshake timeout (the header
            # timeout, 2 s here) runs out
            junk = [b"\x16\x03\x01\x02\x00" + os.urandom(300), os.urandom(2048),
                    b"\x16\x03\x01\x00\x10", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
            writers = []
            for blob in junk:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(blob)
                writers.append((reader, writer))
            for reader, _ in writers:
                with contextlib.suppress(ConnectionError):
                    await asyncio.wait_for(reader.read(), 15)  # EOF or reset: closed by us
            # a client that rejects our certificate (wrong CA) does not hurt either
            with pytest.raises(ssl.SSLError):
                await peer_der(server.port, TestCA(tmp_path / "other").client_context())
            await server.hub.publish("game:calm", {"still": True})
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if frame.get("channel") == "game:calm" and "data" in frame:
                    assert frame["data"] == {"still": True}
                    break
            for _, writer in writers:
                writer.close()
        async with httpx.AsyncClient(verify=ca.client_context()) as http:
            r = await http.get(f"https://127.0.0.1:{server.port}/healthz")
            assert r.status_code == 200


# -- the command line -------------------------------------------------------------------------------


def _start(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], int, list[str]]:
    store = [] if "--store" in args else ["--store", f"sqlite:///{cwd / 'hub.db'}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo", *store, *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    lines: list[str] = []
    assert proc.stdout is not None
    port = 0
    while line := proc.stdout.readline():  # the banner: the address, then the TLS line
        lines.append(line)
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
        port = int(m.group(1)) if m else port
        if port and line.startswith("  TLS "):
            return proc, port, lines
    stop(proc)
    raise AssertionError("no https banner:\n" + "".join(lines))


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def test_cli_tls_flags_and_sighup(tmp_path: Path, ca: TestCA) -> None:
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    first = ca.issue()
    install(first, cert, key)
    config = tmp_path / "wagerwire.toml"
    config.write_text(f'[tls]\ncert = "{cert}"\nkey = "{key}"\nreload_interval = 3600\n')
    proc, port, _ = _start(["--config", str(config)], tmp_path)
    try:
        with httpx.Client(verify=ca.client_context()) as http:
            base = f"https://127.0.0.1:{port}"
            assert http.get(base + "/healthz").status_code == 200
            newer = ca.issue()
            install(newer, cert, key)
            proc.send_signal(signal.SIGHUP)  # polling is hourly here: SIGHUP reloads now
            deadline = time.monotonic() + 20
            while http.get(base + "/v1/tls/certificate-hashes").json()["version"] != 2:
                assert time.monotonic() < deadline, "SIGHUP did not reload"
                time.sleep(0.1)
            with socket.create_connection(("127.0.0.1", port), 10) as raw, \
                    ca.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as sock:
                assert sock.getpeercert(binary_form=True) == newer.der
    finally:
        stop(proc)


def test_cli_tls_dev_and_bad_files(tmp_path: Path) -> None:
    proc, port, lines = _start(["--tls-dev"], tmp_path)
    try:
        with httpx.Client(verify=unverified()) as http:
            body = http.get(f"https://127.0.0.1:{port}/v1/tls/certificate-hashes").json()
        assert body["mode"] == "dev"
        assert any(body["hashes"][0]["value"] in line for line in lines)  # in the banner
        # the served process runs uvloop: garbage and plain HTTP fail only their handshake
        for blob in (os.urandom(4096), b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"\x16\x03\x01\x00\x05hello"):
            with socket.create_connection(("127.0.0.1", port), 10) as raw:
                raw.sendall(blob)
                raw.settimeout(20)  # closed at once, or when the handshake timeout runs out
                with contextlib.suppress(ConnectionError):
                    while raw.recv(4096):
                        pass
        with httpx.Client(verify=unverified()) as http:
            assert http.get(f"https://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stop(proc)
    (tmp_path / "junk.pem").write_text("junk")
    out = subprocess.run(
        [sys.executable, "-m", "wagerwire", "serve", "--port", "0", "--no-demo",
         "--store", f"sqlite:///{tmp_path / 'hub2.db'}", "--tls-cert", str(tmp_path / "junk.pem")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert out.returncode != 0
    assert "TLS certificate" in out.stderr + out.stdout


@pytest.mark.timeout(120)
async def test_workers_share_one_dev_certificate(
    tmp_path: Path, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    tag = uuid.uuid4().hex[:8]
    args = [*node_args(redis_server, postgres_server, f"s{tag}", f"p{tag}"),
            "--workers", "2", "--tls-dev"]
    proc, port, _ = _start(args, tmp_path)
    try:
        await asyncio.sleep(1.0)  # the second worker may start listening a moment later
        seen = {await peer_der(port, unverified()) for _ in range(16)}
        assert len(seen) == 1, "the workers serve different certificates"
        async with httpx.AsyncClient(verify=unverified(),
                                     limits=httpx.Limits(max_keepalive_connections=0)) as http:
            values = {(await http.get(f"https://127.0.0.1:{port}/v1/tls/certificate-hashes"))
                      .json()["hashes"][0]["value"] for _ in range(16)}
        assert values == {base64.b64encode(hashlib.sha256(seen.pop()).digest()).decode()}
    finally:
        stop(proc)
