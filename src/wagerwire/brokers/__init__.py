"""Broker backends implementing :class:`wagerwire.core.broker.Broker`.

One module per technology: :mod:`wagerwire.brokers.memory` serves a single process; a
scale-out broker (Redis) shares offsets and fan-out between processes.
"""

from __future__ import annotations

__all__: list[str] = []
