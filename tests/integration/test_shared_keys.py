"""Two nodes on one PostgreSQL share every key, signing key and Pusher app (loopback; the
multi-machine layout is ``test_scaleout_machines.py``).

A key made through one node's admin REST works on the other at once, a stream token of one
opens a stream on the other, a revocation on one closes the key's stream on the other; an
app stored with ``wagerwire apps create`` is served by both; the built-in SportsGameOdds app
signs channel auths with one secret on every node.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from servers import PostgresServer, postgres_server
from wagerwire.dialects.pusher_apps import PusherApp, channel_auth

__all__ = ["postgres_server"]


def cli(workdir: Path, *args: str) -> Any:
    done = subprocess.run([sys.executable, "-m", "wagerwire", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def two_nodes(server_factory: Any, postgres_server: PostgresServer, tmp_path: Path
              ) -> tuple[Any, Any, str]:
    store = f"{postgres_server.url()}?schema=s{uuid.uuid4().hex[:8]}"
    args = ["--store", store, "--auth", "required", "--no-demo-keys"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return server_factory(args, tmp_path / "a"), server_factory(args, tmp_path / "b"), store


@pytest.mark.timeout(120)
async def test_a_key_made_on_one_node_works_and_is_revoked_on_the_other(
    two_nodes: tuple[Any, Any, str], tmp_path: Path,
) -> None:
    a, b, store = two_nodes
    admin = cli(tmp_path, "keys", "--store", store, "create", "--role", "admin", "--plan",
                "internal", "--json")["key"]
    async with httpx.AsyncClient(timeout=10) as http:
        res = await http.post(a.url + "/v1/keys", headers={"Authorization": f"Bearer {admin}"},
                              json={"role": "reader", "plan": "allstar", "user_id": "u-7"})
        assert res.status_code == 201, res.text
        made = res.json()
        reader = {"Authorization": f"Bearer {made['key']}"}
        assert (await http.get(b.url + "/v1/channels", headers=reader)).status_code == 200
        token = (await http.post(b.url + "/v1/tokens", headers=reader)).json()["token"]
        listed = (await http.get(b.url + "/v1/keys",
                                 headers={"Authorization": f"Bearer {admin}"})).json()["keys"]
        assert made["id"] in {k["id"] for k in listed}
        async with connect(f"{a.ws_url}/v1/ws?token={token}") as ws:  # B's token on A
            await ws.send(json.dumps({"op": "subscribe", "channels": ["user:balances"]}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["op"] == "subscribed" and reply["channel"] == "user:u-7:balances"
            started = time.monotonic()
            res = await http.delete(f"{b.url}/v1/keys/{made['id']}",
                                    headers={"Authorization": f"Bearer {admin}"})
            assert res.status_code == 200
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 4001
            print(f"revoked on B, stream on A closed after {time.monotonic() - started:.3f} s")
        for node in (a, b):
            assert (await http.get(node.url + "/v1/channels", headers=reader)).status_code == 401
        metrics = (await http.get(a.url + "/metrics")).text
        # applied once, by the NOTIFY (within ms) or, if the 2 s poll read the row first, by
        # the poll (the NOTIFY path itself: tests/contract/test_keystore_contract.py)
        applied = {via: float(m[1]) for via in ("notify", "poll") if (m := re.search(
            rf'^wagerwire_key_revocations_applied_total{{via="{via}"}} (\S+)$', metrics, re.M))}
        assert sum(applied.values()) == 1.0, applied
        assert "wagerwire_keystore_notifications_up 1.0" in metrics


@pytest.mark.timeout(120)
async def test_pusher_apps_are_shared(two_nodes: tuple[Any, Any, str], tmp_path: Path) -> None:
    a, b, store = two_nodes
    key = cli(tmp_path, "keys", "--store", store, "create", "--role", "reader", "--plan",
              "internal", "--json")["key"]
    made = cli(tmp_path, "apps", "--store", store, "create", "shop-9", "--json")
    listed = cli(tmp_path, "apps", "--store", store, "list", "--json")
    assert listed == [{"app_id": "shop-9", "key": made["key"], "stored": True}]
    app = PusherApp("shop-9", made["key"], made["secret"])
    form = {"socket_id": "123.456", "channel_name": "private-orders"}
    async with httpx.AsyncClient(timeout=10) as http:
        builtin = []
        # the built-in app: one secret on both nodes (it signs only the key's own channel)
        own = {**form, "channel_name": f"private-events-live@{key.split('_')[1]}"}
        for node in (a, b):
            res = await http.post(node.url + "/pusher/auth", headers={"x-api-key": key},
                                  data={**own, "app_id": "sportsgameodds"})
            assert res.status_code == 200, res.text
            builtin.append(res.json()["auth"])
        assert builtin[0] == builtin[1]
        for node in (a, b):  # the stored app reaches both running nodes
            deadline = time.monotonic() + 10
            while True:
                res = await http.post(node.url + "/pusher/auth", headers={"x-api-key": key},
                                      data={**form, "app_id": "shop-9"})
                if res.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert res.status_code == 200, res.text
            assert res.json()["auth"] == channel_auth(app, "123.456", "private-orders")


@pytest.mark.timeout(120)
async def test_a_revocation_whose_notification_was_missed_still_converges(
    two_nodes: tuple[Any, Any, str], postgres_server: PostgresServer, tmp_path: Path,
) -> None:
    """The row changed without a notification (as if it was lost): the periodic re-check
    closes the stream anyway, within 5 s."""
    a, _, store = two_nodes
    made = cli(tmp_path, "keys", "--store", store, "create", "--role", "reader", "--plan",
               "internal", "--json")
    schema = store.rpartition("schema=")[2]
    async with connect(a.ws_url + "/v1/ws",
                       additional_headers={"Authorization": f"Bearer {made['key']}"}) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["game:crash"]}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["op"] == "subscribed"
        started = time.monotonic()
        postgres_server.psql(f"UPDATE {schema}.api_keys SET revoked_at = "
                             f"extract(epoch from now()) WHERE id = '{made['id']}'")
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4001
        print(f"missed notification: stream closed by the re-check after "
              f"{time.monotonic() - started:.3f} s")
    async with httpx.AsyncClient(timeout=10) as http:
        metrics = (await http.get(a.url + "/metrics")).text
    assert 'wagerwire_key_revocations_applied_total{via="poll"} 1.0' in metrics
    assert 'wagerwire_key_revocations_applied_total{via="notify"} 0.0' in metrics


@pytest.mark.timeout(120)
async def test_keys_of_an_old_keys_file_are_imported(
    two_nodes: tuple[Any, Any, str], tmp_path: Path,
) -> None:
    """``wagerwire-keys.db`` (where a PostgreSQL node kept its keys before): imported once,
    its keys work on running nodes at once."""
    from wagerwire.auth.keys import AppRecord, KeyStore

    a, b, store = two_nodes
    old = KeyStore(str(tmp_path / "wagerwire-keys.db"))
    _, key = old.create("reader", "allstar", "u-1", "from before")
    old.current_signing_kid()
    old.create_app(AppRecord("shop-1", "k" * 20, "s" * 20))
    old.close()
    args = ("keys", "--store", store, "import", str(tmp_path / "wagerwire-keys.db"))
    for expected in ("imported 1 key(s), 1 signing key(s), 1 app(s)",
                     "imported 0 key(s), 0 signing key(s), 0 app(s)"):  # again: nothing new
        done = subprocess.run([sys.executable, "-m", "wagerwire", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.strip() == expected, done
    async with httpx.AsyncClient(timeout=10) as http:
        for node in (a, b):
            res = await http.get(node.url + "/v1/channels",
                                 headers={"Authorization": f"Bearer {key}"})
            assert res.status_code == 200, res.text
