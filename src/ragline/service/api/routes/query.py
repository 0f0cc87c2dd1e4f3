"""POST /v1/query (answers, whole or streamed as server-sent events) and POST /v1/search."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from ragline.core.errors import RaglineError
from ragline.core.models import Answer, Query
from ragline.service.api.deps import QueryCaller
from ragline.service.api.problems import from_error
from ragline.service.api.routes._common import json_response, make_query, service, sse
from ragline.service.api.schemas import QueryRequest, SearchRequest, SearchResponse
from ragline.service.observability import span

router = APIRouter()


@router.post(
    "/v1/query", response_model=Answer, tags=["answers"], responses={200: {"content": {"text/event-stream": {}}}}
)
async def query(body: QueryRequest, request: Request, who: QueryCaller):
    q = make_query(
        request,
        body.question,
        who.tenant,
        body.top_k,
        body.filters,
        body.mode,
        default_top_k=request.app.state.settings.answer_top_k,
        generator=body.generator,
    )
    if body.stream:
        return StreamingResponse(
            _answer_events(request, q),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    metrics = request.app.state.metrics
    started = time.perf_counter()
    with metrics.inflight.track_inprogress(), span("POST /v1/query", kind="server", tenant=who.tenant):
        answer = await service(request).ask(q)
    metrics.observe_answer(answer, time.perf_counter() - started)
    return json_response(answer)


@router.post("/v1/search", response_model=SearchResponse, tags=["retrieval"])
async def search(body: SearchRequest, request: Request, who: QueryCaller) -> Response:
    q = make_query(request, body.query, who.tenant, body.top_k, body.filters, body.mode)
    context = await service(request).search(q)
    return json_response(
        SearchResponse(hits=context.hits, mode=context.mode, notice=context.notice, timings_ms=context.timings_ms)
    )


async def _answer_events(request: Request, q: Query) -> AsyncIterator[str]:
    """SSE: `token` events as text arrives, then `answer`; an `error` event if it fails midway."""
    metrics = request.app.state.metrics
    started = time.perf_counter()
    metrics.inflight.inc()
    try:
        async for item in service(request).stream(q):
            if isinstance(item, Answer):
                metrics.observe_answer(item, time.perf_counter() - started)
                yield sse("answer", item)
            else:
                yield sse("token", {"text": item})
    except RaglineError as exc:
        yield sse("error", json.loads(bytes(from_error(exc).body)))
    finally:
        metrics.inflight.dec()
