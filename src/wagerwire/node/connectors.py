"""The upstream connectors feature: ``[[sources]]`` of the settings, their manager, routes.

Always plugged in (so ``wagerwire sources add`` works on any node); with no sources it runs
nothing but the idle manager. Sources added at run time are kept in the node's store (table
``sources``) and started again on the next start.
"""

from __future__ import annotations

from wagerwire.api.deps import Services
from wagerwire.api.feature import Feature
from wagerwire.api.sources import router
from wagerwire.config import Settings
from wagerwire.connectors.clients import session_for
from wagerwire.connectors.runner import ConnectorManager, SourceBook
from wagerwire.connectors.sources import parse_sources
from wagerwire.core.hub import Hub

__all__ = ["connectors_feature"]


def connectors_feature(settings: Settings, hub: Hub) -> Feature:
    sources = parse_sources(settings.sources)
    for config in sources:
        session_for(config)  # an unsupported dialect fails at start, not later
    # Sources added at run time are kept in the store (under the Redis broker's HistoryStore).
    store = getattr(hub.store, "inner", hub.store)
    book = store if isinstance(store, SourceBook) else None
    manager = ConnectorManager(hub, sources, session_for, book=book,
                               runs=settings.run_connectors,
                               checkpoint_s=settings.connector_checkpoint)

    def install(hub: Hub, svc: Services) -> None:
        svc.extra["connectors"] = manager

    return Feature(routers=[router], sources=[manager], on_start=[install])
