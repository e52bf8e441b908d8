"""``wagerwire sources list|add|remove`` on a running node, through the admin REST route."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from connector_harness import demo_key, last_index, source_health, upstream, wait_until

from serverproc import WAGERWIRE, ServerProcess

pytestmark = pytest.mark.timeout(180)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WAGERWIRE, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_sources_are_added_listed_and_removed_with_an_admin_key(tmp_path: Path) -> None:
    up = upstream(tmp_path)
    work = tmp_path / "down"
    work.mkdir()
    keys = ["keys", "--store", f"sqlite:///{work / 'hub.db'}", "create", "--json"]
    admin = json.loads(_cli(*keys, "--role", "admin", "--plan", "internal").stdout)["key"]
    reader = json.loads(_cli(*keys, "--role", "reader", "--plan", "allstar").stdout)["key"]
    down = ServerProcess(work).start(0)
    try:
        base = ["sources", "--url", down.url]
        assert httpx.get(f"{down.url}/v1/sources/health").json() == {"sources": []}
        # not without an admin key
        refused = _cli(*base, "--key", reader, "add", "eu", up.url, "--dialect", "native")
        assert refused.returncode != 0 and "403" in refused.stderr
        assert httpx.post(f"{down.url}/v1/sources", json={"name": "x"}).status_code in (401, 403)
        # a bad entry says why
        bad = httpx.post(f"{down.url}/v1/sources", headers={"Authorization": f"Bearer {admin}"},
                         json={"name": "x", "url": up.url, "dialect": "smoke"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_parameter"
        added = _cli(*base, "--key", admin, "add", "eu", up.url, "--dialect", "native",
                     "--subscribe", "game:crash", "--credentials", demo_key(up),
                     "--option", "max_backoff=1")
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["source"]["credentials"] == "***"
        wait_until(lambda: last_index(down.url, "game:crash") >= 1, what="relayed rounds")
        listed = _cli(*base, "--key", admin, "list", "--json")
        (row,) = json.loads(listed.stdout)["sources"]
        assert row["name"] == "eu" and row["health"]["state"] == "connected"
        assert demo_key(up) not in listed.stdout
        text = _cli(*base, "--key", admin, "list").stdout
        assert text.startswith("eu") and "connected" in text
        again = _cli(*base, "--key", admin, "add", "eu", up.url, "--dialect", "native")
        assert again.returncode != 0 and "exists already" in again.stderr
        removed = _cli(*base, "--key", admin, "remove", "eu")
        assert removed.returncode == 0, removed.stderr
        assert source_health(down.url) == {}
        gone = _cli(*base, "--key", admin, "remove", "eu")
        assert gone.returncode != 0 and "404" in gone.stderr
    finally:
        down.kill()
        up.kill()
