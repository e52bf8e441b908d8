"""Broker backends implementing :class:`wagerwire.core.broker.Broker`.

One module per technology: :mod:`wagerwire.brokers.memory` serves a single process;
:mod:`wagerwire.brokers.redis` shares offsets and fan-out between processes, its roles in
``redis_*`` modules (listed in its docstring). Both share :mod:`~wagerwire.brokers.inflight`
(publishes in flight, the idempotency window); :mod:`~wagerwire.brokers.ordering` is the pure
per-channel delivery-order decision.
"""

from __future__ import annotations

__all__: list[str] = []
