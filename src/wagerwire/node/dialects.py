"""The seed dialects as one feature: Data Stream, TrackerSino, Stake, OddsStream routes + REST.

============  =====================================================  ==========================
dialect       streams                                                REST
============  =====================================================  ==========================
Data Stream   WS ``/ws/{game}``, ``/ws/type/{type}``;                –
              SSE ``/sse/{game}``, ``/sse/type/{type}``
TrackerSino   WS ``/v1-beta/stream?games=``                          ``/v1-beta/games/{slug}/rounds``
Stake         WS ``/_api/websocket``                                 ``POST /_api/graphql``
OddsStream    WS ``/api/stream?token=&sport=&competition=&bookmaker=``  ``POST /api/stream/token``,
                                                                     ``/api/sports``,
                                                                     ``/api/bookmakers``,
                                                                     ``/api/odds``,
                                                                     ``/api/value-bets``
============  =====================================================  ==========================
"""

from __future__ import annotations

from collections.abc import Iterable

from wagerwire.api.dialects import dialect_router
from wagerwire.api.feature import Feature
from wagerwire.api.oddsstream import oddsstream_router
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.dialects.catalog import Catalog, CatalogGame
from wagerwire.dialects.datastream import DataStreamSse, DataStreamWs
from wagerwire.dialects.oddsstream import OddsStream
from wagerwire.dialects.stake import DEFAULT_ORIGINS as DEFAULT_STAKE_ORIGINS
from wagerwire.dialects.stake import Stake
from wagerwire.dialects.trackersino import TrackerSino
from wagerwire.sources.casino import GameSpec, demo_games
from wagerwire.transports.dialects import dialect_stream
from wagerwire.types import now_ms

__all__ = ["catalog_of", "dialect_feature"]


def catalog_of(specs: Iterable[GameSpec]) -> Catalog:
    """The dialects' view of a game catalog."""
    return Catalog(CatalogGame(s.slug, s.type, s.category, s.provider) for s in specs)


def dialect_feature(settings: Settings, hub: Hub) -> Feature:
    """Stream routes and REST routers of the four seed dialects over the demo catalog.

    ``settings.stake_origins``, when not empty, replaces the allowed ``Origin`` values of the
    Stake WebSocket: exact origins, ``re:<regex>`` or ``*``.
    """
    catalog = catalog_of(demo_games())
    origins = settings.stake_origins or DEFAULT_STAKE_ORIGINS
    ds_ws = dialect_stream(DataStreamWs(catalog, now_ms))  # one encoder for both paths
    ds_sse = dialect_stream(DataStreamSse(catalog, now_ms))
    odds = OddsStream()
    return Feature(
        routers=[dialect_router(catalog), oddsstream_router(odds.catalog)],
        stream_routes=[
            ("ws", "/ws/type/{type}", ds_ws),
            ("ws", "/ws/{game}", ds_ws),
            ("sse", "/sse/type/{type}", ds_sse),
            ("sse", "/sse/{game}", ds_sse),
            ("ws", "/v1-beta/stream", dialect_stream(TrackerSino(catalog))),
            ("ws", "/_api/websocket", dialect_stream(Stake(catalog, origins))),
            ("ws", "/api/stream", dialect_stream(odds)),
        ],
    )
