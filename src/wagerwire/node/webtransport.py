"""The WebTransport listener of a node: Data Stream ``/wt…`` and native ``/v1/wt`` on UDP.

Built when ``webtransport`` is set; it shares the node's hub, gate, flusher and stream
registry with the TCP listener (frames encoded once per format, the same plans and limits),
and takes its certificate from the node's TLS certificate source.
"""

from __future__ import annotations

from collections.abc import Callable

from wagerwire.config import Settings
from wagerwire.dialects.datastream import DataStreamWt
from wagerwire.node.dialects import catalog_of
from wagerwire.sources.casino import demo_games
from wagerwire.transports.stream import StreamRegistry
from wagerwire.transports.webtransport import Certified, WebTransportServer, WtConfig
from wagerwire.types import now_ms

__all__ = ["webtransport_server"]


def webtransport_server(settings: Settings, registry: StreamRegistry,
                        certificate: Callable[[], Certified]) -> WebTransportServer:
    """The (not yet started) UDP listener on ``settings.webtransport_port``."""
    config = WtConfig(host=settings.host, port=settings.webtransport_port,
                      max_line_bytes=settings.max_message_bytes + 4096)
    datastream = DataStreamWt(catalog_of(demo_games()), now_ms)
    return WebTransportServer(registry, config, datastream, certificate)
