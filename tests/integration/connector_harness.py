"""Upstream and downstream hubs for the connector tests: real processes on 127.0.0.1.

The upstream runs the simulators fast (``--demo --demo-speed``); the downstream runs with a
config file whose ``[[sources]]`` point at the upstream in one dialect.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from serverproc import ServerProcess
from wagerwire.client import Client

__all__ = [
    "collect_rounds",
    "demo_key",
    "latest",
    "downstream",
    "history",
    "last_index",
    "round_indexes",
    "source_health",
    "toml_sources",
    "upstream",
    "wait_until",
]


def upstream(tmp: Path, speed: float = 10.0, extra: Iterable[str] = ()) -> ServerProcess:
    work = tmp / "up"
    work.mkdir(exist_ok=True)
    return ServerProcess(work, ["--demo", "--demo-speed", str(speed), *extra]).start(0)


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    return json.dumps(value)


def toml_sources(sources: Iterable[Mapping[str, Any]]) -> str:
    out = []
    for source in sources:
        out.append("[[sources]]")
        out += [f"{key} = {_toml_value(value)}" for key, value in source.items()]
    return "\n".join(out) + "\n"


def downstream(tmp: Path, sources: Iterable[Mapping[str, Any]], name: str = "down",
               extra: Iterable[str] = ()) -> ServerProcess:
    work = tmp / name
    work.mkdir(exist_ok=True)
    config = work / "sources.toml"
    config.write_text("connector_checkpoint = 0.5\n" + toml_sources(sources))
    return ServerProcess(work, ["--config", str(config), *extra]).start(0)


def history(url: str, channel: str) -> list[dict[str, Any]]:
    """Every stored message of ``channel`` (REST pages)."""
    out: list[dict[str, Any]] = []
    since = 0
    while True:
        page = httpx.get(f"{url}/v1/channels/{channel}/messages",
                         params={"since": since, "limit": 1000}, timeout=10)
        if page.status_code == 404:
            return out
        page.raise_for_status()
        messages = page.json()["messages"]
        if not messages:
            return out
        out += messages
        since = messages[-1]["offset"]


def round_indexes(messages: Iterable[Mapping[str, Any]]) -> list[int]:
    return [m["data"]["index"] for m in messages if isinstance(m["data"].get("index"), int)]


def last_index(url: str, channel: str) -> int:
    indexes = round_indexes(history(url, channel))
    return indexes[-1] if indexes else 0


def source_health(url: str) -> dict[str, dict[str, Any]]:
    rows = httpx.get(f"{url}/v1/sources/health", timeout=10).json()["sources"]
    return {row["name"]: row for row in rows}


def wait_until(check: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}")


async def collect_rounds(url: str, channels: list[str], until: Mapping[str, int],
                         timeout: float = 60.0) -> dict[str, list[dict[str, Any]]]:
    """Through the SDK, from the start of the downstream's history: every message of
    ``channels`` until each has a round with index ``until[channel]``."""
    import asyncio

    got: dict[str, list[dict[str, Any]]] = {c: [] for c in channels}
    async with Client(url) as client:
        token = await client.start_token(channels)
        sub = client.subscribe(channels, since=token)

        async def read() -> None:
            async for msg in sub:
                got[msg.channel].append({"offset": msg.offset, "data": msg.data})
                done = all(
                    any(m["data"].get("index") == until[c] for m in got[c]) for c in channels
                )
                if done:
                    return

        await asyncio.wait_for(read(), timeout)
        await sub.aclose()
    return got


def demo_key(server: ServerProcess, kind: str = "reader") -> str:
    """A demo key the server printed at its first start (``demo reader key …: ww_…``)."""
    return server.wait_output(rf"demo {kind} key[^:\n]*:[ \t]+(\S+)").group(1)


def latest(url: str, channel: str) -> dict[str, Any] | None:
    """The newest stored message of ``channel``."""
    info = httpx.get(f"{url}/v1/channels/{channel}/messages",
                     params={"since": 0, "limit": 1}, timeout=10)
    if info.status_code != 200:
        return None
    messages = history(url, channel)
    return messages[-1] if messages else None
