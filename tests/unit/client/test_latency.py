"""The SDK's end-to-end latency histogram: plain numbers, and a prometheus_client collector."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from wagerwire.client.latency import LatencyHistogram


def test_observes_message_age_per_transport_and_clamps_clock_skew() -> None:
    h = LatencyHistogram(buckets=(0.01, 0.1, 1.0))
    h.observe_ts(1_000_000, "ws", now=1000.005)  # 5 ms old
    h.observe_ts(1_000_000, "ws", now=1000.5)
    h.observe_ts(1_000_100, "sse", now=1000.0)  # from the future (skew): counted as 0
    snap = h.snapshot()
    assert snap["ws"]["count"] == 2
    assert snap["ws"]["buckets"] == [(0.01, 1), (0.1, 1), (1.0, 2), (float("inf"), 2)]
    assert abs(snap["ws"]["sum"] - 0.505) < 1e-9
    assert snap["sse"]["count"] == 1 and snap["sse"]["sum"] == 0.0


def test_an_application_registers_it_with_prometheus_client() -> None:
    h = LatencyHistogram()
    h.observe(0.02, "ws")
    registry = CollectorRegistry()
    registry.register(h)
    text = generate_latest(registry).decode()
    assert 'wagerwire_client_latency_seconds_count{transport="ws"} 1.0' in text
    assert 'wagerwire_client_latency_seconds_bucket{le="0.025",transport="ws"} 1.0' in text
