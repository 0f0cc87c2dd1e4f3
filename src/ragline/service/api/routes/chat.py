"""POST /v1/chat/completions and GET /v1/models: OpenAI's chat API answered by RAG, so
OpenAI clients and chat front ends (Open WebUI, LibreChat) work unchanged.

The whole conversation is used. The question retrieved for is the last user message,
made standalone by a documented rule when it is a follow-up: if it has fewer than four
content words or refers back ("and ...", "what about ...", it/its/they/this/that...),
retrieval searches for the previous user message and it together ("Which database does
ragline use?" + "and which port does it listen on?"), and the answer is to the
follow-up, with the earlier question shown to the LLM. System messages become the prompt's extra
instructions (after ragline's grounding rules). ``usage`` counts tokens with the
embedding model's WordPiece tokenizer (the LLM's own tokenizer is not known here).
The answer's sources (with each passage's text and page) ride in an extra ``sources``
field (of the response, or of the last chunk when streaming), with ``grounded``,
``grounding`` (sentence by sentence), ``degraded_reason`` and ``answered_by``; when a
streamed LLM answer was replaced for want of support, ``replaced_text`` is the answer.
"""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ragline.core.errors import InvalidInput, RaglineError
from ragline.core.models import Answer, Query
from ragline.core.text import content_words
from ragline.service.api.deps import QueryCaller
from ragline.service.api.routes._common import make_query, service
from ragline.service.api.schemas import ChatMessage, ChatRequest

_REFERS_BACK = re.compile(
    r"^\s*(and|but|also|so|then|what about|how about)\b|\b(it|its|they|them|their|this|that|these|those|there)\b",
    re.IGNORECASE,
)


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, list):
        content = " ".join(p.text or "" for p in content if p.type == "text")
    return (content or "").strip()


def question_of(body: ChatRequest) -> tuple[str, str | None]:
    """The last user message and, when it is a follow-up (see the module doc), the
    earlier question it continues."""
    asked = [t for m in body.messages if m.role == "user" and (t := _text(m))]
    if not asked:
        raise InvalidInput("messages: no user message with text content")
    last = asked[-1]
    if len(asked) > 1 and (len(content_words(last)) < 4 or _REFERS_BACK.search(last)):
        return last, asked[-2]
    return last, None


def instructions_of(body: ChatRequest) -> str | None:
    text = "\n".join(t for m in body.messages if m.role in ("system", "developer") and (t := _text(m)))
    return text[:4000] or None


def count_tokens(text: str) -> int:
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


@functools.cache
def _tokenizer() -> Any:
    from ragline.adapters.embedders.minilm import load_tokenizer

    tokenizer = load_tokenizer()
    tokenizer.no_truncation()
    return tokenizer


def sources(answer: Answer) -> list[dict[str, Any]]:
    return [c.model_dump(exclude_none=True) for c in answer.citations]


def extras(answer: Answer) -> dict[str, Any]:
    """ragline's fields beside OpenAI's: sources (with passage text and page), the short
    answer and its evidence, whether the evidence answers the question (and how sure),
    why there is no answer (with the related passages), grounding sentence by sentence,
    and what answered (the LLM or the extractive answerer) and why."""
    return {
        "sources": sources(answer),
        "short_answer": answer.short_answer,
        "evidence": [e.model_dump(exclude_none=True) for e in answer.evidence],
        "confidence": answer.confidence,
        "answers_question": answer.answers_question,
        "refusal": answer.refusal,
        "related": [c.model_dump(exclude_none=True) for c in answer.related],
        "grounded": answer.grounded,
        "grounding": [g.model_dump() for g in answer.grounding],
        "degraded": answer.degraded,
        "degraded_reason": answer.degraded_reason,
        "answered_by": answer.model,
    }


def usage(body: ChatRequest, answer: Answer) -> dict[str, int]:
    prompt = sum(count_tokens(_text(m)) for m in body.messages)
    completion_tokens = count_tokens(answer.text)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens, "total_tokens": prompt + completion_tokens}


def completion(answer: Answer, completion_id: str, model: str, counted: dict[str, int]) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text}, "finish_reason": "stop"}],
        "usage": counted,
        **extras(answer),
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
    question, follows = question_of(body)
    q = make_query(
        request,
        question,
        who.tenant,
        None,
        default_top_k=request.app.state.settings.answer_top_k,
        generator="extractive" if body.model == EXTRACTIVE_MODEL else None,  # any other name: the deployment's
    )
    q = q.model_copy(update={"instructions": instructions_of(body), "follows": follows})
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        started = time.perf_counter()
        answer = await service(request).ask(q)
        request.app.state.metrics.observe_answer(answer, time.perf_counter() - started)
        return completion(answer, completion_id, body.model, usage(body, answer))
    return StreamingResponse(
        _events(request, q, completion_id, body.model),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _events(request: Request, q: Query, completion_id: str, model: str) -> AsyncIterator[str]:
    yield chunk(completion_id, model, {"role": "assistant", "content": ""})
    started = time.perf_counter()
    streamed: list[str] = []
    try:
        async for item in service(request).stream(q):
            if isinstance(item, Answer):
                request.app.state.metrics.observe_answer(item, time.perf_counter() - started)
                more = extras(item)
                if item.text != "".join(streamed).strip():
                    # the streamed LLM text was replaced (unsupported sentences): the answer to show
                    more["replaced_text"] = item.text
                yield chunk(completion_id, model, {}, "stop", **more)
            else:
                streamed.append(item)
                yield chunk(completion_id, model, {"content": item})
    except RaglineError as exc:
        yield f"data: {json.dumps({'error': {'message': str(exc), 'type': type(exc).__name__}})}\n\n"
    yield "data: [DONE]\n\n"


@router.get("/v1/models")
async def models(request: Request, who: QueryCaller) -> dict[str, Any]:
    """OpenAI's model list, so chat front ends (Open WebUI, LibreChat) can connect: ``ragline``
    answers with the deployment's generator; where that is an LLM, ``ragline-extractive``
    answers from the passages' own sentences without it (faster, never made up)."""
    answering = service(request).generator_name
    models = [("ragline", f"ragline ({answering})")]
    if answering != "extractive":
        models.append((EXTRACTIVE_MODEL, "ragline (extractive: the passages' sentences, no LLM)"))
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in models],
    }


EXTRACTIVE_MODEL = "ragline-extractive"
