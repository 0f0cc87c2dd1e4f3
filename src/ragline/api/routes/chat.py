"""POST /v1/chat/completions: OpenAI's chat API answered by RAG, so OpenAI clients work unchanged.

The last user message is the question; the answer's sources ride in an extra
``sources`` field (of the response, or of the last chunk when streaming).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...errors import InvalidInput, RaglineError
from ...models import Answer, Query
from ..deps import QueryCaller
from ..schemas import ChatRequest
from ._common import answerer, make_query


def question_of(body: ChatRequest) -> str:
    for message in reversed(body.messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            if content and content.strip():
                return content.strip()
    raise InvalidInput("messages: no user message with text content")


def sources(answer: Answer) -> list[dict[str, Any]]:
    return [c.model_dump(include={"number", "chunk_id", "document_id"}) for c in answer.citations]


def completion(answer: Answer, completion_id: str, model: str) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "sources": sources(answer),
        "degraded": answer.degraded,
    }


def chunk(completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


router = APIRouter(tags=["answers"])


@router.post("/v1/chat/completions", responses={200: {"content": {"text/event-stream": {}}}})
async def chat_completions(body: ChatRequest, request: Request, who: QueryCaller) -> Any:
    q = make_query(request, question_of(body), who.tenant, None, default_top_k=request.app.state.settings.answer_top_k)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        started = time.perf_counter()
        answer = await answerer(request).ask(q)
        request.app.state.metrics.observe_answer(answer, time.perf_counter() - started)
        return completion(answer, completion_id, body.model)
    return StreamingResponse(
        _events(request, q, completion_id, body.model),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _events(request: Request, q: Query, completion_id: str, model: str) -> AsyncIterator[str]:
    yield chunk(completion_id, model, {"role": "assistant", "content": ""})
    started = time.perf_counter()
    try:
        async for item in answerer(request).stream(q):
            if isinstance(item, Answer):
                request.app.state.metrics.observe_answer(item, time.perf_counter() - started)
                yield chunk(completion_id, model, {}, "stop", sources=sources(item), degraded=item.degraded)
            else:
                yield chunk(completion_id, model, {"content": item})
    except RaglineError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': type(exc).__name__}})}\n\n"
    yield "data: [DONE]\n\n"


@router.get("/v1/models")
async def models(request: Request, who: QueryCaller) -> dict[str, Any]:
    """OpenAI's model list, so chat front ends (Open WebUI, LibreChat) can connect."""
    return {
        "object": "list",
        "data": [
            {
                "id": "ragline",
                "object": "model",
                "created": 0,
                "owned_by": f"ragline ({answerer(request).generator_name})",
            }
        ],
    }
