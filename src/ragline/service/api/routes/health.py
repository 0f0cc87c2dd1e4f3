"""Operations: /healthz (the process answers), /readyz (its dependencies do), /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ragline.service.api.routes._common import service
from ragline.service.api.schemas import Problem

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": Problem}})
async def readyz(request: Request) -> JSONResponse:
    checks = await service(request).readiness()
    ok = all(c["status"] == "ok" for c in checks.values() if c.get("required"))
    body = {"status": "ok" if ok else "unavailable", "dependencies": checks}
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
