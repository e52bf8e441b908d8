"""Servers for the SDK tests, per transport: the plain ``server`` fixture for ``ws``/``sse``;
for ``wt`` a ``wagerwire serve`` child with TLS from a throwaway CA and WebTransport on a
fixed UDP port (it must stay the same across restarts). 127.0.0.1 only."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serverproc import ServerProcess
from tlsutil import TestCA

__all__ = ["free_udp_port", "sdk_target", "wt_process"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def wt_process(tmp_path: Path) -> Iterator[tuple[ServerProcess, TestCA, int]]:
    ca = TestCA(tmp_path / "ca")
    leaf = ca.issue()
    port = free_udp_port()
    srv = ServerProcess(tmp_path, ["--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key),
                                   "--webtransport", "--webtransport-port", str(port)])
    try:
        yield srv.start(0), ca, port
    finally:
        srv.kill()


def sdk_target(request: pytest.FixtureRequest, transport: str) -> tuple[ServerProcess,
                                                                          dict[str, Any]]:
    """The server for ``transport`` and the extra ``Client`` arguments it needs.

    Over WebTransport the client trusts the test CA and pings after 1 s of silence: after a
    SIGKILL nothing says goodbye over UDP, so its watchdog is what notices (2 s here).
    """
    if transport != "wt":
        server: ServerProcess = request.getfixturevalue("server")
        return server, {}
    srv, ca, port = request.getfixturevalue("wt_process")
    # an ssl.SSLContext here; `wagerwire tail --ca` (test_client_webtransport) passes the file
    return srv, {"ca": ca.client_context(), "webtransport_url": f"https://127.0.0.1:{port}/v1/wt",
                 "heartbeat_interval": 1.0, "open_timeout": 3.0}
