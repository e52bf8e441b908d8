"""A real Prometheus scrapes a running node: after a known load (WebSocket and SSE
subscribers, publishes, one resume) Prometheus' HTTP API has the histograms with plausible
values; ``promtool check metrics`` accepts the exposition.

Debian's ``prometheus`` (``make system-deps``) runs on 127.0.0.1 with a temporary config and
TSDB, scraping every second; the test skips when it is not installed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from wsutil import collect_messages, publish_many, subscribe

from servers import PrometheusServer, prometheus_bin
from wagerwire.observability.histogram import LATENCY_BUCKETS

SUBSCRIBERS = 20
MESSAGES = 200
CHANNEL = "obs:load"

pytestmark = pytest.mark.skipif(prometheus_bin() is None,
                                reason="prometheus is not installed (make system-deps)")


@pytest.fixture
def node(server_factory: Any) -> Any:
    return server_factory()


@pytest.fixture
def prometheus(node: Any, tmp_path: Path) -> Iterator[PrometheusServer]:
    prom = PrometheusServer(tmp_path / "prometheus", [f"127.0.0.1:{node.port}"]).start()
    try:
        yield prom
    finally:
        prom.stop()


def query(prom: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(prom.url + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]["result"]  # type: ignore[no-any-return]


def scalar(prom: PrometheusServer, expr: str) -> float | None:
    result = query(prom, expr)
    return float(result[0]["value"][1]) if result else None


def wait_for(prom: PrometheusServer, expr: str, want: float, timeout: float = 30) -> float:
    """Poll until ``expr`` reaches ``want`` (Prometheus scrapes every second)."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = scalar(prom, expr)
        if value is not None and value >= want:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{expr} = {value}, wanted >= {want}")


async def sse_reader(url: str, count: int, ready: asyncio.Event) -> int:
    seen = 0
    async with httpx.AsyncClient(timeout=30) as client, client.stream(
        "GET", url + "/v1/sse", params={"channels": CHANNEL}
    ) as response:
        assert response.status_code == 200
        ready.set()
        async for line in response.aiter_lines():
            if line.startswith("id:"):
                seen += 1
                if seen >= count:
                    return seen
    return seen


async def load(node: Any) -> None:
    subs = [(await subscribe(node.ws_url, [CHANNEL]))[0] for _ in range(SUBSCRIBERS)]
    ready = asyncio.Event()
    sse = asyncio.create_task(sse_reader(node.url, MESSAGES, ready))
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.2)  # the SSE subscription is registered after the head is sent
    acks = await publish_many(node.ws_url, [(CHANNEL, {"i": i, "kind": "odds"})
                                            for i in range(MESSAGES)])
    assert len(acks) == MESSAGES
    received = await asyncio.gather(*(collect_messages(ws, MESSAGES) for ws in subs))
    assert all(len(r) == MESSAGES for r in received)
    assert await asyncio.wait_for(sse, 30) == MESSAGES
    # One resume from the middle: a replay of half the channel.
    token = received[0][MESSAGES // 2 - 1]["token"]
    late, _ = await subscribe(node.ws_url, [CHANNEL], since=token)
    assert len(await collect_messages(late, MESSAGES // 2)) == MESSAGES // 2
    subs.append(late)
    node.keep = subs  # stay connected while Prometheus scrapes the connection gauges


async def test_prometheus_scrapes_plausible_histograms_after_a_known_load(
    node: Any, prometheus: PrometheusServer
) -> None:
    started = time.monotonic()
    await load(node)
    # Every latency observed happened within the load: its quantiles lie at most in the
    # bucket that holds the load's own duration (a bound from this run, not a speed claim:
    # it still catches milliseconds reported as seconds on a quick run).
    took = time.monotonic() - started
    ceiling = min((b for b in LATENCY_BUCKETS if b >= took), default=LATENCY_BUCKETS[-1])
    # every figure below from a scrape taken after the load ended (the replay is recorded
    # after the last publish's ack, so waiting on the publish count alone is not enough)
    wait_for(prometheus, 'timestamp(up{job="wagerwire"})', time.time())
    assert wait_for(prometheus, 'up{job="wagerwire"}', 1) == 1
    wait_for(prometheus, "wagerwire_publish_durable_seconds_count", MESSAGES)
    assert scalar(prometheus, "wagerwire_published_total") == MESSAGES
    # accepted -> durable, in seconds
    p99 = scalar(prometheus, "histogram_quantile(0.99, wagerwire_publish_durable_seconds_bucket)")
    assert p99 is not None and 0 < p99 <= ceiling, (p99, took)
    # store commit batches: every message committed, in at most one batch each
    assert scalar(prometheus, "wagerwire_store_commit_batch_messages_sum") == MESSAGES
    batches = scalar(prometheus, "wagerwire_store_commit_batch_messages_count")
    assert batches is not None and 1 <= batches <= MESSAGES
    # fan-out latency per transport and dialect, observed per flush (so at most one per
    # message and transport, never one per subscriber)
    for transport in ("ws", "sse"):
        sel = f'{{transport="{transport}",dialect="native"}}'
        flushes = scalar(prometheus, f"wagerwire_fanout_latency_seconds_count{sel}")
        assert flushes is not None and 1 <= flushes <= MESSAGES, (transport, flushes)
        p99 = scalar(prometheus, "histogram_quantile(0.99, "
                     f"wagerwire_fanout_latency_seconds_bucket{sel})")
        assert p99 is not None and 0 < p99 <= ceiling, (transport, p99, took)
    # messages per transport: every live copy, counted per run of subscribers
    assert scalar(prometheus, 'wagerwire_messages_delivered_total{transport="ws"}') == (
        SUBSCRIBERS * MESSAGES)
    assert scalar(prometheus, 'wagerwire_messages_delivered_total{transport="sse"}') == MESSAGES
    queued = scalar(prometheus, 'wagerwire_stream_queued_bytes_total{transport="ws"}')
    assert queued is not None and queued > SUBSCRIBERS * MESSAGES * 20
    # the resume: one replay of half the channel
    assert scalar(prometheus, "wagerwire_replay_messages_count") == 1
    assert scalar(prometheus, "wagerwire_replay_messages_sum") == MESSAGES // 2
    outbox = scalar(prometheus, "sum(wagerwire_outbox_flush_bytes_count)")
    assert outbox is not None and outbox >= 1
    assert scalar(prometheus, f'wagerwire_channel_messages_total{{channel="{CHANNEL}"}}') == (
        MESSAGES)
    wait_for(prometheus, 'wagerwire_stream_connections{transport="ws",dialect="native"}',
             SUBSCRIBERS + 1)
    assert scalar(prometheus, "wagerwire_ready") == 1
    for ws in node.keep:
        await ws.close()


def test_promtool_accepts_the_exposition(node: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (make system-deps)")
    httpx.post(node.url + "/v1/publish", json={"channel": "obs:one", "data": {"a": 1}})
    httpx.get(node.url + "/v1/no-such-route")
    text = httpx.get(node.url + "/metrics").content
    for name in (b"wagerwire_publish_durable_seconds_bucket", b"wagerwire_http_errors_total",
                 b"wagerwire_store_commit_seconds_bucket", b"wagerwire_uptime_seconds"):
        assert name in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
