"""OddsStream across two nodes on one Redis: a token from one node opens a stream on the other
(no lookup), it is spent for both, and the Free plan's 30 daily tokens are counted once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from servers import PostgresServer, RedisServer, postgres_server, redis_server

__all__ = ["postgres_server", "redis_server"]


@pytest.mark.timeout(120)
async def test_tokens_and_quota_hold_across_two_nodes(
    server_factory: Any, redis_server: RedisServer, postgres_server: PostgresServer,
    tmp_path: Path,
) -> None:
    store = f"{postgres_server.url()}?schema=o{uuid.uuid4().hex[:8]}"
    args = ["--broker", f"{redis_server.url}?prefix=o{uuid.uuid4().hex[:8]}", "--store", store,
            "--no-demo"]
    a, b = server_factory(args), server_factory(args)
    out = subprocess.run(
        [sys.executable, "-m", "wagerwire", "keys", "--store", store, "create", "--role",
         "reader", "--plan", "free", "--prefix", "os_live_", "--json"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )
    key = str(json.loads(out.stdout)["key"])
    assert key.startswith("os_live_")
    headers = {"X-Api-Key": key}
    async with httpx.AsyncClient(timeout=10) as http:
        res = await http.post(a.url + "/api/stream/token", headers=headers)
        assert res.status_code == 200
        token = res.json()["token"]
        ws = await connect(f"{b.ws_url}/api/stream?token={token}&sport=Football")
        await ws.send("ping")
        assert await ws.recv() == "pong"
        await ws.close()
        for node in (a, b):  # spent on B: refused on both
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{node.ws_url}/api/stream?token={token}")
            assert refused.value.response.status_code == 401
        codes = [(await http.post(n.url + "/api/stream/token", headers=headers)).status_code
                 for n in [a, b] * 15]
        assert codes == [200] * 29 + [429]  # 30 a day over both nodes: the first one counted
        res = await http.post(b.url + "/api/stream/token", headers=headers)
        assert res.status_code == 429 and int(res.headers["retry-after"]) >= 1
