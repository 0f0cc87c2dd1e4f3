"""The embedded engine: adapters wired from settings, and the operations users call."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ragline.adapters.caches import build_cache
from ragline.adapters.caches.answer_cache import AnswerCache
from ragline.adapters.caches.embedding_cache import CachedEmbedder
from ragline.adapters.embedders import build_embedder
from ragline.adapters.generators import build_generator
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.core import generation, stages
from ragline.core.bulkhead import Bulkhead
from ragline.core.chunking import Chunker, regex_token_spans, tokenizer_token_spans
from ragline.core.errors import DocumentError, InvalidInput, NotFound, RetryableError
from ragline.core.models import Answer, Context, Document, FilterValue, IngestReport, Query, new_query
from ragline.core.ports import Cache, Embedder, Generator, VectorStore
from ragline.ingest.loaders import iter_files, load_file
from ragline.service.observability import Metrics, request_id_var, span
from ragline.settings import Settings

# Documents are written in groups of about this many chunks: memory stays bounded
# and progress moves, while the embedder still sees full batches.
_GROUP_CHUNKS = 64
SMALL_WRITE_CHARS = 16_000  # a write this small (all its texts) takes the small lanes


def chunker_for(embedder: Embedder, settings: Settings) -> Chunker:
    """Count chunk sizes in the embedder's own tokens when it has a tokenizer."""
    tokenizer = embedder.tokenizer
    spans = tokenizer_token_spans(tokenizer) if tokenizer is not None else regex_token_spans
    return Chunker(spans, size=settings.chunk_tokens, overlap=settings.chunk_overlap)


class Engine:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder,
        store: VectorStore,
        generator: Generator | None = None,
        cache: Cache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.cache = cache
        self.answers: AnswerCache | None = None
        if cache is not None:
            embedder = CachedEmbedder(
                embedder, cache, settings.embedding_cache_ttl_s, self.metrics.counter("embedding")
            )
            self.answers = AnswerCache(cache, settings.answer_cache_ttl_s, self.metrics.counter("answer"))
        self.embedder = embedder
        inner = getattr(embedder, "inner", embedder)
        if hasattr(inner, "on_query_batch"):  # micro-batched questions (MiniLM): batch sizes counted
            inner.on_query_batch = self.metrics.query_embed_batch_size.observe
        self.store = store
        self.chunker = chunker_for(embedder, settings)
        # File parsing and large request bodies: pure-Python CPU work, in child processes
        # (their own GIL); chunking (the tokenizer releases the GIL) on threads of its own.
        self.cpu = Bulkhead(
            "parser",
            settings.parse_workers,
            settings.parse_queue,
            processes=settings.parse_in_processes,
            nice=settings.background_nice,
        )
        self.chunking = Bulkhead("chunker", 1, settings.parse_queue * 4, nice=settings.background_nice)
        # Small writes someone waits for (a few KB: a note, a one-line batch) have lanes of
        # their own, so another tenant's 15 MB upload being chunked and embedded does not
        # hold them for tens of seconds (measured: 15-34 s before, bench/formats.py).
        self.small_chunking = Bulkhead("small chunker", 1, settings.parse_queue * 4)
        self._generator = generator
        # The extractive answerer picks sentences by meaning with the same embedder.
        self.fallback = ExtractiveGenerator(embedder=embedder if embedder.semantic else None)
        if settings.min_answer_confidence is not None:
            self.fallback.min_confidence = settings.min_answer_confidence

    @property
    def generator(self) -> Generator:
        """The configured LLM, built on first use (loading a model takes a moment)."""
        if self._generator is None and self.settings.generator == "extractive":
            self._generator = self.fallback  # the same answerer, choosing sentences with our embedder
        if self._generator is None:
            self._generator = build_generator(self.settings.llm)
            self._generator.observe_batches(self.metrics.llm_batch_size.observe)
        return self._generator

    def answering(self, asked: str | None = None) -> generation.Answering:
        """How this deployment answers; ``asked``: a query's own choice of generator (the
        deployment's, or extractive, which every deployment has), else InvalidInput."""
        s = self.settings
        self.check_generator(asked)
        return generation.Answering(
            self.fallback if asked == "extractive" else self.generator,
            self.fallback,
            max_tokens=s.llm_max_tokens,
            budget_tokens=s.llm_context_tokens - s.llm_max_tokens - 64,
            min_relevance=s.min_relevance,
            timeout_s=s.llm_timeout_s,
            answers=self.answers,
            metrics=self.metrics,
            replace_ungrounded=s.ungrounded_answers == "replace",
        )

    def check_generator(self, asked: str | None) -> None:
        """InvalidInput unless a query may ask for ``asked`` here (before any work is done)."""
        if asked is not None and asked not in {self.settings.generator, "extractive"}:
            raise InvalidInput(
                f"generator: this deployment answers with {self.settings.generator!r}; a request may ask for it "
                f"or 'extractive' (no LLM), not {asked!r}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        from ragline.adapters.stores import build_store

        embedder = build_embedder(settings.embedding)
        metrics = Metrics()
        cache = build_cache(settings.cache, on_state_change=metrics.cache_state)
        return cls(settings, embedder, build_store(settings.store, embedder.dimension), cache=cache, metrics=metrics)

    async def close(self) -> None:
        await self.store.close()
        await self.embedder.close()
        self.cpu.close()
        self.chunking.close()
        self.small_chunking.close()
        if self.cache is not None:
            await self.cache.close()
        if self._generator is not None:
            await self._generator.close()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def tenant(self, tenant: str | None) -> str:
        return tenant or self.settings.default_tenant

    # -- ingestion -------------------------------------------------------------------

    async def ingest_documents(
        self, documents: Sequence[Document], progress: stages.Progress | None = None
    ) -> IngestReport:
        """Write these documents (idempotent); ``progress``: see ``stages.ingest``."""
        small = sum(len(d.text) for d in documents) <= SMALL_WRITE_CHARS
        with span("ingest", documents=len(documents)):
            report = await stages.ingest(
                documents,
                chunker=self.chunker,
                embedder=self.embedder,
                store=self.store,
                answers=self.answers,
                offload=(self.small_chunking if small else self.chunking).run,
                progress=progress,
                interactive=small,
                sentence_vectors=self.settings.sentence_vectors,
            )
        now = datetime.now(UTC)  # writes use Strong consistency: searchable from here on
        for document in documents:
            self.metrics.freshness.observe(max(0.0, (now - document.received_at).total_seconds()))
        return report

    async def ingest_paths(
        self,
        paths: Iterable[Path],
        tenant: str | None = None,
        on_file: Callable[[str], None] | None = None,
        follow_symlinks: bool = False,
        id_prefix: str = "",
        progress: stages.Progress | None = None,
        into: IngestReport | None = None,
    ) -> IngestReport:
        """Ingest files and directories; a file that fails is reported, the rest go on.
        Document ids: see ``ingest.loaders.iter_files``. Files are written a group at a
        time (about 256 chunks); ``into`` is kept up to date after each group, so a caller
        that is interrupted knows what was written (a re-run skips it)."""
        started = time.perf_counter()
        total = into if into is not None else IngestReport()
        group: list[Document] = []
        group_chunks = 0
        max_bytes = int(self.settings.max_document_mb * 1_000_000)
        for item in iter_files(list(paths), follow_symlinks, id_prefix):
            try:
                if isinstance(item, DocumentError):
                    raise item
                doc = await self.cpu.run(load_file, item[0], self.tenant(tenant), max_bytes, document_id=item[1])
                group.append(doc)
                group_chunks += max(1, len(doc.text) // 1000)  # a cheap estimate
            except DocumentError as exc:
                total.errors.append(str(exc))
            if on_file:
                on_file(item.source if isinstance(item, DocumentError) else str(item[0]))
            if group_chunks >= _GROUP_CHUNKS:
                total.add(await self.ingest_documents(group, progress))
                total.seconds = time.perf_counter() - started
                group, group_chunks = [], 0
        if group:
            total.add(await self.ingest_documents(group, progress))
        total.seconds = time.perf_counter() - started
        return total

    async def delete_document(self, document_id: str, tenant: str | None = None) -> int:
        tenant = self.tenant(tenant)
        ids = [c.id for c in (await self.store.stored_chunks(tenant, [document_id]))[document_id]]
        if not ids:
            raise NotFound(f"no document {document_id!r} in tenant {tenant!r}")
        await self.store.delete_chunks(tenant, ids)
        if self.answers is not None:
            await self.answers.evict_chunks(tenant, ids)
        return len(ids)

    async def list_documents(
        self,
        tenant: str | None = None,
        prefix: str = "",
        after: str = "",
        limit: int = 100,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the tenant's documents in id order (each with its chunk count, a
        hash of its chunks' content hashes, when it last changed, and its metadata) and
        the cursor of the next page (None at the end)."""
        tenant = self.tenant(tenant)
        rows = await self.store.documents(tenant, prefix, after, limit + 1, filters)
        page, more = rows[:limit], len(rows) > limit
        chunks = await self.store.stored_chunks(tenant, [r.id for r in page]) if page else {}
        listed = []
        for row in page:
            stored = sorted(chunks.get(row.id, []), key=lambda c: c.number)
            digest = hashlib.sha256("".join(c.content_hash for c in stored).encode()).hexdigest()[:32]
            metadata = dict(row.metadata)
            updated = metadata.pop(stages.UPDATED_AT, None)
            listed.append(
                {
                    "id": row.id,
                    "chunks": len(stored),
                    "content_hash": digest,
                    "updated_at": updated,
                    "metadata": metadata,
                }
            )
        return listed, (page[-1].id if more and page else None)

    # -- retrieval ---------------------------------------------------------------------

    async def search(
        self,
        text: str,
        tenant: str | None = None,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        mode: str | None = None,
        purpose: Literal["answer", "search"] = "search",
    ) -> Context:
        request_id = request_id_var.get()  # the HTTP request's id, so logs, trace and answer agree
        query = new_query(
            text=text,
            tenant=self.tenant(tenant),
            top_k=top_k or self.settings.top_k,
            filters=dict(filters or {}),
            mode=mode,
            purpose=purpose,
            **({"request_id": request_id} if request_id else {}),
        )
        return await self.retrieve(query)

    async def retrieve(self, query: Query) -> Context:
        """The retrieve stage, counted and traced (the API and the retrieve worker call this).

        A query for an answer embeds its question with the embedder's full model, as the
        answer ranks sentences with it (one vector for both); a search gets the embedder's
        cheaper question vector (MiniLM: int8)."""
        exact = query.purpose == "answer"
        with span("retrieve", tenant=query.tenant, request_id=query.request_id):
            with_llm = self.settings.generator != "extractive" and query.generator != "extractive"
            if query.follows and with_llm and self.settings.llm_rewrites_follow_ups:
                query = await generation.standalone(query, self.generator, self.settings.llm_rewrite_timeout_s)
            try:
                context = await stages.retrieve(
                    query, embedder=self.embedder, store=self.store, mode=self.settings.retrieval_mode, exact=exact
                )
            except RetryableError:
                self.metrics.search_failure.inc()
                raise
        self.metrics.search_success.inc()
        return context

    async def generate(self, context: Context) -> Answer:
        """The generate stage, traced (the API and the generate worker call this)."""
        with span("generate", tenant=context.query.tenant, request_id=context.query.request_id):
            return await generation.generate(context, answering=self.answering(context.query.generator))

    # -- answers ---------------------------------------------------------------------------

    async def ask(
        self,
        question: str,
        tenant: str | None = None,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> Answer:
        """Retrieve, then answer with citations; degraded (extractive) if the LLM fails.
        ``generator``: "extractive" to answer without the LLM (see ``answering``)."""
        self.check_generator(generator)
        context = await self.search(question, tenant, top_k or self.settings.answer_top_k, filters, mode, "answer")
        context = context.model_copy(update={"query": context.query.model_copy(update={"generator": generator})})
        return await self.generate(context)

    async def stream(
        self,
        question: str,
        tenant: str | None = None,
        top_k: int | None = None,
        filters: Mapping[str, FilterValue] | None = None,
        mode: str | None = None,
        generator: str | None = None,
    ) -> AsyncIterator[str | Answer]:
        """Text pieces as they are generated, then the final Answer."""
        answering = self.answering(generator)
        context = await self.search(question, tenant, top_k or self.settings.answer_top_k, filters, mode, "answer")
        async for item in generation.generate_stream(context, answering=answering):
            yield item

    async def stats(self, tenant: str | None = None) -> dict[str, Any]:
        return {
            "tenant": self.tenant(tenant),
            "chunks": await self.store.count(self.tenant(tenant)),
            "collection": self.settings.collection,
            "milvus_uri": self.settings.milvus_uri,
            "embedder": self.embedder.name,
        }
