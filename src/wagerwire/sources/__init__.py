"""Where hub data comes from besides the publish API: simulators and upstream feeds.

A source only needs something that can publish (:class:`~wagerwire.sources.base.Publisher`,
which the hub implements), so simulators run the same against the real hub and a test fake.
"""

from __future__ import annotations

__all__: list[str] = []
