"""What route handlers need, stored on ``app.state.services`` by the composition root."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from wagerwire.auth.identity import Gate
from wagerwire.core.hub import Hub
from wagerwire.tls import CertificateSource

__all__ = ["Services", "services"]


@dataclass(slots=True)
class Services:
    hub: Hub
    started_at: float
    connection_counts: Callable[[], dict[str, int]] | None = None  # set by the server
    slow_consumers: Callable[[], int] | None = None  # set by the server
    ready: bool = True
    broker_outages: int = 0  # times the broker went from ready to not ready (Redis failover)
    # REST errors answered, by code (api/errors.py); exported on /metrics.
    errors: Counter[str] = field(default_factory=Counter)
    metrics: Any = None  # the node's observability.NodeMetrics, set by the server
    gate: Gate = field(default_factory=Gate)
    extra: dict[str, Any] = field(default_factory=dict)
    tls: CertificateSource | None = None  # the TCP listener's certificate, when TLS is on


def services(request: Request) -> Services:
    svc = request.app.state.services
    assert isinstance(svc, Services)
    return svc
