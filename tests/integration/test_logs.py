"""``--log-format json``: one JSON object per line, a REST access log with request ids,
streams with connection ids, and no secret (API key, stream token, Pusher app secret or
signature) in any line of an authenticated session, wrong credentials included.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from serverproc import ServerProcess
from wagerwire.auth.keys import KeyStore

PUSHER_ID, PUSHER_KEY, PUSHER_SECRET = "7", "0a1b2c3d4e5f60718293", "f00dfacecafebeef1234"


@pytest.fixture
def pusher_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Open mode (the Pusher HTTP API is signed by the app, not by an API key)."""
    monkeypatch.setenv("WAGERWIRE_PUSHER_APPS", json.dumps(
        {PUSHER_ID: {"key": PUSHER_KEY, "secret": PUSHER_SECRET}}))
    srv = ServerProcess(tmp_path, ["--log-format", "json", "--log-level", "debug"])
    srv.start(0)
    yield srv
    srv.kill()


@pytest.fixture
def node(tmp_path: Path) -> Any:
    srv = ServerProcess(tmp_path, ["--auth", "required", "--log-format", "json",
                                   "--log-level", "debug"])
    store = KeyStore(str(srv.db))
    try:
        _, reader = store.create("reader", "allstar", "alice", "reader")
        _, publisher = store.create("publisher", "internal", None, "publisher")
    finally:
        store.close()
    srv.start(0)
    srv.secrets = {"reader": reader, "publisher": publisher}
    yield srv
    srv.kill()


async def session(node: Any) -> set[str]:
    """An authenticated session over REST, WebSocket and SSE; returns every secret used."""
    reader, publisher = node.secrets["reader"], node.secrets["publisher"]
    # ww_<id>_<secret>: the secret part itself may hold "_" (base64url)
    secrets = {reader, publisher, reader.split("_", 2)[2], publisher.split("_", 2)[2]}
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as http:
        r = await http.post("/v1/tokens", headers={"Authorization": f"Bearer {reader}",
                                                   "X-Request-Id": "req-observed-1"})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        secrets |= {token, token.rsplit(".", 1)[1]}
        r = await http.get("/v1/channels", headers={"X-Api-Key": reader})
        assert r.status_code == 200
        wrong = reader[:-4] + "abcd"
        secrets |= {wrong, wrong.split("_", 2)[2]}
        r = await http.get("/v1/channels", headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 401
        r = await http.get("/v1/channels", params={"token": token})  # tokens are for streams
        ws = await connect(f"{node.ws_url}/v1/ws?token={token}", open_timeout=10)
        await ws.send(json.dumps({"op": "subscribe", "channels": ["logs:x"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed"
        async with http.stream("GET", "/v1/sse", params={"channels": "logs:x",
                                                         "token": token}) as sse:
            assert sse.status_code == 200
            r = await http.post("/v1/publish", json={"channel": "logs:x", "data": {"a": 1}},
                                headers={"Authorization": f"Bearer {publisher}"})
            assert r.status_code == 200, r.text
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["op"] == "message"
        await ws.close()
    return secrets


async def pusher_session(node: Any) -> set[str]:
    """The Pusher HTTP API with the official library (signed with the secret), a wrong
    secret, and a private-channel subscription signed with the secret."""
    import pusher
    import pusher.errors

    def lib(secret: str) -> Any:
        return pusher.Pusher(app_id=PUSHER_ID, key=PUSHER_KEY, secret=secret,
                             host="127.0.0.1", port=node.port, ssl=False)

    wrong = "0123456789abcdef0123"
    await asyncio.to_thread(lib(PUSHER_SECRET).trigger, "Odds", "price", {"o": 1})
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(lib(wrong).trigger, "Odds", "price", {"o": 2})
    async with connect(f"{node.ws_url}/app/{PUSHER_KEY}?protocol=7", open_timeout=10) as ws:
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        socket_id = json.loads(hello["data"])["socket_id"]
        signature = hmac.new(PUSHER_SECRET.encode(), f"{socket_id}:private-x".encode(),
                             hashlib.sha256).hexdigest()
        await ws.send(json.dumps({"event": "pusher:subscribe", "data": {
            "channel": "private-x", "auth": f"{PUSHER_KEY}:{signature}"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["event"] == "pusher_internal:subscription_succeeded", reply
    return {PUSHER_SECRET, wrong, signature}


async def test_json_logs_carry_ids_and_never_a_secret(node: Any) -> None:
    secrets = await session(node)
    await asyncio.sleep(0.3)
    assert node.signal(signal.SIGTERM) == 0
    lines = [line for line in node.output if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records, node.output
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= set(record), record
    access = [r for r in records if r["logger"] == "wagerwire.access"]
    assert {r["path"] for r in access} >= {"/v1/tokens", "/v1/channels", "/v1/publish"}
    assert all(r["request_id"] and isinstance(r["duration_ms"], float) for r in access)
    assert any(r["request_id"] == "req-observed-1" and r["status"] == 200 for r in access)
    assert any(r["status"] == 401 for r in access)
    assert any(r.get("query_params") == ["token"] for r in access)
    opened = [r for r in records if r["msg"].startswith("stream ") and "conn_id" in r]
    assert {r["transport"] for r in opened} >= {"ws", "sse"}
    for line in node.output:
        for secret in secrets:
            assert secret not in line, (secret, line)


async def test_no_pusher_secret_or_signature_in_any_log_line(pusher_node: Any) -> None:
    secrets = await pusher_session(pusher_node)
    await asyncio.sleep(0.3)
    assert pusher_node.signal(signal.SIGTERM) == 0
    records = [json.loads(line) for line in pusher_node.output if line.startswith("{")]
    assert any(r.get("path") == f"/apps/{PUSHER_ID}/events" and r["status"] == 401
               for r in records), records
    assert any(r.get("dialect") == "pusher" for r in records), records
    for line in pusher_node.output:
        for secret in secrets:
            assert secret not in line, (secret, line)


def test_redaction_masks_keys_tokens_and_secret_parameters() -> None:
    from wagerwire.logs import redact

    assert redact("key ww_ab12_s3cr3tvalue used") == "key ww_ab12_*** used"
    assert redact("key os_live_ab12_s3cr3t-value used") == "key os_live_ab12_*** used"
    assert redact("wwt1.k1.eyJwYXkiOjF9.c2ln") == "wwt1.***"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert redact("/v1/sse?channels=a&token=xyz&secret=1") == (
        "/v1/sse?channels=a&token=***&secret=***")
