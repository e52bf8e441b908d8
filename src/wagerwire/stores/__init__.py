"""Durable history backends implementing :class:`wagerwire.core.store.Store`.

One module per technology: :mod:`wagerwire.stores.sqlite` is the embedded default; the
schema of each SQL backend evolves through numbered files in ``migrations/``.
"""

from __future__ import annotations

__all__: list[str] = []
