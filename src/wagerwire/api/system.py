"""Health, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.responses import PlainTextResponse, Response

from wagerwire.api.deps import Services, services
from wagerwire.api.responses import JsonResponse
from wagerwire.observability.metrics import CONTENT_TYPE, NodeMetrics

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
    """The node's registry (observability/metrics.py) in the Prometheus text format."""
    node = svc.metrics
    if node is None:  # an API built without a server (tests): a registry of its own
        node = svc.metrics = NodeMetrics(svc.hub, svc.started_at)
        node.services = svc
    return Response(node.render(), media_type=CONTENT_TYPE)
