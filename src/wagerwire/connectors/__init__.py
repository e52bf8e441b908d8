"""Upstream connectors: other feeds (any dialect wagerwire speaks) published into the hub.

The sans-I/O part decides everything that can be decided without a socket or a clock:
:mod:`.sources` (what a ``[[sources]]`` entry means), :mod:`.model` (publications,
idempotency keys, gap markers, cursors), :mod:`.normalise` (each dialect's frames into the
hub's model), :mod:`.gaps` (sequence tracking) and :mod:`.health` (per-source counters).
The adapters do the I/O: :mod:`.runner` (reconnect loop, publishing, checkpoints, the
manager), the dialects' client sessions (:mod:`.native` over the SDK, :mod:`.rounds` for
TrackerSino, Data Stream and Stake, :mod:`.sportsgameodds`, :mod:`.oddsstream`) and
:mod:`.clients`, which picks the session for a source's dialect.
"""

from __future__ import annotations

__all__: list[str] = []
