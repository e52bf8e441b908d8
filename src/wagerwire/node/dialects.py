"""The seed dialects as one feature: Data Stream, TrackerSino and Stake stream routes + REST.

============  =====================================================  ==========================
dialect       streams                                                REST
============  =====================================================  ==========================
Data Stream   WS ``/ws/{game}``, ``/ws/type/{type}``;                –
              SSE ``/sse/{game}``, ``/sse/type/{type}``
TrackerSino   WS ``/v1-beta/stream?games=``                          ``/v1-beta/games/{slug}/rounds``
Stake         WS ``/_api/websocket``                                 ``POST /_api/graphql``
============  =====================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Iterable

from wagerwire.api.dialects import dialect_router
from wagerwire.api.feature import Feature
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dialects.datastream import Catalog, CatalogGame
from wagerwire.sources.casino import GameSpec, demo_games
from wagerwire.transports.dialects import (
    DEFAULT_STAKE_ORIGINS,
    datastream_sse_factory,
    datastream_ws_factory,
    stake_ws_factory,
    trackersino_ws_factory,
)

__all__ = ["catalog_of", "dialect_feature"]


def catalog_of(specs: Iterable[GameSpec]) -> Catalog:
    """The dialects' view of a game catalog."""
    return Catalog(CatalogGame(s.slug, s.type, s.category, s.provider) for s in specs)


def dialect_feature(settings: Settings, hub: Hub) -> Feature:
    """Stream routes and REST routers of the three seed dialects over the demo catalog.

    ``settings.stake_origins`` (when the setting exists) replaces the allowed ``Origin``
    values of the Stake WebSocket: exact origins, ``re:<regex>`` or ``*``.
    """
    catalog = catalog_of(demo_games())
    origins = getattr(settings, "stake_origins", None) or DEFAULT_STAKE_ORIGINS
    return Feature(
        routers=[dialect_router(catalog)],
        stream_routes=[
            ("ws", "/ws/type/{type}", datastream_ws_factory(catalog)),
            ("ws", "/ws/{game}", datastream_ws_factory(catalog)),
            ("sse", "/sse/type/{type}", datastream_sse_factory(catalog)),
            ("sse", "/sse/{game}", datastream_sse_factory(catalog)),
            ("ws", "/v1-beta/stream", trackersino_ws_factory(catalog)),
            ("ws", "/_api/websocket", stake_ws_factory(catalog, origins)),
        ],
    )
