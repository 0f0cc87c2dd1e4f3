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

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidInput, RaglineError
from ..models import Answer
from ..observability import request_id_var
from .auth import Principal
from .deps import QueryCaller
from .schemas import ChatRequest


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
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "sources": sources(answer), "degraded": answer.degraded,
    }


def chunk(completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None,
          **extra: Any) -> str:
    body = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body)}\n\n"


def install(app: FastAPI) -> None:
    @app.post("/v1/chat/completions", tags=["answers"], responses={200: {"content": {"text/event-stream": {}}}})
    async def chat_completions(body: ChatRequest, request: Request, who: QueryCaller) -> Any:
        engine = request.app.state.engine
        question = question_of(body)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if not body.stream:
            started = time.perf_counter()
            gateway = request.app.state.gateway
            if gateway is not None:  # through the pipeline, like /v1/query
                answer = await gateway.ask(_bus_query(request, question, who))
            else:
                answer = await engine.ask(question, who.tenant)
            request.app.state.metrics.observe_answer(answer, time.perf_counter() - started)
            return completion(answer, completion_id, body.model)
        return StreamingResponse(_events(request, question, who, completion_id, body.model),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _bus_query(request: Request, question: str, who: Principal):
    return request.app.state.gateway.query(question, who.tenant, request.app.state.settings.answer_top_k,
                                           request_id=request_id_var.get())


async def _events(request: Request, question: str, who: Principal, completion_id: str,
                  model: str) -> AsyncIterator[str]:
    yield chunk(completion_id, model, {"role": "assistant", "content": ""})
    started = time.perf_counter()
    gateway = request.app.state.gateway
    try:
        items = (gateway.stream(_bus_query(request, question, who)) if gateway is not None
                 else request.app.state.engine.stream(question, who.tenant))
        async for item in items:
            if isinstance(item, Answer):
                request.app.state.metrics.observe_answer(item, time.perf_counter() - started)
                yield chunk(completion_id, model, {}, "stop", sources=sources(item), degraded=item.degraded)
            else:
                yield chunk(completion_id, model, {"content": item})
    except RaglineError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': type(exc).__name__}})}\n\n"
    yield "data: [DONE]\n\n"
