"""The generate stage: a question and its context in, a grounded answer out.

The same code runs in a unit test, in the embedded engine and in a bus worker; the
retrieve and ingest stages are in stages.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ragline.core.errors import RaglineError
from ragline.core.grounding import citations_from, ground
from ragline.core.models import (
    Answer,
    Citation,
    Context,
    Evidence,
    Hit,
    Passage,
    Query,
    Reading,
)
from ragline.core.ports import AnswerMemo, Fallback, Generator
from ragline.core.prompting import NOT_ANSWERED, NOTHING_RELEVANT, Prompt, build_prompt, says_it_does_not_know
from ragline.core.text import content_words

_log = logging.getLogger("ragline.stages")


_REWRITE = (
    "You rewrite a follow-up question from a conversation as one standalone question that "
    "names what it refers to. Reply with the rewritten question only."
)


async def standalone(query: Query, generator: Generator, timeout_s: float) -> Query:
    """A follow-up made standalone by the LLM ("Where is it performed?" after "What is the
    waggle dance?" -> "Where is the waggle dance performed?"). Kept only when it is one
    question that holds words of the follow-up and of the earlier question that the
    follow-up lacked; otherwise (or on any LLM failure) the query is unchanged and the
    documented rule applies (retrieval searches both questions)."""
    if not query.follows:
        return query
    user = f"Earlier question: {query.follows}\nFollow-up: {query.text}\nStandalone question:"
    prompt = Prompt(question=query.text, passages=(), system=_REWRITE, tenant=query.tenant, user=user)
    try:
        text = await asyncio.wait_for(generator.generate(prompt, 48), timeout_s)
    except (RaglineError, TimeoutError):
        return query
    rewritten = " ".join(text.strip().splitlines()[:1]).strip().strip('"')
    words = set(content_words(rewritten))
    asked = set(content_words(query.text))
    resolved = set(content_words(query.follows)) - asked
    if not (10 <= len(rewritten) <= 300 and words & asked and words & resolved):
        _log.info("LLM rewrite of a follow-up rejected (%r); the rule applies", rewritten[:120])
        return query
    _log.info("follow-up %r rewritten by the LLM as %r", query.text[:120], rewritten)
    return query.model_copy(update={"text": rewritten, "follows": None})


@dataclass(frozen=True)
class Answering:
    """What the generate stage needs: the LLM, its fallback and their limits."""

    generator: Generator
    fallback: Fallback
    max_tokens: int = 192
    budget_tokens: int = 1800
    min_relevance: float = 0.22
    timeout_s: float = 30.0
    answers: AnswerMemo | None = None
    metrics: Any = None  # observability.Metrics: LLM outcome, time to first token
    # An LLM answer with a sentence no passage supports: replaced by the extractive
    # answer (True) or returned flagged, grounded=False (False).
    replace_ungrounded: bool = True

    @property
    def is_extractive(self) -> bool:
        return self.generator.name == "extractive"


async def _prompt_for(context: Context, answering: Answering) -> tuple[Prompt | None, Reading | None]:
    """The grounded prompt and the answerer's reading of it (None, None: nothing relevant).

    Two gates, both cheap: some passage must be similar enough to the question (else
    nothing relevant was found), and the reading's calibrated confidence that its best
    sentence answers the question must reach the threshold (else related passages were
    found that do not answer it). Below them the answer is a refusal saying which,
    without asking the LLM, which small models would answer by invention.
    """
    relevant = [h for h in context.hits if _similarity(h) >= answering.min_relevance]
    if not relevant:
        return None, None
    prompt = dataclasses.replace(
        build_prompt(context.query.text, relevant, answering.budget_tokens),
        tenant=context.query.tenant,
        earlier=context.query.follows or "",
        sentences=context.sentences,
    )
    if context.query.instructions:
        prompt = dataclasses.replace(prompt, system=f"{prompt.system}\n\n{_INSTRUCTIONS}{context.query.instructions}")
    return prompt, await answering.fallback.read(prompt)


_INSTRUCTIONS = "The user's own instructions follow; the rules above come first:\n"


def _similarity(hit: Hit) -> float:
    return hit.score if hit.similarity is None else hit.similarity


async def generate(context: Context, *, answering: Answering) -> Answer:
    """Answer from the context; if the LLM fails or times out, answer extractively and say so."""
    answer: Answer | None = None
    async for item in generate_stream(context, answering=answering, streaming=False):
        if isinstance(item, Answer):
            answer = item
    assert answer is not None
    return answer


async def generate_stream(
    context: Context, *, answering: Answering, streaming: bool = True
) -> AsyncIterator[str | Answer]:
    """Text pieces as they are generated, then the final Answer.

    With ``streaming=False`` the LLM is asked for the whole text at once, which lets an
    OpenAI-compatible generator micro-batch concurrent questions into one request.
    """
    started = time.perf_counter()
    cache_key = None
    if answering.answers is not None:
        cache_key = answering.answers.key(
            context.query.tenant, context.query.retrieval_text, answering.generator.name, context.hits
        )
        cached = await answering.answers.get(cache_key, context.query.request_id)
        if cached is not None:
            yield cached.text
            timings = dict(context.timings_ms, cache=(time.perf_counter() - started) * 1000)
            answer = cached.model_copy(update={"timings_ms": timings})
            _observe(answering, answer)
            yield answer
            return
    prompt, reading = await _prompt_for(context, answering)
    if prompt is None or reading is None or not reading.answers:  # the one place a refusal is decided
        text = NOT_ANSWERED if reading is not None and reading.evidence else NOTHING_RELEVANT
        yield text
        answer = _refusal(context, text, prompt, reading, started)
        _observe(answering, answer)
        yield answer
        return
    pieces: list[str] = []
    asked = time.perf_counter()
    try:
        async for piece in _produce(prompt, answering, streaming):
            if not pieces and answering.metrics is not None and not answering.is_extractive:
                answering.metrics.llm_ttft.observe(time.perf_counter() - asked)
            pieces.append(piece)
            yield piece
        model, reason = answering.generator.name, None
        if answering.is_extractive:
            model = "extractive"
    except (RaglineError, TimeoutError) as exc:
        detail = describe(exc, answering.timeout_s)
        reason = f"LLM failed ({detail}); extractive answer given"
        model = "extractive"
        if pieces:
            reason = f"LLM stream ended after {len(pieces)} pieces: {detail}"
            model = answering.generator.name
        else:
            pieces = [await answering.fallback.answer(prompt)]
            yield pieces[0]
    text = "".join(pieces).strip()
    answer = _answer(context, text, prompt, model, started, reason, reading)
    if answer.grounded is False and answering.replace_ungrounded and model != "extractive":
        answer = await _replace_ungrounded(context, answer, prompt, reading, answering, started)
    if cache_key is not None and answering.answers is not None:
        await answering.answers.put(cache_key, answer, context.hits)
    _observe(answering, answer)
    yield answer


async def _replace_ungrounded(
    context: Context, answer: Answer, prompt: Prompt, reading: Reading, answering: Answering, started: float
) -> Answer:
    """The extractive answer instead of an LLM answer the passages do not support."""
    unsupported = [s for s in answer.grounding if not s.supported]
    reason = (
        f"LLM answer not grounded: {len(unsupported)} of {len(answer.grounding)} sentences are not supported "
        f"by the passages (first: {unsupported[0].sentence[:100]!r}); extractive answer given"
    )
    return _answer(context, await answering.fallback.answer(prompt), prompt, "extractive", started, reason, reading)


def describe(exc: BaseException, timeout_s: float | None = None) -> str:
    """The exception's type and a message that is never empty."""
    if isinstance(exc, TimeoutError) and not str(exc) and timeout_s is not None:
        return f"TimeoutError: LLM timed out after {timeout_s:g} s"
    message = str(exc)
    cause = exc.__cause__ or exc.__context__
    if not message and cause is not None:
        message = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return f"{type(exc).__name__}: {message or 'no detail given'}"


def _observe(answering: Answering, answer: Answer) -> None:
    if answering.metrics is not None:
        answering.metrics.observe_llm(answer)


async def _produce(prompt: Prompt, answering: Answering, streaming: bool) -> AsyncIterator[str]:
    generator, max_tokens = answering.generator, answering.max_tokens
    if streaming:
        async for piece in _bounded(generator.stream(prompt, max_tokens), answering.timeout_s):
            yield piece
    else:
        yield await asyncio.wait_for(generator.generate(prompt, max_tokens), answering.timeout_s)


async def _bounded(stream: AsyncIterator[str], timeout_s: float) -> AsyncIterator[str]:
    """The stream, failing with TimeoutError once ``timeout_s`` have passed in all."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    iterator = aiter(stream)
    try:
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {timeout_s:g}s")
            try:
                yield await asyncio.wait_for(anext(iterator), remaining)
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            # After a cancellation the pending anext() is itself being cancelled, which
            # unwinds the generator (closing its HTTP stream); it cannot be closed twice.
            with contextlib.suppress(RuntimeError):
                await aclose()


def _answer(
    context: Context,
    text: str,
    prompt: Prompt,
    model: str,
    started: float,
    degraded_reason: str | None,
    reading: Reading,
) -> Answer:
    """The answer with its evidence, short answer, confidence, grounding and citations.

    Citations follow one rule: the passages that support the answer's sentences
    (grounding.py), whatever [n] markers a model wrote. An LLM that says it does not
    know gives a refusal (not_answered), with the passages it read as related."""
    if says_it_does_not_know(text):
        return _refusal(context, text, prompt, reading, started, model, degraded_reason)
    timings = dict(context.timings_ms, generate=(time.perf_counter() - started) * 1000)
    supports = ground(text, _with_evidence(prompt, reading))
    by_number = {p.number: p.hit for p in prompt.passages}
    return Answer(
        request_id=context.query.request_id,
        tenant=context.query.tenant,
        text=text,
        citations=[_with_passage(c, prompt) for c in citations_from(supports)],
        short_answer=reading.short,
        evidence=[
            Evidence(
                sentence=s.sentence,
                number=s.number,
                chunk_id=by_number[s.number].chunk_id,
                document_id=by_number[s.number].document_id,
            )
            for s in sorted(reading.evidence, key=lambda s: s.position)
        ],
        confidence=round(reading.confidence, 3),
        answers_question=reading.answers,
        model=model,
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
        timings_ms=timings,
        grounded=all(s.supported for s in supports) if supports else None,
        grounding=supports,
    )


def _with_evidence(prompt: Prompt, reading: Reading) -> list[Passage]:
    """The passages, each with the evidence sentences read from it that its text holds
    only in part (a sentence taken whole from the document past the chunk's edge)."""
    extra: dict[int, list[str]] = defaultdict(list)
    for s in reading.evidence:
        extra[s.number].append(s.sentence)
    out = []
    for passage in prompt.passages:
        more = [t for t in extra.get(passage.number, []) if t not in passage.hit.text]
        if more:
            hit = passage.hit.model_copy(update={"text": " ".join([passage.hit.text, *more])})
            passage = dataclasses.replace(passage, hit=hit)
        out.append(passage)
    return out


def _refusal(
    context: Context,
    text: str,
    prompt: Prompt | None,
    reading: Reading | None,
    started: float,
    model: str = "none",
    degraded_reason: str | None = None,
) -> Answer:
    """No answer, and why: nothing relevant found, or related passages (listed) that do not answer it."""
    timings = dict(context.timings_ms, generate=(time.perf_counter() - started) * 1000)
    related: dict[int, Citation] = {}
    if prompt is not None and reading is not None:
        by_number = {p.number: p.hit for p in prompt.passages}
        for s in reading.evidence:  # the passages of its best sentences, best first
            hit = by_number[s.number]
            if s.number not in related:
                citation = Citation(number=s.number, chunk_id=hit.chunk_id, document_id=hit.document_id)
                related[s.number] = _with_passage(citation, prompt)
    return Answer(
        request_id=context.query.request_id,
        tenant=context.query.tenant,
        text=text,
        model=model,
        confidence=round(reading.confidence, 3) if reading is not None and reading.evidence else None,
        answers_question=False,
        refusal="not_answered" if related or model != "none" else "nothing_relevant",
        related=list(related.values()),
        degraded=degraded_reason is not None,
        degraded_reason=degraded_reason,
        timings_ms=timings,
    )


def _with_passage(citation: Citation, prompt: Prompt) -> Citation:
    """The citation with its passage's text and page."""
    for passage in prompt.passages:
        if passage.number == citation.number:
            page = passage.hit.metadata.get("page")
            return citation.model_copy(
                update={"text": passage.hit.text, "page": page if isinstance(page, int) else None}
            )
    return citation
