"""A histogram for one thread (the event loop's): a bisect and two additions per observation,
no lock, read at scrape time. prometheus_client's own ``Histogram`` takes a lock per
observation, which is fine off the loop (the store's writer thread) but not on it."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["BYTES_BUCKETS", "COUNT_BUCKETS", "LATENCY_BUCKETS", "LoopHistogram"]

#: Seconds, from half a millisecond to ten seconds.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Messages (replay sizes, commit batches).
COUNT_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
#: Bytes (outbox at flush), 64 B to 4 MiB (the default outbox limit).
BYTES_BUCKETS: tuple[float, ...] = (
    64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
)


class LoopHistogram:
    """Cumulative-on-read bucket counts: ``counts[i]`` holds observations ``<= bounds[i]``
    and above ``bounds[i-1]``; the last slot is ``+Inf``."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs as the exposition format wants them."""
        out: list[tuple[str, int]] = []
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            out.append((_le(bound), total))
        out.append(("+Inf", total + self.counts[-1]))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
