"""Schemathesis over the server's own ``/openapi.json``: every operation, generated requests.

A real ``wagerwire serve`` (open mode, demo simulators on, so games, rounds, events and odds
exist) on 127.0.0.1; schemathesis reads the schema the server publishes and sends generated
requests, valid and invalid, to every operation. Each response must not be a 5xx and must
match the schema the server documents for its status (body and content type). Bounded:
``MAX_EXAMPLES`` per operation (half valid, half invalid requests on average), no shrinking.

Findings it made are pinned as plain regression tests at the end of this file.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from serverproc import ServerProcess
from wagerwire.auth.keys import KeyStore

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("schemathesis"), ["--demo", "--demo-speed", "20"])
    store = KeyStore(str(srv.db))
    try:
        srv.keys = {role: store.create(role, "internal", user)[1]
                    for role, user in (("admin", None), ("reader", "demo-1"))}
    finally:
        store.close()
    srv.start(0)
    deadline = time.monotonic() + 30
    while httpx.get(srv.url + "/v1/games/crash/rounds", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the demo published no crash round"
        time.sleep(0.2)
    try:
        yield srv
    finally:
        srv.kill()


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz_operation(
    operation: Any, base_url: str, session: requests.Session, headers: dict[str, str] | None = None
) -> None:
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers,
                               checks=CHECKS, timeout=10)

    run()


def _fuzz_all(
    operations: list[Any], base_url: str, headers: Callable[[Any], dict[str, str] | None]
) -> Counter[int]:
    """Run every operation; fail with every finding at once; return the statuses seen."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()

    def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        statuses[response.status_code] += 1

    with requests.Session() as session:
        session.hooks["response"].append(count)
        for operation in operations:
            try:
                _fuzz_operation(operation, base_url, session, headers(operation))
            except Exception as exc:  # every finding is reported below
                failures.append(f"{operation.label}: {type(exc).__name__}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
    # Operations without parameters have few distinct requests; hypothesis stops early there.
    assert sum(statuses.values()) >= len(operations) * 2, statuses
    return statuses


def _successes(statuses: Counter[int]) -> int:
    return sum(n for code, n in statuses.items() if code < 300)


@pytest.mark.timeout(300)
def test_every_operation_answers_within_its_schema(demo_server: ServerProcess) -> None:
    """Valid and invalid generated requests to every operation: no 5xx, documented bodies."""
    operations = _operations(demo_server.url)
    assert len(operations) >= 20, [op.label for op in operations]
    statuses = _fuzz_all(operations, demo_server.url, lambda op: None)
    # Both kinds of request reached the handlers: successes and refusals.
    assert _successes(statuses) > len(operations), statuses
    assert sum(n for code, n in statuses.items() if 400 <= code < 500) > len(operations), statuses


# Anonymous callers only get 401/403 here; with keys, the handlers themselves are reached.
KEYED = {"/v1/keys": "admin", "/v1/tokens": "admin", "/_api/graphql": "reader"}


def _key_for(operation: Any, keys: dict[str, str]) -> dict[str, str]:
    role = next(r for prefix, r in KEYED.items() if operation.path.startswith(prefix))
    return {"Authorization": f"Bearer {keys[role]}", "x-access-token": keys[role]}


@pytest.mark.timeout(120)
def test_key_operations_answer_within_their_schema_with_keys(demo_server: ServerProcess) -> None:
    keys: dict[str, str] = demo_server.keys
    keyed = [op for op in _operations(demo_server.url)
             if any(op.path.startswith(prefix) for prefix in KEYED)]
    assert len(keyed) >= 5, [op.label for op in keyed]
    statuses = _fuzz_all(keyed, demo_server.url, lambda op: _key_for(op, keys))
    assert _successes(statuses) >= 2, statuses  # at least the listing and one token


def test_schema_lists_every_operation(demo_server: ServerProcess) -> None:
    """The run above covers what the schema lists; this pins that list's size."""
    spec = httpx.get(demo_server.url + "/openapi.json", timeout=10).json()
    operations = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) >= 20, operations


# --------------------------------------------------------------------------- findings, pinned


@pytest.mark.parametrize("param", ["since", "until", "since_index", "until_index"])
@pytest.mark.parametrize("path", ["/v1/games/crash/stats", "/v1/games/crash/rounds"])
def test_window_bounds_past_64_bits_are_refused_not_a_500(
    demo_server: ServerProcess, path: str, param: str
) -> None:
    """Found by schemathesis: ``stats?since=10**23`` echoed the bound and failed to encode."""
    response = httpx.get(f"{demo_server.url}{path}?{param}={10**23}", timeout=10)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "bad_parameter"
    ok = httpx.get(f"{demo_server.url}{path}?{param}={2**63 - 1}", timeout=10)
    assert ok.status_code in {200, 422}, ok.text  # 422 only for since > until style checks


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("OPTIONS", "/v1/keys", {"GET", "POST"}), ("PUT", "/v1/keys", {"GET", "POST"}),
     ("DELETE", "/v1/channels", {"GET"}), ("GET", "/v1/publish", {"POST"})],
)
def test_405_allow_lists_every_method_of_the_path(
    demo_server: ServerProcess, method: str, path: str, allowed: set[str]
) -> None:
    """Found by schemathesis (unsupported-method check): ``OPTIONS /v1/keys`` answered
    ``Allow: POST`` although GET is served there too (RFC 9110 §15.5.6)."""
    response = httpx.request(method, demo_server.url + path, timeout=10)
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    listed = {m.strip() for m in response.headers["allow"].split(",")}
    assert listed - {"HEAD"} == allowed, response.headers["allow"]
