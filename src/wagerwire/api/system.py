"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse

__all__ = ["router"]

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Response:
    return JsonResponse({"status": "ok"})


@router.get("/readyz", response_model=Health, summary="Readiness (store and broker usable)",
            responses={503: {"model": Health}})
async def readyz(svc: Annotated[Services, Depends(services)]) -> Response:
    if svc.ready:
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "not_ready"}, status_code=503)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(svc: Annotated[Services, Depends(services)]) -> Response:
    stats = svc.hub.stats
    lines = [
        "# TYPE wagerwire_published_total counter",
        f"wagerwire_published_total {stats.published}",
        "# TYPE wagerwire_duplicates_total counter",
        f"wagerwire_duplicates_total {stats.duplicates}",
        "# TYPE wagerwire_delivered_total counter",
        f"wagerwire_delivered_total {stats.delivered}",
        "# TYPE wagerwire_replayed_total counter",
        f"wagerwire_replayed_total {stats.replayed}",
        "# TYPE wagerwire_frames_encoded_total counter",
        f"wagerwire_frames_encoded_total {stats.encoded}",
        "# TYPE wagerwire_subscribers gauge",
        f"wagerwire_subscribers {svc.hub.subscriber_count}",
        "# HELP wagerwire_asyncio_tasks asyncio tasks alive in this process (a leak shows here)",
        "# TYPE wagerwire_asyncio_tasks gauge",
        f"wagerwire_asyncio_tasks {len(asyncio.all_tasks())}",
        "# TYPE wagerwire_uptime_seconds gauge",
        f"wagerwire_uptime_seconds {time.time() - svc.started_at:.0f}",
    ]
    if svc.slow_consumers is not None:
        lines.append("# TYPE wagerwire_slow_consumer_disconnects_total counter")
        lines.append(f"wagerwire_slow_consumer_disconnects_total {svc.slow_consumers()}")
    if svc.connection_counts is not None:
        lines.append("# TYPE wagerwire_connections gauge")
        for kind, n in sorted(svc.connection_counts().items()):
            lines.append(f'wagerwire_connections{{transport="{kind}"}} {n}')
    return PlainTextResponse("\n".join(lines) + "\n",
                             media_type="text/plain; version=0.0.4")
