"""What the route modules share: the seam, query building, SSE framing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from ragline.core.limits import Limits, check_text
from ragline.core.models import FilterValue, Query, new_query
from ragline.seam import Service
from ragline.service.observability import request_id_var


def service(request: Request) -> Service:
    """What answers behind this API (seam/): the only thing the routes call."""
    return request.app.state.service


def make_query(
    request: Request,
    text: str,
    tenant: str,
    top_k: int | None,
    filters: Mapping[str, FilterValue] | None = None,
    mode: str | None = None,
    default_top_k: int | None = None,
    generator: str | None = None,
) -> Query:
    """A validated query within the limits; its id is the HTTP request's (X-Request-ID)."""
    settings = request.app.state.settings
    limits: Limits = request.app.state.limits
    check_text(text, "question")
    limits.check_filters(filters)
    request_id = request_id_var.get()
    return new_query(
        text=text,
        tenant=tenant,
        top_k=top_k or default_top_k or settings.top_k,
        filters=dict(filters or {}),
        mode=mode,
        generator=generator,
        **({"request_id": request_id} if request_id else {}),
    )


def sse(event: str, data: Any) -> str:
    payload = data.model_dump_json() if hasattr(data, "model_dump_json") else json.dumps(data)
    return f"event: {event}\ndata: {payload}\n\n"


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as JSON, serialised once by pydantic's Rust encoder. Returned as a
    Response, FastAPI neither validates it again against the route's response_model
    (which still documents it) nor re-encodes it."""
    return Response(model.model_dump_json(), status_code=status_code, media_type="application/json")
