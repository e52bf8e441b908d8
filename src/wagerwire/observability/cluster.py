"""Every node of the hub, as ``/metrics`` and the dashboard show them.

Each node writes a heartbeat (:class:`~wagerwire.auth.keys.NodeRecord`: its id, address,
broker and store with their health, open streams) to the shared store every
``HEARTBEAT_S`` and reads everyone's back (``node/server.py``); :class:`ClusterView` holds
what it read and renders it as metric families:

* ``wagerwire_node_info{node_id,address,broker,store}`` (1): this node (its own health is
  ``wagerwire_broker_up`` / ``wagerwire_store_up``, from ``metrics.py``);
* ``wagerwire_cluster_node_up{node_id,address,broker,store}``: 1 while a node's heartbeat
  is younger than ``DOWN_AFTER_S``, then 0 (until it is forgotten an hour later);
* ``wagerwire_cluster_node_broker_up``, ``…_store_up``, ``…_streams``,
  ``…_seen_age_seconds`` by ``node_id``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from wagerwire.auth.keys import NodeRecord

__all__ = ["DOWN_AFTER_S", "HEARTBEAT_S", "ClusterView", "default_node_id"]

HEARTBEAT_S = 2.0
DOWN_AFTER_S = 3 * HEARTBEAT_S


def default_node_id(host: str, port: int) -> str:
    """``<host>:<port>-<pid>``, with the machine's name for a wildcard host: unique per
    process, readable in a listing."""
    name = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    return f"{name}:{port}-{os.getpid()}"


class ClusterView:
    """This node's identity and the last heartbeats read from the shared store."""

    def __init__(self, node_id: str, address: str, started_at: float, broker: str,
                 store: str) -> None:
        self.node_id = node_id
        self.address = address
        self.started_at = started_at
        self.broker = broker
        self.store = store
        self.broker_ok = True
        self.store_ok = True
        self.nodes: list[NodeRecord] = []
        self.read_at = 0.0

    def record(self, now: float, broker_ok: bool, store_ok: bool, streams: int) -> NodeRecord:
        """This node's heartbeat: its store is healthy when the store says so and the last
        heartbeat reached the shared store."""
        self.broker_ok = broker_ok
        return NodeRecord(self.node_id, self.address, self.started_at, now, self.broker,
                          broker_ok, self.store, store_ok and self.store_ok, streams)

    def update(self, nodes: list[NodeRecord], now: float) -> None:
        self.store_ok = True
        self.nodes = nodes
        self.read_at = now

    def failed(self) -> None:
        self.store_ok = False

    def collect(self, now: float) -> Iterator[Metric]:
        info = GaugeMetricFamily("wagerwire_node_info", "This node: id, address, backends",
                                 labels=["node_id", "address", "broker", "store"])
        info.add_metric([self.node_id, self.address, self.broker, self.store], 1)
        yield info
        up = GaugeMetricFamily("wagerwire_cluster_node_up", "1 while a node of the hub "
                               f"sends heartbeats (none for {DOWN_AFTER_S:.0f} s: 0)",
                               labels=["node_id", "address", "broker", "store"])
        broker = GaugeMetricFamily("wagerwire_cluster_node_broker_up",
                                   "A node's broker was ready at its last heartbeat",
                                   labels=["node_id"])
        store = GaugeMetricFamily("wagerwire_cluster_node_store_up",
                                  "A node reached the shared store at its last heartbeat",
                                  labels=["node_id"])
        streams = GaugeMetricFamily("wagerwire_cluster_node_streams",
                                    "Open streams of a node at its last heartbeat",
                                    labels=["node_id"])
        age = GaugeMetricFamily("wagerwire_cluster_node_seen_age_seconds",
                                "Seconds since a node's last heartbeat", labels=["node_id"])
        for node in self.nodes:
            seen = max(0.0, now - node.seen_at)
            up.add_metric([node.node_id, node.address, node.broker, node.store],
                          1 if seen < DOWN_AFTER_S else 0)
            broker.add_metric([node.node_id], 1 if node.broker_ok else 0)
            store.add_metric([node.node_id], 1 if node.store_ok else 0)
            streams.add_metric([node.node_id], node.streams)
            age.add_metric([node.node_id], round(seen, 1))
        yield from (up, broker, store, streams, age)
