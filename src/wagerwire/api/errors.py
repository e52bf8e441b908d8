"""Every REST error becomes ``{"error":{"code","message"}}`` with its documented status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from wagerwire.api.responses import JsonResponse
from wagerwire.errors import (
    BadParameter,
    ClientError,
    MalformedJson,
    MethodNotAllowed,
    NotFound,
    WagerwireError,
)

__all__ = ["install_error_handlers", "render_error"]


def render_error(error: WagerwireError, extra: dict[str, str] | None = None) -> Response:
    headers = dict(extra or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return JsonResponse(error.to_json(), status_code=error.status, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str | None:
    """Every method some route serves on this path. Starlette's 405 names only the first
    matching route's methods (``OPTIONS /v1/keys`` said ``Allow: POST`` on a GET+POST path);
    asking each route about each method uses nothing but the public ``matches``."""
    routes = request.app.router.routes
    allowed = [
        method for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
               for route in routes)
    ]  # fmt: skip
    return ", ".join(allowed) or None


def _describe(exc: RequestValidationError) -> WagerwireError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedJson("request body is not valid JSON")
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return BadParameter("; ".join(parts) or "invalid request")


def _counted(request: Request, error: WagerwireError) -> WagerwireError:
    """Count the answered error by code for /metrics (when the app has Services)."""
    svc = getattr(request.app.state, "services", None)
    errors = getattr(svc, "errors", None)
    if errors is not None:
        errors[error.code] += 1
    return error


def install_error_handlers(app: FastAPI) -> None:
    async def wagerwire_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WagerwireError)
        return render_error(_counted(request, exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render_error(_counted(request, _describe(exc)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: WagerwireError
        if exc.status_code == 404:
            error = NotFound(f"no route {request.method} {request.url.path}")
        elif exc.status_code == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        else:
            error = ClientError(str(exc.detail))
            error.status = exc.status_code
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            if allowed is not None:
                headers["Allow"] = allowed
        return render_error(_counted(request, error), headers)

    app.add_exception_handler(WagerwireError, wagerwire_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
