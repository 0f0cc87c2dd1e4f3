"""The stages: plain async functions over ports.

The same code runs in a unit test, in the embedded engine and in a bus worker.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from .ids import chunk_id, content_hash
from .ingest.chunking import Chunker
from .models import Chunk, Context, Document, IngestReport, Query
from .ports import Embedder, VectorStore


@dataclass
class _Plan:
    """What one document needs: chunks to (re)write and stored chunks to drop."""

    write: list[Chunk] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: int = 0


def chunk_document(document: Document, chunker: Chunker) -> list[Chunk]:
    """The document's chunks with deterministic ids and content hashes (no vectors yet)."""
    meta_key = json.dumps(document.metadata, sort_keys=True, default=str)
    return [
        Chunk(id=chunk_id(document.tenant, document.id, n), tenant=document.tenant,
              document_id=document.id, number=n, text=text,
              content_hash=content_hash(text + "\x1f" + meta_key), metadata=document.metadata)
        for n, text in enumerate(chunker.split(document.text))
    ]


async def _plan(documents: Sequence[Document], chunker: Chunker, store: VectorStore) -> list[_Plan]:
    by_tenant: dict[str, list[str]] = defaultdict(list)
    for doc in documents:
        by_tenant[doc.tenant].append(doc.id)
    stored = {t: await store.stored_chunks(t, ids) for t, ids in by_tenant.items()}
    plans = []
    for doc in documents:
        have = {c.id: c.content_hash for c in stored[doc.tenant].get(doc.id, [])}
        plan = _Plan()
        chunks = chunk_document(doc, chunker)
        for chunk in chunks:
            if have.get(chunk.id) == chunk.content_hash:
                plan.unchanged += 1
            else:
                plan.write.append(chunk)
        wanted = {c.id for c in chunks}
        plan.delete = [cid for cid in have if cid not in wanted]
        plans.append(plan)
    return plans


async def ingest(documents: Sequence[Document], *, chunker: Chunker, embedder: Embedder,
                 store: VectorStore) -> IngestReport:
    """Make the store hold exactly these documents' current chunks; idempotent.

    Unchanged chunks are neither embedded nor written; chunks a document no longer
    has are deleted after its new chunks are written, so it is never missing.
    """
    started = time.perf_counter()
    documents = list({(d.tenant, d.id): d for d in documents}.values())  # the last copy wins
    plans = await _plan(documents, chunker, store)
    to_write = [c for p in plans for c in p.write]
    if to_write:
        vectors = await embedder.embed([c.text for c in to_write])
        await store.upsert([c.model_copy(update={"vector": v.tolist()}) for c, v in zip(to_write, vectors)])
    for doc, plan in zip(documents, plans):
        if plan.delete:
            await store.delete_chunks(doc.tenant, plan.delete)
    return IngestReport(
        documents=len(documents),
        unchanged_documents=sum(1 for p in plans if not p.write and not p.delete),
        chunks_written=len(to_write), chunks_embedded=len(to_write),
        chunks_unchanged=sum(p.unchanged for p in plans),
        chunks_deleted=sum(len(p.delete) for p in plans),
        seconds=time.perf_counter() - started,
    )


async def retrieve(query: Query, *, embedder: Embedder, store: VectorStore) -> Context:
    """Embed the question and find its best chunks in the caller's tenant."""
    t0 = time.perf_counter()
    vector = (await embedder.embed([query.text]))[0]
    t1 = time.perf_counter()
    hits = await store.search(query.tenant, vector, query.top_k, query.filters)
    t2 = time.perf_counter()
    return Context(query=query, hits=hits,
                   timings_ms={"embed": (t1 - t0) * 1000, "search": (t2 - t1) * 1000})
