"""The FastAPI application: routers, error handlers and the docs page, wired in one place."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Depends, FastAPI
from starlette.responses import HTMLResponse

from wagerwire.api import auth, channels, system, tls
from wagerwire.api.deps import Services
from wagerwire.api.docs import render_docs
from wagerwire.api.errors import install_error_handlers

__all__ = ["create_api"]

DESCRIPTION = (
    "REST side of wagerwire: snapshots, history and publish. Streams are WebSocket /v1/ws "
    "and SSE /v1/sse (see the README for their protocol)."
)


def create_api(svc: Services, extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    """Build the REST app; ``extra_routers`` come from optional features (domain, auth)."""
    app = FastAPI(
        title="wagerwire",
        version="1.0",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        dependencies=[Depends(auth.rest_guard)],
    )
    app.state.services = svc
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(channels.router)
    app.include_router(auth.router)
    app.include_router(tls.router)
    for router in extra_routers:
        app.include_router(router)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(render_docs(app.openapi()))

    return app
