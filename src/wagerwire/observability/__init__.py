"""Observability: the node's Prometheus registry (:mod:`.metrics`), lock-free loop-thread
histograms (:mod:`.histogram`) and structured logs (:mod:`wagerwire.logs`).

The hub and the transports know nothing of Prometheus: they keep plain counters and call a
small observer once per publish, loop turn, replay or flush (never per subscriber); this
package turns those into metric families when ``/metrics`` is scraped.
"""

from wagerwire.observability.histogram import LoopHistogram
from wagerwire.observability.metrics import NodeMetrics

__all__ = ["LoopHistogram", "NodeMetrics"]
