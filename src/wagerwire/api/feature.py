"""``Feature``: one optional part (domain REST, dashboard, demo sources, dialects) of a node.

Producers (``api/domain.py``, ``dashboard/``, ``node/dialects.py``) build features; the
composition root (:mod:`wagerwire.node`) plugs them in. This module imports nothing at run
time, so a producer never imports the composition root.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from fastapi import APIRouter

    from wagerwire.api.deps import Services
    from wagerwire.core.hub import Hub

__all__ = ["Feature"]


@dataclass(slots=True)
class Feature:
    """An optional part (domain REST, demo sources, dialects) plugged into the server."""

    routers: list[APIRouter] = field(default_factory=list)
    stream_routes: list[tuple[Literal["ws", "sse"], str, Any]] = field(default_factory=list)
    sources: list[Any] = field(default_factory=list)
    on_start: list[Callable[[Hub, Services], None]] = field(default_factory=list)
    #: Awaited once the server's streams are closed, before the hub closes.
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
