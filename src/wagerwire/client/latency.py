"""End-to-end latency as the SDK sees it: publish time (the message's ``ts``, set by the
server when it accepted the publish) to delivery to the application, for live messages.

:class:`LatencyHistogram` has no dependency: ``snapshot()`` gives plain numbers. When
``prometheus_client`` is installed it is also a collector an application can register::

    from prometheus_client import REGISTRY
    REGISTRY.register(client.latency)   # wagerwire_client_latency_seconds{transport=…}

The two clocks (server's and client's) must agree for the figure to mean anything (NTP);
negative skews count as zero.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["DEFAULT_BUCKETS", "LatencyHistogram"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class LatencyHistogram:
    """Buckets of seconds per transport label; observed once per live message delivered."""

    def __init__(self, name: str = "wagerwire_client_latency_seconds",
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.name = name
        self.bounds = tuple(buckets)
        self._series: dict[str, tuple[list[int], list[float]]] = {}

    def observe_ts(self, ts_ms: int, transport: str = "ws", now: float | None = None) -> None:
        """Observe the age of a message stamped ``ts_ms`` (milliseconds since the epoch)."""
        now = time.time() if now is None else now
        self.observe(max(0.0, now - ts_ms / 1000), transport)

    def observe(self, seconds: float, transport: str = "ws") -> None:
        series = self._series.get(transport)
        if series is None:
            series = self._series[transport] = ([0] * (len(self.bounds) + 1), [0.0])
        series[0][bisect_left(self.bounds, seconds)] += 1
        series[1][0] += seconds

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per transport: ``count``, ``sum`` and cumulative ``buckets`` as ``(le, n)``."""
        out: dict[str, dict[str, Any]] = {}
        for transport, (counts, total) in self._series.items():
            cumulative: list[tuple[float, int]] = []
            running = 0
            for bound, n in zip((*self.bounds, float("inf")), counts, strict=True):
                running += n
                cumulative.append((bound, running))
            out[transport] = {"count": running, "sum": total[0], "buckets": cumulative}
        return out

    # -- prometheus_client collector protocol (optional dependency) --------------------------

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(
            self.name, "Publish (server ts) to delivery to the application, live messages",
            labels=["transport"])
        for transport, snap in sorted(self.snapshot().items()):
            buckets = [("+Inf" if le == float("inf") else repr(float(le)), n)
                       for le, n in snap["buckets"]]
            family.add_metric([transport], buckets, snap["sum"])
        yield family

    def describe(self) -> list[Any]:
        return list(self.collect())
