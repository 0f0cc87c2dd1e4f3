"""The stages: plain async functions over ports.

The same code runs in a unit test, in the embedded engine and in a bus worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ragline.core import sentences
from ragline.core.chunking import Chunker
from ragline.core.errors import RaglineError
from ragline.core.grounding import citations_from, ground
from ragline.core.ids import chunk_id, content_hash
from ragline.core.models import (
    Answer,
    Chunk,
    Citation,
    Context,
    Document,
    Evidence,
    Hit,
    IngestReport,
    Passage,
    Query,
    Reading,
)
from ragline.core.ports import AnswerMemo, Embedder, Fallback, Generator, VectorStore
from ragline.core.prompting import NOT_ANSWERED, NOTHING_RELEVANT, Prompt, build_prompt, says_it_does_not_know
from ragline.core.text import content_words

_log = logging.getLogger("ragline.stages")

# Texts per embedder call: calls stay short (a shutdown waits for one at most), batches full.
_EMBED_SLICE = 256

# Runs CPU-heavy work (chunking) somewhere other than the event loop: a bulkhead's run.
Offload = Callable[..., Awaitable[Any]]


@dataclass
class _Plan:
    """What one document needs: chunks to (re)write and stored chunks to drop."""

    write: list[Chunk] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0


_CHUNK_GROUP = 64  # documents per chunking call
_CHUNK_GROUP_CHARS = 256_000


def chunk_document(document: Document, chunker: Chunker) -> list[Chunk]:
    """The document's chunks with deterministic ids and content hashes (no vectors yet)."""
    return chunk_documents([document], chunker)[0]


def chunk_documents(documents: Sequence[Document], chunker: Chunker) -> list[list[Chunk]]:
    """``chunk_document`` of each, tokenised together (one tokenizer call for them all).
    A document with pages (PDF, slides) is chunked page by page, so no chunk straddles
    two pages and each carries its ``page`` (from 1) for citations."""
    segments: list[tuple[int, int | None, str]] = []  # (document, page, text)
    for index, document in enumerate(documents):
        text = document.text
        if document.pages:
            starts = sorted({0, *(p for p in document.pages if 0 < p < len(text))})
            bounds = [*starts, len(text)]
            segments += [(index, n, text[a:b]) for n, (a, b) in enumerate(itertools.pairwise(bounds), 1)]
        else:
            segments.append((index, None, text))
    pieces = chunker.split_many([t for _, _, t in segments])
    out: list[list[Chunk]] = [[] for _ in documents]
    meta_keys = [json.dumps(d.metadata, sort_keys=True, default=str) for d in documents]
    for (index, page, _), texts in zip(segments, pieces):
        document, chunks = documents[index], out[index]
        metadata = document.metadata if page is None else {**document.metadata, "page": page}
        key = meta_keys[index] if page is None else f"{meta_keys[index]}\x1fpage={page}"
        for text in texts:
            n = len(chunks)
            chunks.append(
                Chunk(
                    id=chunk_id(document.tenant, document.id, n),
                    tenant=document.tenant,
                    document_id=document.id,
                    number=n,
                    text=text,
                    content_hash=content_hash(text + "\x1f" + key),
                    metadata=metadata,
                )
            )
    return out


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


UPDATED_AT = "updated_at"  # chunk metadata: when the chunk (and, on chunk 0, its document) was last written


async def _plan(
    documents: Sequence[Document], chunker: Chunker, store: VectorStore, offload: Offload = _inline
) -> list[_Plan]:
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for doc in documents:
        by_tenant[doc.tenant].append(doc.id)
    # Tokenising is CPU work: off the event loop, a few documents per call (one thread
    # hop per document cost more than the chunking of an abstract) and no more, so that
    # a shutdown or a cancelled request waits for little; a large document goes alone.
    chunked: list[list[Chunk]] = []
    group: list[Document] = []
    for doc in documents:
        group.append(doc)
        if len(group) >= _CHUNK_GROUP or sum(len(d.text) for d in group) >= _CHUNK_GROUP_CHARS:
            chunked += await offload(chunk_documents, group, chunker)
            group = []
    if group:
        chunked += await offload(chunk_documents, group, chunker)
    stored = {t: await store.stored_chunks(t, ids) for t, ids in by_tenant.items()}
    plans = []
    for doc, chunks in zip(documents, chunked):
        have = {c.id: c.content_hash for c in stored[doc.tenant].get(doc.id, [])}
        plan = _Plan()
        for chunk in chunks:
            if have.get(chunk.id) == chunk.content_hash:
                plan.unchanged += 1
            else:
                plan.write.append(chunk)
        wanted = {c.id for c in chunks}
        plan.delete = [cid for cid in have if cid not in wanted]
        if (plan.write or plan.delete) and chunks and chunks[0] not in plan.write:
            # The document changed: its first chunk is written again too, since it carries
            # the document's update time (what a listing shows); one chunk re-embedded.
            plan.write.insert(0, chunks[0])
            plan.unchanged -= 1
        plans.append(plan)
    return plans


async def ingest(
    documents: Sequence[Document],
    *,
    chunker: Chunker,
    embedder: Embedder,
    store: VectorStore,
    answers: AnswerMemo | None = None,
    offload: Offload = _inline,
    progress: Progress | None = None,
    interactive: bool = False,
    sentence_vectors: bool = False,
) -> IngestReport:
    """Make the store hold exactly these documents' current chunks; idempotent.

    ``interactive``: a small write someone waits for, embedded on the embedder's
    interactive lane, never queued behind another tenant's bulk upload.

    Unchanged chunks are neither embedded nor written; chunks a document no longer
    has are deleted after its new chunks are written, so it is never missing.
    ``sentence_vectors``: each written chunk also gets its answer candidates and their
    vectors (sentences.py), so answering embeds only the question.
    ``progress(kind, n)`` hears of "planned" (chunks to write), "unchanged",
    "embedded" and "written" chunks as they happen.
    """
    started = time.perf_counter()
    tell = progress or _ignore
    documents = list({(d.tenant, d.id): d for d in documents}.values())  # the last copy wins
    plans = await _plan(documents, chunker, store, offload)
    to_write = [c for p in plans for c in p.write]
    tell("planned", len(to_write))
    tell("unchanged", sum(p.unchanged for p in plans))
    if to_write:
        # The write time goes into the chunks' metadata (outside the content hash: an
        # unchanged chunk keeps its time), in the same copy that adds the vector.
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        embedded = await _embedded(to_write, embedder, tell, now, interactive)
        if sentence_vectors and embedder.semantic:
            embedded = await _with_sentences(embedded, documents, embedder, offload, interactive)
        await store.upsert(embedded)
        tell("written", len(to_write))
    for doc, plan in zip(documents, plans):
        if plan.delete:
            await store.delete_chunks(doc.tenant, plan.delete)
        if answers is not None and (plan.write or plan.delete):
            await answers.evict_chunks(doc.tenant, [c.id for c in plan.write] + plan.delete)
    return IngestReport(
        documents=len(documents),
        unchanged_documents=sum(1 for p in plans if not p.write and not p.delete),
        chunks_written=len(to_write),
        chunks_embedded=len(to_write),
        chunks_unchanged=sum(p.unchanged for p in plans),
        chunks_deleted=sum(len(p.delete) for p in plans),
        seconds=time.perf_counter() - started,
    )


Progress = Callable[[str, int], None]


def _ignore(kind: str, n: int) -> None:
    pass


async def _embedded(
    chunks: list[Chunk],
    embedder: Embedder,
    tell: Progress = _ignore,
    stamp: str | None = None,
    interactive: bool = False,
) -> list[Chunk]:
    """The chunks with their vectors, embedded per tenant (caches are per tenant)."""
    by_tenant: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_tenant[chunk.tenant].append(chunk)
    out: list[Chunk] = []
    for tenant, group in by_tenant.items():
        for start in range(0, len(group), _EMBED_SLICE):
            part = group[start : start + _EMBED_SLICE]
            vectors = await embedder.embed([c.text for c in part], tenant, interactive=interactive)
            out.extend(
                c.model_copy(
                    update={"vector": v.tolist(), "metadata": {**c.metadata, UPDATED_AT: stamp}}
                    if stamp
                    else {"vector": v.tolist()}
                )
                for c, v in zip(part, vectors)
            )
            tell("embedded", len(part))
    return out


async def _with_sentences(
    chunks: list[Chunk], documents: Sequence[Document], embedder: Embedder, offload: Offload, interactive: bool
) -> list[Chunk]:
    """The chunks with their sentences and vectors (sentences.encode): a sentence cut at a
    chunk's edge is taken whole from the document; each distinct sentence embedded once."""
    texts = {(d.tenant, d.id): d.text for d in documents}
    per_chunk: list[list[str]] = await offload(_chunk_sentences, chunks, texts)
    out: list[Chunk] = []
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for i, chunk in enumerate(chunks):
        by_tenant[chunk.tenant].append(i)
    encoded: dict[int, str | None] = {}
    for tenant, indexes in by_tenant.items():
        for start in range(0, len(indexes), _EMBED_SLICE):
            part = indexes[start : start + _EMBED_SLICE]
            distinct = list(dict.fromkeys(s for i in part for s in per_chunk[i]))
            if not distinct:
                continue
            vectors = await embedder.embed(distinct, tenant, interactive=interactive)
            row = {s: n for n, s in enumerate(distinct)}
            for i in part:
                found = per_chunk[i]
                encoded[i] = sentences.encode(found, vectors[[row[s] for s in found]]) if found else None
    for i, chunk in enumerate(chunks):
        out.append(chunk.model_copy(update={"sentences": encoded.get(i)}) if encoded.get(i) else chunk)
    return out


def _chunk_sentences(chunks: Sequence[Chunk], documents: Mapping[tuple[str, str], str]) -> list[list[str]]:
    """Each chunk's answer candidates, edges made whole from its document's text."""
    grouped: dict[tuple[str, str], list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        grouped[(chunk.tenant, chunk.document_id)].append(chunk)
    spans: dict[str, tuple[int, int] | None] = {}
    for key, group in grouped.items():
        group.sort(key=lambda c: c.number)
        spans.update(zip([c.id for c in group], sentences.chunk_spans(documents.get(key, ""), [c.text for c in group])))
    out = []
    for chunk in chunks:
        document = documents.get((chunk.tenant, chunk.document_id), "")
        span = spans.get(chunk.id)
        text = sentences.whole_edges(document, *span) if span is not None else chunk.text
        out.append(sentences.passage_sentences(text, chunk.number == 0))
    return out


async def retrieve(
    query: Query, *, embedder: Embedder, store: VectorStore, mode: str = "dense", exact: bool = False
) -> Context:
    """Embed the question and find its best chunks in the caller's tenant.

    ``mode`` (dense, bm25, hybrid) applies unless the query names its own; a store
    without full-text search serves dense and the context says so.
    """
    mode = query.mode or mode
    notice = None
    if mode != "dense" and not store.full_text:
        notice = f"{mode} retrieval needs Milvus full-text search (Lite or >= 2.5); served dense"
        mode = "dense"
    t0 = time.perf_counter()
    vector = await embedder.embed_query(query.retrieval_text, query.tenant, exact=exact)
    t1 = time.perf_counter()
    answer = query.purpose == "answer"  # an answer reads the sentences stored with its hits
    hits = await store.search(
        query.tenant, vector, query.top_k, query.filters, text=query.retrieval_text, mode=mode, with_sentences=answer
    )
    t2 = time.perf_counter()
    stored = {h.chunk_id: h.sentences for h in hits if h.sentences}
    return Context(
        query=query,
        hits=hits,
        mode=mode,
        notice=notice,
        timings_ms={"embed": (t1 - t0) * 1000, "search": (t2 - t1) * 1000},
        sentences=stored,
    )


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
