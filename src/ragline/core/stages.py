"""The ingest and retrieve stages: plain async functions over ports (generate: generation.py).

The same code runs in a unit test, in the embedded engine and in a bus worker.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ragline.core import sentences
from ragline.core.chunking import Chunker
from ragline.core.ids import chunk_id, content_hash
from ragline.core.models import (
    Chunk,
    Context,
    Document,
    IngestReport,
    Query,
)
from ragline.core.ports import AnswerMemo, Embedder, VectorStore

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
            # a chunk that is one sentence (a short document) already has its vector
            known = {chunks[i].text: chunks[i].vector for i in part if chunks[i].vector is not None}
            missing = [s for s in distinct if s not in known]
            vector_of = {s: np.asarray(v, dtype=np.float32) for s, v in known.items()}
            if missing:
                vector_of.update(zip(missing, await embedder.embed(missing, tenant, interactive=interactive)))
            vectors = np.stack([vector_of[s] for s in distinct])
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
