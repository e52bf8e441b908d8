"""Stream routes: parameters, static paths looked up directly, first registration wins."""

from __future__ import annotations

from typing import Any

from wagerwire.transports.http import StreamRoutes


def _factory(tag: str) -> Any:
    def make(request: Any, registry: Any) -> Any:
        return tag
    return make


def test_static_and_parameterised_paths() -> None:
    routes = StreamRoutes()
    routes.add("ws", "/v1/ws", _factory("native"))
    routes.add("ws", "/ws/{game}", _factory("game"))
    routes.add("sse", "/sse/type/{type}", _factory("type"))
    found = routes.match("/v1/ws")
    assert found is not None and found[0].factory(None, None) == "native" and found[1] == {}
    found = routes.match("/ws/slot%3Aone")
    assert found is not None and found[1] == {"game": "slot:one"}
    assert routes.match("/v1/ws/extra") is None
    assert routes.match("/nope") is None


def test_an_earlier_parameterised_route_keeps_precedence_over_a_later_static_one() -> None:
    routes = StreamRoutes()
    routes.add("ws", "/ws/{game}", _factory("game"))
    routes.add("sse", "/ws/type", _factory("static"))
    found = routes.match("/ws/type")
    assert found is not None and found[0].kind == "ws" and found[1] == {"game": "type"}


def test_the_first_of_two_equal_static_paths_wins() -> None:
    routes = StreamRoutes()
    routes.add("ws", "/a", _factory("first"))
    routes.add("sse", "/a", _factory("second"))
    found = routes.match("/a")
    assert found is not None and found[0].factory(None, None) == "first"
