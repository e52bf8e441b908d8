"""The node's one Prometheus registry and everything ``/metrics`` exports.

:class:`NodeMetrics` is three things at once, so the hot path pays for nothing more than a
call per publish, per loop turn, per replay and per flush:

* the hub's :class:`~wagerwire.core.hub.HubObserver` (publish → durable, per-channel counts,
  replay size and time, the mark from which the fan-out latency is measured);
* the flusher's ``observe`` hook (durable → first byte per transport and dialect, and one
  outbox sample per flush);
* a collector that reads the hub's, the store's and the streams' plain counters at scrape
  time.

Names follow the Prometheus conventions (``_total`` counters, base units: seconds, bytes).
The names ``/metrics`` had before the registry existed are kept as they were.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from wagerwire.core.messages import Message
from wagerwire.observability.histogram import (
    BYTES_BUCKETS,
    COUNT_BUCKETS,
    LATENCY_BUCKETS,
    LoopHistogram,
)
from wagerwire.transports.stream import StreamConnection, dialect_of

if TYPE_CHECKING:
    from wagerwire.api.deps import Services
    from wagerwire.auth.gate import KeyGate
    from wagerwire.core.hub import Hub
    from wagerwire.observability.cluster import ClusterView
    from wagerwire.transports.stream import StreamRegistry

__all__ = ["CONTENT_TYPE", "MAX_CHANNELS", "NodeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Channels counted one by one; the rest add up under ``channel="_other"`` (cardinality).
MAX_CHANNELS = 1000

Key = tuple[str, str]  # (transport, dialect)

# ``*_created`` series double the exposition for no use here (process-wide setting).
disable_created_metrics()  # type: ignore[no-untyped-call]


class NodeMetrics:
    """One node's metrics; ``render()`` is the ``/metrics`` body."""

    def __init__(self, hub: Hub, started_at: float | None = None) -> None:
        self.hub = hub
        self.started_at = time.time() if started_at is None else started_at
        self.streams: StreamRegistry | None = None
        self.services: Services | None = None
        self.connection_counts: Callable[[], dict[Key, int]] | None = None
        self.cluster: ClusterView | None = None  # every node's heartbeat (cluster.py)
        self.gate: KeyGate | None = None
        self.durable = LoopHistogram(LATENCY_BUCKETS)
        self.replay_messages = LoopHistogram(COUNT_BUCKETS)
        self.replay_seconds = LoopHistogram(LATENCY_BUCKETS)
        self.fanout: dict[Key, LoopHistogram] = {}
        self.outbox: dict[Key, LoopHistogram] = {}
        self.channels: dict[str, int] = {}
        self._pending_since = 0.0
        self._pending_encoders: dict[object, None] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        # Observed on the store's writer thread: prometheus_client's locked histograms.
        self.commit_messages = Histogram(
            "wagerwire_store_commit_batch_messages", "Messages per store group commit",
            buckets=COUNT_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram(
            "wagerwire_store_commit_seconds", "Time of one store group commit (with fsync)",
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_Collector(self))

    # -- wiring ----------------------------------------------------------------------------

    def attach_store(self, store: object) -> None:
        """Hear the store's commits, when it reports them (SQLite and PostgreSQL do)."""
        if hasattr(store, "on_commit"):
            store.on_commit = self.committed

    def committed(self, messages: int, seconds: float) -> None:
        self.commit_messages.observe(messages)
        self.commit_seconds.observe(seconds)

    # -- HubObserver -----------------------------------------------------------------------

    def published(self, seconds: float) -> None:
        self.durable.observe(seconds)

    def turn(self, runs: list[tuple[str, list[Message]]], started: float, sent: int,
             encoders: Iterable[object]) -> None:
        channels = self.channels
        for channel, messages in runs:
            if channel in channels:
                channels[channel] += len(messages)
            elif len(channels) < MAX_CHANNELS:
                channels[channel] = len(messages)
            else:
                channels["_other"] = channels.get("_other", 0) + len(messages)
        if sent:
            if not self._pending_since:
                self._pending_since = started
            self._pending_encoders.update(dict.fromkeys(encoders))

    def replayed(self, messages: int, seconds: float) -> None:
        self.replay_messages.observe(messages)
        self.replay_seconds.observe(seconds)

    # -- Flusher.observe -------------------------------------------------------------------

    def flushing(self, pending: list[StreamConnection]) -> None:
        """Once per flush: the fan-out latency for every (transport, dialect) whose frames
        the hub handed out since the last flush (known per frame format, so nothing here
        walks the connections), and the outbox of the first connection as this flush's
        sample."""
        since = self._pending_since
        first = pending[0]
        key = first.tally.key
        box = self.outbox.get(key)
        if box is None:
            box = self.outbox[key] = LoopHistogram(BYTES_BUCKETS)
        box.observe(first.queued_bytes)
        if not since:
            return
        self._pending_since = 0.0
        elapsed = time.perf_counter() - since
        encoders = self._pending_encoders
        self._pending_encoders = {}
        fanout = self.fanout
        for k in {self._key(enc) for enc in encoders}:
            hist = fanout.get(k)
            if hist is None:
                hist = fanout[k] = LoopHistogram(LATENCY_BUCKETS)
            hist.observe(elapsed)

    def _key(self, encoder: object) -> Key:
        """(transport, dialect) of a frame encoder, as the stream registry saw it used."""
        streams = self.streams
        found = streams.kinds.get(encoder) if streams is not None else None
        return found if found is not None else ("other", dialect_of(encoder))

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _histogram(name: str, doc: str, labels: list[str],
               items: Iterable[tuple[tuple[str, ...], LoopHistogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, hist in items:
        family.add_metric(list(values), hist.buckets(), hist.sum)
    return family


class _Collector:
    """Reads the plain counters at scrape time (on the event loop, like the writers)."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._hub()
        yield from self._streams()
        yield from self._node()

    def _hub(self) -> Iterator[Metric]:
        m = self.m
        hub = m.hub
        stats = hub.stats
        for name, value, doc in (
            ("wagerwire_published", stats.published, "Messages published (durable)"),
            ("wagerwire_duplicates", stats.duplicates, "Publishes answered as duplicates"),
            ("wagerwire_delivered", stats.delivered, "Message copies handed to subscribers"),
            ("wagerwire_replayed", stats.replayed, "Messages replayed from the store"),
            ("wagerwire_frames_encoded", stats.encoded, "Frames encoded (once per format)"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        labels = ["transport", "dialect", "format"]
        delivered = CounterMetricFamily(
            "wagerwire_messages_delivered", "Message copies handed to subscribers",
            labels=labels)
        queued = CounterMetricFamily(
            "wagerwire_stream_queued_bytes", "Frame bytes handed to subscribers' outboxes",
            labels=labels)
        rows = sorted((self.m._key(enc) + (type(enc).__name__,), n)
                      for enc, n in stats.by_encoder.items())
        for label, (copies, size) in rows:
            delivered.add_metric(list(label), copies)
            queued.add_metric(list(label), size)
        yield delivered
        yield queued
        yield GaugeMetricFamily("wagerwire_subscribers", "Subscribed sinks on this node",
                                value=hub.subscriber_count)
        per_channel = CounterMetricFamily(
            "wagerwire_channel_messages", "Messages that reached this node, by channel "
            f"(first {MAX_CHANNELS} channels; the rest under _other)", labels=["channel"])
        for channel, n in sorted(m.channels.items()):
            per_channel.add_metric([channel], n)
        yield per_channel
        yield _histogram("wagerwire_publish_durable_seconds",
                         "Publish accepted to durable (store commit acknowledged)", [],
                         [((), m.durable)])
        yield _histogram("wagerwire_replay_messages", "Messages replayed per resumed "
                         "subscription", [], [((), m.replay_messages)])
        yield _histogram("wagerwire_replay_seconds", "Time to replay a resumed subscription",
                         [], [((), m.replay_seconds)])

    def _streams(self) -> Iterator[Metric]:
        m = self.m
        labels = ["transport", "dialect"]
        yield _histogram("wagerwire_fanout_latency_seconds",
                         "Durable (hub received) to first byte written, per flush",
                         labels, sorted(m.fanout.items()))
        yield _histogram("wagerwire_outbox_flush_bytes",
                         "Outbox bytes of a connection at flush (one sample per flush)",
                         labels, sorted(m.outbox.items()))
        streams = m.streams
        if streams is None:
            return
        if m.connection_counts is not None:
            counts = m.connection_counts()
            legacy = GaugeMetricFamily("wagerwire_connections", "Open streams by transport",
                                       labels=["transport"])
            by_transport: dict[str, int] = {}
            for (transport, _), n in counts.items():
                by_transport[transport] = by_transport.get(transport, 0) + n
            for transport, n in sorted(by_transport.items()):
                legacy.add_metric([transport], n)
            yield legacy
            detailed = GaugeMetricFamily("wagerwire_stream_connections",
                                         "Open streams by transport and dialect", labels=labels)
            for key, n in sorted(counts.items()):
                detailed.add_metric(list(key), n)
            yield detailed
        cuts = CounterMetricFamily("wagerwire_slow_consumer_cuts",
                                   "Streams closed as slow consumers", labels=labels)
        for key, tally in sorted(streams.tallies.items()):
            cuts.add_metric(list(key), tally.slow_consumers)
        yield cuts
        yield CounterMetricFamily("wagerwire_slow_consumer_disconnects",
                                  "Streams closed as slow consumers (all transports)",
                                  value=streams.slow_consumers)
        conflated = CounterMetricFamily(
            "wagerwire_conflated_messages",
            "Queued messages dropped for a newer one of their key (conflating channels)",
            labels=labels)
        for key, tally in sorted(streams.tallies.items()):
            conflated.add_metric(list(key), tally.conflated)
        yield conflated
        frames = CounterMetricFamily("wagerwire_stream_error_frames",
                                     "Error frames sent on streams, by code",
                                     labels=["transport", "code"])
        closes = CounterMetricFamily("wagerwire_stream_closes", "Stream close codes sent",
                                     labels=["transport", "code"])
        refused = CounterMetricFamily("wagerwire_stream_refusals",
                                      "Requests the HTTP layer refused before any app or stream (stream admission, malformed requests), by code",
                                      labels=["code"])
        for (transport, kind, code), n in sorted(streams.errors.items()):
            if kind == "refused":
                refused.add_metric([code], n)
            else:
                (frames if kind == "error" else closes).add_metric([transport, code], n)
        yield frames
        yield closes
        yield refused

    def _keys(self) -> Iterator[Metric]:
        gate = self.m.gate
        if gate is None:
            return
        applied = CounterMetricFamily(
            "wagerwire_key_revocations_applied", "Key revocations this node applied (its "
            "streams of the key closed), by how they arrived: local, notify, poll",
            labels=["via"])
        for via, n in sorted(gate.revocations.items()):
            applied.add_metric([via], n)
        yield applied
        listening = getattr(gate.keystore, "listening", None)
        if isinstance(listening, bool):
            yield GaugeMetricFamily(
                "wagerwire_keystore_notifications_up", "1 while the shared key store's "
                "change notifications are received (else revocations arrive by polling)",
                value=1 if listening else 0)

    def _node(self) -> Iterator[Metric]:
        m = self.m
        if m.cluster is not None:
            yield from m.cluster.collect(time.time())
        yield from self._keys()
        svc = m.services
        store = m.hub.store
        yield GaugeMetricFamily("wagerwire_asyncio_tasks",
                                "asyncio tasks alive in this process (a leak shows here)",
                                value=_task_count())
        yield GaugeMetricFamily("wagerwire_uptime_seconds", "Seconds since the node started",
                                value=round(time.time() - m.started_at))
        durable = getattr(store, "inner", store)  # a HistoryStore wraps the durable store
        yield GaugeMetricFamily("wagerwire_store_up",
                                "1 when the last store write or read succeeded",
                                value=1 if getattr(durable, "healthy", True) else 0)
        broker = m.hub.broker
        yield GaugeMetricFamily("wagerwire_broker_up",
                                "1 when the broker accepts publishes (Redis reachable)",
                                value=1 if getattr(broker, "ready", True) else 0)
        yield CounterMetricFamily("wagerwire_broker_failovers",
                                  "Redis failovers followed (Sentinel promoted a new primary)",
                                  value=getattr(broker, "failovers", 0))
        for attr, name, doc in (("commits", "wagerwire_store_commits", "Store group commits"),
                                ("appended", "wagerwire_store_appended_messages",
                                 "Messages committed by the store")):
            value = getattr(store, attr, None)
            if isinstance(value, int):
                yield CounterMetricFamily(name, doc, value=value)
        if svc is None:
            return
        yield GaugeMetricFamily("wagerwire_ready", "1 when the store and broker are usable",
                                value=1 if svc.ready else 0)
        yield CounterMetricFamily("wagerwire_broker_outages",
                                  "Times the broker became unreachable (Redis failovers)",
                                  value=svc.broker_outages)
        http = CounterMetricFamily("wagerwire_http_errors", "REST error answers by code",
                                   labels=["code"])
        for code, n in sorted(svc.errors.items()):
            http.add_metric([code], n)
        yield http
        manager = svc.extra.get("connectors")
        if manager is not None:
            yield from _sources(manager.health())


_SOURCE_COUNTERS = (
    ("messages", "Messages a source published into the hub (duplicates not counted)"),
    ("duplicates", "Messages of a source the hub already had (idempotency key)"),
    ("reconnects", "Times a source reconnected"),
    ("gaps_found", "Gaps a source's continuity check found"),
    ("gaps_filled", "Gaps filled by backfill (or by a failover peer)"),
    ("gaps_unfillable", "Gaps published as markers: the source lost the data"),
    ("backfilled", "Messages a source obtained through its REST backfill"),
)


def _sources(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """Per-source connector health (``connectors/health.py``), labelled by source."""
    labels = ["source", "dialect"]
    up = GaugeMetricFamily("wagerwire_source_connected", "1 when the source is connected",
                           labels=labels)
    age = GaugeMetricFamily("wagerwire_source_last_message_age_seconds",
                            "Seconds since the source's last message", labels=labels)
    lag = GaugeMetricFamily("wagerwire_source_lag_seconds",
                            "Source timestamp to hub acceptance, last message", labels=labels)
    err = GaugeMetricFamily("wagerwire_source_error", "1 when the source is in the error state",
                            labels=[*labels, "code"])
    counters = {name: CounterMetricFamily(f"wagerwire_source_{name}", doc, labels=labels)
                for name, doc in _SOURCE_COUNTERS}
    for row in rows:
        key = [row["name"], row["dialect"]]
        up.add_metric(key, 1 if row["connected"] else 0)
        if row["last_message_age_s"] is not None:
            age.add_metric(key, row["last_message_age_s"])
        if row["lag_ms"] is not None:
            lag.add_metric(key, row["lag_ms"] / 1000)
        if row["state"] == "error":
            err.add_metric([*key, str(row["error_code"])], 1)
        for name, family in counters.items():
            family.add_metric(key, row[name])
    yield up
    yield age
    yield lag
    yield err
    yield from counters.values()


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped from a thread without a loop (tests)
        return 0
