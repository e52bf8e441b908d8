"""Serve the dashboard page at ``/`` and its assets under ``/static/`` from the package.

Only the files shipped in ``wagerwire/dashboard/static`` are served (the set is read once at
import, so no path from a request ever reaches the file system). None of these routes is part
of the OpenAPI document, and none needs credentials (``api.auth.PUBLIC_PATHS``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, Path
from starlette.responses import Response

from wagerwire.api.feature import Feature
from wagerwire.config import Settings
from wagerwire.core.hub import Hub
from wagerwire.errors import NotFound

__all__ = ["CONTENT_SECURITY_POLICY", "dashboard_feature", "router"]

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""Everything the page uses comes from the hub itself; nothing from the internet."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    folder = resources.files(__package__ or "wagerwire.dashboard").joinpath("static")
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[entry.name] = Asset(body, _TYPES[suffix], etag)
    return assets


ASSETS = _load_assets()


def _serve(name: str, if_none_match: str | None) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound(f"no dashboard asset {name!r}")
    headers = {
        "cache-control": "no-cache",
        "etag": asset.etag,
        "x-content-type-options": "nosniff",
    }
    if asset.media_type.startswith("text/html"):
        headers["content-security-policy"] = CONTENT_SECURITY_POLICY
        headers["referrer-policy"] = "no-referrer"
    if if_none_match is not None and asset.etag in if_none_match:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def dashboard(
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return _serve("index.html", if_none_match)


@router.get("/static/{name}")
async def static_asset(
    name: Annotated[str, Path(max_length=100)],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return _serve(name, if_none_match)


def dashboard_feature(settings: Settings | None = None, hub: Hub | None = None) -> Feature:
    """The dashboard's routes (always on)."""
    return Feature(routers=[router])
