"""Shared fixtures: a real wagerwire server process on 127.0.0.1, on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from serverproc import ROOT, WAGERWIRE, ServerProcess

__all__ = ["ROOT", "WAGERWIRE", "ServerProcess"]

# No per-example deadline: a stall of a shared CI machine (250 ms) would fail a property
# that holds ("Unreliable test timings"); speed is the benchmarks' business.
settings.register_profile("wagerwire", deadline=None)
settings.load_profile("wagerwire")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[ServerProcess] | object]:
    servers: list[ServerProcess] = []

    def make(args: list[str] | None = None, workdir: Path | None = None) -> ServerProcess:
        srv = ServerProcess(workdir or tmp_path, args)
        servers.append(srv)
        return srv.start(0)

    yield make
    for srv in servers:
        srv.kill()


@pytest.fixture
def server(server_factory: object) -> ServerProcess:
    return server_factory()  # type: ignore[operator,no-any-return]
