"""The REST API documents itself: OpenAPI 3.1 at /openapi.json, a self-contained /docs page.

Every route the FastAPI app serves is in the OpenAPI document (and nothing documented is
missing from the app); every documented operation answers on the running server; /docs is
one HTML page that names every path and fetches nothing from any other host.
"""

from __future__ import annotations

import importlib.util
import re
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from wagerwire.api.application import create_api
from wagerwire.api.deps import Services
from wagerwire.config import load_settings
from wagerwire.node.features import default_features
from wagerwire.node.server import build_hub

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Serve the docs and the dashboard page, so not API routes documented themselves.
DOC_ENDPOINTS = {"/openapi.json", "/docs", "/", "/static/{name}"}
# the native API; seed-dialect routes (/v1-beta, /v2, /api, ...) answer in their seed's format
NATIVE = re.compile(r"/v1/|/healthz$|/readyz$|/metrics$")
_TLS = ssl.create_default_context()


def _client(server: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=10, verify=_TLS)


def _app(directory: Path) -> Any:
    """The REST app as ``wagerwire serve --no-demo`` builds it (the hub is never started)."""
    settings = load_settings({"demo": False, "store": f"sqlite:///{directory}/docs.db"},
                             environ={})
    hub = build_hub(settings)
    routers = [r for feature in default_features(settings, hub) for r in feature.routers]
    return create_api(Services(hub, 0.0), routers)


def _served(routes: Iterable[Any], prefix: str = "", schema: bool = True
            ) -> Iterator[tuple[str, str, bool]]:
    """(path, METHOD, in_schema) of every route, through included routers and mounts."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI keeps included routers as branches
            ctx = route.include_context
            yield from _served(route.original_router.routes, prefix + ctx.prefix,
                               schema and ctx.include_in_schema)
        elif hasattr(route, "methods") and hasattr(route, "path"):
            for method in route.methods or ():
                if method != "HEAD":
                    yield (prefix + route.path, method,
                           schema and bool(getattr(route, "include_in_schema", True)))
        elif hasattr(route, "routes"):  # a Mount
            yield from _served(route.routes, prefix + route.path, schema)
        else:
            raise AssertionError(f"route of unknown kind: {route!r}")


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _app(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ``wagerwire serve --no-demo`` for the module (the docs are read-only)."""
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("_wagerwire_root_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    srv = module.ServerProcess(tmp_path_factory.mktemp("docs"))
    srv.start(0)
    yield srv
    srv.kill()


def test_openapi_document_is_3_1(server: Any) -> None:
    with _client(server) as http:
        r = http.get("/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    spec = r.json()
    assert re.fullmatch(r"3\.1\.\d+", spec["openapi"]), spec["openapi"]
    assert spec["info"]["title"] == "wagerwire" and spec["info"]["version"]
    assert spec["paths"], "no paths documented"
    # the streaming endpoints are not REST operations, but the document points to them
    assert "/v1/ws" in spec["info"]["description"]
    assert "/v1/sse" in spec["info"]["description"]


def test_every_route_is_documented_and_every_documented_route_exists(app: Any) -> None:
    served = set(_served(app.routes))
    in_schema = {(path, method) for path, method, schema in served if schema}
    hidden = {path for path, _, schema in served if not schema}
    assert hidden <= DOC_ENDPOINTS, f"REST routes left out of the OpenAPI document: {hidden}"
    assert _documented(app.openapi()) == in_schema


def test_running_server_documents_the_same_routes(server: Any, app: Any) -> None:
    with _client(server) as http:
        spec = http.get("/openapi.json").json()
    assert _documented(spec) == _documented(app.openapi())
    for path in ("/healthz", "/metrics", "/v1/channels", "/v1/channels/{channel}/messages",
                 "/v1/publish"):
        assert path in spec["paths"], path  # the Native API v1 contract (DESIGN.md)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_openapi_is_well_formed(app: Any) -> None:
    spec = app.openapi()
    schemas = spec.get("components", {}).get("schemas", {})
    for ref in set(_refs(spec)):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[-1] in schemas, f"dangling $ref {ref}"
    operation_ids = []
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        declared = set(re.findall(r"\{(\w+)\}", path))
        for method, op in item.items():
            assert method in HTTP_METHODS, (path, method)
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            assert op.get("responses"), f"{method.upper()} {path} documents no response"
            operation_ids.append(op["operationId"])
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == declared, (path, in_path)
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d|default", status), (path, status)
                assert response.get("description"), (path, status)
    assert len(operation_ids) == len(set(operation_ids)), "duplicate operationId"


def test_error_responses_document_the_error_body(app: Any) -> None:
    """Every documented 4xx/5xx answer of the native API is ``{"error":{"code","message"}}``
    (ErrorResponse), never FastAPI's default ``HTTPValidationError`` it does not send."""
    spec = app.openapi()
    wrong = []
    for path, item in spec["paths"].items():
        if not NATIVE.match(path):
            continue
        for method, op in item.items():
            for status, response in op["responses"].items():
                if not status.startswith(("4", "5")) or path == "/readyz":
                    continue  # /readyz answers 503 with its Health body on purpose
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema != {"$ref": "#/components/schemas/ErrorResponse"}:
                    wrong.append(f"{method.upper()} {path} {status}: {schema}")
    assert not wrong, "error responses without the error schema:\n" + "\n".join(wrong)


def _sample(param: dict[str, Any]) -> str:
    schema = param.get("schema", {})
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])}
    if kinds & {"integer", "number"}:
        return str(max(1, schema.get("minimum", 1)))
    if "boolean" in kinds:
        return "true"
    return "x"


def test_every_documented_operation_answers_on_the_server(server: Any) -> None:
    """Each documented path is routed (no "no route" 404, no 405) with sample parameters."""
    with _client(server) as http:
        ack = http.post("/v1/publish", json={"channel": "game:docs-sample", "data": {"x": 1}})
        assert ack.status_code == 200, ack.text
        spec = http.get("/openapi.json").json()
        for path, item in spec["paths"].items():
            for method, op in item.items():
                url = path
                query = {}
                for param in op.get("parameters", []):
                    value = "game:docs-sample" if param["name"] == "channel" else _sample(param)
                    if param["in"] == "path":
                        url = url.replace("{" + param["name"] + "}", value)
                    elif param["in"] == "query" and param.get("required"):
                        query[param["name"]] = value
                body = {"json": {}} if "requestBody" in op else {}
                r = http.request(method.upper(), url, params=query, **body)
                label = f"{method.upper()} {url}"
                assert r.status_code != 405, label
                if r.status_code == 404:
                    assert "no route" not in r.text, label
                assert r.status_code < 500, (label, r.text)
                if not NATIVE.match(path):
                    continue
                if method == "get" and not re.search(r"\{\w+\}", path):
                    assert r.status_code in (200, 401, 403), (label, r.status_code, r.text)
                documented = set(op["responses"])
                assert str(r.status_code) in documented or "default" in documented or (
                    r.status_code == 422 and body
                ), (label, r.status_code, documented)


def test_docs_page_is_self_contained_html_naming_every_path(server: Any) -> None:
    with _client(server) as http:
        r = http.get("/docs")
        spec = http.get("/openapi.json").json()
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert html.lstrip().lower().startswith("<!doctype html")
    for path, item in spec["paths"].items():
        assert path in html, f"/docs does not mention {path}"
        for op in item.values():
            if op.get("summary"):
                assert op["summary"] in html or op["summary"].replace("'", "&#x27;") in html
    assert "/openapi.json" in html
    assert "/v1/ws" in html and "/v1/sse" in html
    # nothing is fetched from another host: no absolute URL except to 127.0.0.1/localhost,
    # no protocol-relative URL, no external script, stylesheet, font or image
    for url in re.findall(r"(?:https?:)?//[^\s\"'<>)]*", html):
        host = re.sub(r"^(?:https?:)?//", "", url).split("/")[0].split(":")[0]
        assert host in ("127.0.0.1", "localhost"), f"/docs refers to another host: {url}"
    lowered = html.lower()
    assert "<script src" not in lowered and not re.search(r"<script[^>]*\bsrc\s*=", lowered)
    assert not re.search(r"<link[^>]*rel\s*=\s*['\"]?stylesheet[^>]*href\s*=\s*['\"]?(https?:)?//",
                         lowered)
    assert "@import" not in lowered
    assert not re.search(r"<(img|iframe|embed|object|source)\b", lowered)


def test_docs_endpoints_reject_other_methods(server: Any) -> None:
    with _client(server) as http:
        for path in ("/docs", "/openapi.json"):
            r = http.post(path)
            assert r.status_code == 405, (path, r.status_code)
            assert r.json()["error"]["code"] == "method_not_allowed"
