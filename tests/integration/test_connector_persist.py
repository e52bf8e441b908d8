"""Sources added at run time survive restarts of the node (SIGTERM and SIGKILL), resume from
their saved position with no duplicate, and stay removed once removed; SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from connector_harness import (
    demo_key,
    history,
    last_index,
    round_indexes,
    source_health,
    toml_sources,
    upstream,
    wait_until,
)

from serverproc import WAGERWIRE, ServerProcess
from servers import PostgresServer, RedisServer, own_postgres, postgres_server, redis_server

__all__ = ["own_postgres", "postgres_server", "redis_server"]

pytestmark = pytest.mark.timeout(240)


def _admin_key(store: str) -> str:
    done = subprocess.run([*WAGERWIRE, "keys", "--store", store, "create", "--json", "--role",
                           "admin", "--plan", "internal"], capture_output=True, text=True,
                          timeout=60, check=True)
    return str(json.loads(done.stdout)["key"])


def _downstream(tmp_path: Path, store: str | None, extra: tuple[str, ...] = ()) -> ServerProcess:
    work = tmp_path / "down"
    work.mkdir(exist_ok=True)
    config = work / "sources.toml"
    # a configured source the runtime ones may not shadow (its upstream never answers)
    config.write_text("connector_checkpoint = 0.5\n" + toml_sources([{
        "name": "cfg", "url": "http://127.0.0.1:9", "dialect": "native",
        "options": {"min_backoff": 5.0, "max_backoff": 5.0}}]))
    args = ["--config", str(config), *(["--store", store] if store else []), *extra]
    return ServerProcess(work, args)


def _crash_rounds_are_whole(url: str) -> list[int]:
    indexes = round_indexes(history(url, "game:crash"))
    assert indexes == list(range(1, len(indexes) + 1)), "a hole or a duplicate"
    return indexes


def _scenario(tmp_path: Path, store: str | None) -> None:
    up = upstream(tmp_path)
    down = _downstream(tmp_path, store)
    key = _admin_key(store or f"sqlite:///{down.db}")
    admin = {"Authorization": f"Bearer {key}"}
    secret = demo_key(up)
    try:
        down.start(0)
        sources = f"{down.url}/v1/sources"
        clash = httpx.post(sources, headers=admin, json={
            "name": "cfg", "url": up.url, "dialect": "native"})
        assert clash.status_code == 422 and "[[sources]]" in clash.json()["error"]["message"]
        added = httpx.post(sources, headers=admin, json={
            "name": "eu", "url": up.url, "dialect": "native", "credentials": secret,
            "subscriptions": ["game:crash"], "options": {"max_backoff": 1.0}})
        assert added.status_code == 201, added.text
        wait_until(lambda: last_index(down.url, "game:crash") >= 2, what="first relayed rounds")
        for stop in (signal.SIGTERM, signal.SIGKILL):
            before = len(_crash_rounds_are_whole(down.url))
            if stop == signal.SIGTERM:
                assert down.signal(stop) == 0
            else:
                down.kill()
            time.sleep(1.0)  # the upstream goes on meanwhile
            down.restart()
            listed = httpx.get(sources, headers=admin).json()["sources"]
            assert {row["name"] for row in listed} == {"cfg", "eu"}, stop
            assert secret not in json.dumps(listed)
            assert next(r for r in listed if r["name"] == "eu")["credentials"] == "***"
            target = last_index(up.url, "game:crash") + 1
            wait_until(lambda t=target: last_index(down.url, "game:crash") >= t,  # type: ignore[misc]
                       what=f"relay after the restart ({stop.name})")
            _crash_rounds_are_whole(down.url)
            # resumed from its saved position, not from the start (what the idempotency keys
            # absorbed is at most what came after the last checkpoint)
            duplicates = source_health(down.url)["eu"]["duplicates"]
            assert duplicates < before, (stop, duplicates, before)
        assert source_health(down.url)["eu"]["gaps_unfillable"] == 0
        removed = httpx.delete(f"{sources}/eu", headers=admin)
        assert removed.status_code == 200, removed.text
        down.kill()
        down.restart()
        time.sleep(1.0)
        assert set(source_health(down.url)) == {"cfg"}
        assert httpx.delete(f"{sources}/eu", headers=admin).status_code == 404
        relayed = len(_crash_rounds_are_whole(down.url))
        time.sleep(1.5)
        assert len(_crash_rounds_are_whole(down.url)) == relayed  # nothing relays any more
    finally:
        down.kill()
        up.kill()


def test_a_source_added_at_run_time_survives_restarts_sqlite(tmp_path: Path) -> None:
    _scenario(tmp_path, None)
    with sqlite3.connect(tmp_path / "down" / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM sources").fetchone() == (0,)


def test_a_source_added_at_run_time_survives_restarts_postgres(
    tmp_path: Path, postgres_server: PostgresServer,
) -> None:
    _scenario(tmp_path, postgres_server.url() + f"?schema=s{uuid.uuid4().hex[:8]}")


def test_with_two_workers_one_runs_the_stored_source_whichever_answered(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer,
) -> None:
    store = postgres_server.url() + f"?schema=s{uuid.uuid4().hex[:8]}"
    broker = f"{redis_server.url}?prefix=p{uuid.uuid4().hex[:8]}"
    up = upstream(tmp_path)
    down = _downstream(tmp_path, store, ("--broker", broker, "--workers", "2"))
    admin = {"Authorization": f"Bearer {_admin_key(store)}"}
    fresh = httpx.Limits(max_keepalive_connections=0)  # requests spread over both workers
    try:
        down.start(0)
        with httpx.Client(timeout=10, limits=fresh, headers=admin) as client:
            added = client.post(f"{down.url}/v1/sources", json={
                "name": "eu", "url": up.url, "dialect": "native",
                "subscriptions": ["game:crash"], "options": {"max_backoff": 1.0}})
            assert added.status_code == 201, added.text
            wait_until(lambda: last_index(down.url, "game:crash") >= 3, what="relayed rounds")
            seen = [{r["name"] for r in client.get(f"{down.url}/v1/sources/health").json()[
                "sources"]} for _ in range(20)]
            assert {"cfg", "eu"} in seen  # worker 0 runs both
            assert all(s in ({"cfg", "eu"}, set()) for s in seen)  # worker 1 runs none
            # a listing reads the store: whole whichever worker answers
            listed = [{r["name"]: r["health"] is not None for r in client.get(
                f"{down.url}/v1/sources").json()["sources"]} for _ in range(20)]
            assert {"cfg": True, "eu": True} in listed
            assert {"cfg": False, "eu": False} in listed
            assert all(row in ({"cfg": True, "eu": True}, {"cfg": False, "eu": False})
                       for row in listed)
            _crash_rounds_are_whole(down.url)
            assert client.delete(f"{down.url}/v1/sources/eu").status_code == 200

            def eu_stopped() -> bool:  # worker 0 follows the store at its next re-read (2 s)
                rows = [{r["name"] for r in client.get(f"{down.url}/v1/sources/health").json()[
                    "sources"]} for _ in range(20)]
                return any("cfg" in r for r in rows) and not any("eu" in r for r in rows)

            wait_until(eu_stopped, what="worker 0 stopped eu")
            time.sleep(0.5)  # out of the health list as its stop begins: let the stop end
            relayed = len(_crash_rounds_are_whole(down.url))
            time.sleep(1.5)
            assert len(_crash_rounds_are_whole(down.url)) == relayed
    finally:
        down.kill()
        up.kill()


def test_a_listing_while_the_store_is_down_says_so_and_health_still_answers(
    tmp_path: Path, own_postgres: PostgresServer,
) -> None:
    store = own_postgres.url() + f"?schema=s{uuid.uuid4().hex[:8]}"
    down = _downstream(tmp_path, store)
    admin = {"Authorization": f"Bearer {_admin_key(store)}"}
    try:
        down.start(0)
        sources = f"{down.url}/v1/sources"
        assert [r["name"] for r in httpx.get(sources, headers=admin).json()["sources"]] == [
            "cfg"]
        own_postgres.stop()
        refused = httpx.get(sources, headers=admin, timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "store_unavailable", refused.text
        assert set(source_health(down.url)) == {"cfg"}  # needs no store
        own_postgres.start()
        wait_until(lambda: httpx.get(sources, headers=admin).status_code == 200,
                   what="the listing once PostgreSQL is back")
    finally:
        down.kill()
