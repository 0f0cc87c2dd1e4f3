"""The seam served by the embedded engine in this process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ragline.core import generation
from ragline.core.errors import RaglineError
from ragline.core.models import Answer, Context, Document, Hit, IngestReport, Query
from ragline.seam import Catalogue, FileIngest, Receipt, written_so_far

if TYPE_CHECKING:
    from ragline.service.api.jobs import Jobs
    from ragline.service.engine import Engine


class LocalService:
    """The engine behind the seam. With ``jobs`` (the API's job book), a write that does not
    wait becomes a job kept on disk until done; without, every write is done before it returns."""

    def __init__(self, engine: Engine, jobs: Jobs | None = None) -> None:
        self.engine = engine
        self.jobs = jobs
        self._ingesting = IngestReport()  # the last ingest_paths' report, as far as it got

    @property
    def files(self) -> FileIngest:
        return self

    async def ingest_paths(
        self,
        tenant: str,
        targets: list[Path],
        *,
        follow_symlinks: bool = False,
        id_prefix: str = "",
        on_file: Callable[[str], None] | None = None,
        progress: Callable[[str, int], None] | None = None,
        into: IngestReport | None = None,
    ) -> IngestReport:
        self._ingesting = into if into is not None else IngestReport()
        return await self.engine.ingest_paths(
            targets,
            tenant,
            on_file=on_file,
            follow_symlinks=follow_symlinks,
            id_prefix=id_prefix,
            progress=progress,
            into=self._ingesting,
        )

    def interrupted(self, signal_name: str) -> str:
        done = written_so_far(signal_name, self._ingesting)
        return f"{done}; run the same command again to finish: what is written is skipped"

    @property
    def generator_name(self) -> str:
        return str(self.engine.settings.generator)

    @property
    def catalogue(self) -> Catalogue:
        return self

    async def ask(self, query: Query) -> Answer:
        self.engine.check_generator(query.generator)  # before the search
        return await self.engine.generate(await self.engine.retrieve(self._for(query, "answer")))

    async def stream(self, query: Query) -> AsyncIterator[str | Answer]:
        answering = self.engine.answering(query.generator)
        context = await self.engine.retrieve(self._for(query, "answer"))
        async for item in generation.generate_stream(context, answering=answering):
            yield item

    async def search(self, query: Query) -> Context:
        return await self.engine.retrieve(self._for(query, "search"))

    def _for(self, query: Query, purpose: Literal["answer", "search"]) -> Query:
        """The query for this purpose; a query that left ``top_k`` unset gets the
        deployment's default for it (answers read fewer passages than searches list)."""
        update: dict[str, Any] = {"purpose": purpose}
        if "top_k" not in query.model_fields_set:
            settings = self.engine.settings
            update["top_k"] = settings.answer_top_k if purpose == "answer" else settings.top_k
        return query.model_copy(update=update)

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        return await self.engine.store.document_chunks(tenant, document_id)

    async def write(self, documents: Sequence[Document], *, wait: bool = True) -> Receipt:
        ids = tuple(d.id for d in documents)
        if not wait and self.jobs is not None and documents:
            job = await self.jobs.accept(documents[0].tenant, list(documents), [], self.write_now)
            return Receipt("accepted", ids, job_id=job.id)
        return Receipt("searchable", ids, report=await self.write_now(documents))

    async def write_now(
        self, documents: Sequence[Document], progress: Callable[[str, int], None] | None = None
    ) -> IngestReport:
        """Write and return once searchable (``progress``: see ``stages.ingest``)."""
        return await self.engine.ingest_documents(documents, progress)

    async def delete(self, tenant: str, document_id: str) -> int:
        return await self.engine.delete_document(document_id, tenant)

    async def documents(
        self, tenant: str, prefix: str, after: str, limit: int, filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        return await self.engine.list_documents(tenant, prefix, after, limit, filters)

    async def stats(self, tenant: str) -> dict[str, Any]:
        stats = await self.engine.stats(tenant)
        stats.pop("milvus_uri", None)  # a path on the server is none of a remote caller's business
        return stats

    async def readiness(self) -> dict[str, dict[str, Any]]:
        engine = self.engine
        checks = {"vector_store": await check(engine.store.ping(), 5, required=True)}
        if engine.cache is not None:
            checks["cache"] = {
                **await check(engine.cache.ping(), 2, required=False, degraded="serving without the cache"),
                "backend": engine.cache.name,
            }
        checks["llm"] = {
            **await check(engine.generator.ping(), 3, required=False, degraded="answers are extractive meanwhile"),
            "generator": engine.settings.generator,
        }
        return checks

    async def close(self) -> None:
        await self.engine.close()


async def check(probe: Any, timeout_s: float, *, required: bool, degraded: str | None = None) -> dict[str, Any]:
    """One readiness check: the probe answers within ``timeout_s``, or why not."""
    try:
        await asyncio.wait_for(probe, timeout_s)
        return {"status": "ok", "required": required}
    except (RaglineError, TimeoutError) as exc:
        error = str(exc) or f"no answer within {timeout_s:g}s"
        return {"status": "unavailable", "required": required, "error": f"{error}; {degraded}" if degraded else error}
