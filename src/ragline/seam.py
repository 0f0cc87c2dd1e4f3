"""The answering interface: what the HTTP API needs, in both shapes.

``Answerer`` is the one interface the API depends on. ``LocalAnswerer`` serves it from
the embedded engine in this process; ``BusAnswerer`` from the pipeline over the bus
(the API process then holds no embedding model and no Milvus connection: searches and
document reads are answered by the retrieve workers, writes and deletes go through the
documents topic in order).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ragline.core import generation
from ragline.core.errors import NotImplementedInShape, RaglineError
from ragline.core.models import Answer, Context, Document, Hit, IngestReport, Query

if TYPE_CHECKING:
    from ragline.service.engine import Engine
    from ragline.service.gateway import Gateway


class Answerer(Protocol):
    """Answers, searches and document writes for the API, whatever the shape behind it."""

    writes_are_queued: bool  # True: write() hands documents to a durable queue (the bus)

    @property
    def generator_name(self) -> str: ...

    async def ask(self, query: Query) -> Answer: ...

    def stream(self, query: Query) -> AsyncIterator[str | Answer]: ...

    async def search(self, query: Query) -> Context: ...

    async def write(
        self, documents: Sequence[Document], progress: Callable[[str, int], None] | None = None
    ) -> IngestReport | None: ...

    async def delete(self, tenant: str, document_id: str) -> int | None: ...

    async def document(self, tenant: str, document_id: str) -> list[Hit]: ...

    async def documents(
        self, tenant: str, prefix: str, after: str, limit: int, filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def stats(self, tenant: str) -> dict[str, Any]: ...

    async def readiness(self) -> dict[str, dict[str, Any]]: ...

    async def close(self) -> None: ...


class LocalAnswerer:
    """The embedded engine behind the interface."""

    writes_are_queued = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def generator_name(self) -> str:
        return str(self.engine.settings.generator)

    async def ask(self, query: Query) -> Answer:
        return await self.engine.generate(await self.engine.retrieve(query.model_copy(update={"purpose": "answer"})))

    async def stream(self, query: Query) -> AsyncIterator[str | Answer]:
        context = await self.engine.retrieve(query.model_copy(update={"purpose": "answer"}))
        async for item in generation.generate_stream(context, answering=self.engine.answering()):
            yield item

    async def search(self, query: Query) -> Context:
        return await self.engine.retrieve(query.model_copy(update={"purpose": "search"}))

    async def write(
        self, documents: Sequence[Document], progress: Callable[[str, int], None] | None = None
    ) -> IngestReport:
        return await self.engine.ingest_documents(documents, progress)

    async def delete(self, tenant: str, document_id: str) -> int:
        return await self.engine.delete_document(document_id, tenant)

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        return await self.engine.store.document_chunks(tenant, document_id)

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
        checks = {"vector_store": await _check(engine.store.ping(), 5, required=True)}
        if engine.cache is not None:
            checks["cache"] = {
                **await _check(engine.cache.ping(), 2, required=False, degraded="serving without the cache"),
                "backend": engine.cache.name,
            }
        checks["llm"] = {
            **await _check(engine.generator.ping(), 3, required=False, degraded="answers are extractive meanwhile"),
            "generator": engine.settings.generator,
        }
        return checks

    async def close(self) -> None:
        await self.engine.close()


class BusAnswerer:
    """The pipeline behind the interface: this process only publishes and listens."""

    writes_are_queued = True

    def __init__(self, gateway: Gateway, bus_url: str, generator_name: str) -> None:
        self.gateway = gateway
        self.bus_url = bus_url
        self.generator_name = generator_name

    async def ask(self, query: Query) -> Answer:
        return await self.gateway.ask(query)

    def stream(self, query: Query) -> AsyncIterator[str | Answer]:
        return self.gateway.stream(query)

    async def search(self, query: Query) -> Context:
        return await self.gateway.search(query)

    async def write(self, documents: Sequence[Document], progress: Callable[[str, int], None] | None = None) -> None:
        await self.gateway.submit(documents)

    async def delete(self, tenant: str, document_id: str) -> None:
        await self.gateway.delete(tenant, document_id)

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        query = self.gateway.query(document_id, tenant, 1)
        return (await self.gateway.search(query, purpose="document")).hits

    async def documents(
        self, tenant: str, prefix: str, after: str, limit: int, filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        raise NotImplementedInShape(
            "listing documents is not available through the bus yet: the API gateway has no "
            "store; list them with `ragline ls` where the store is (a worker's settings)"
        )

    async def stats(self, tenant: str) -> dict[str, Any]:
        raise NotImplementedInShape(
            "statistics are not available through the bus: the API gateway has no store; run "
            "`ragline stats` where the store is (a worker's settings)"
        )

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """The broker answers, and replies are being listened for."""
        check = await _check(self.gateway.bus.ping(), 3, required=True)
        if check["status"] == "ok" and not self.gateway.listening:
            check = {**check, "status": "unavailable", "error": "not listening for answers"}
        return {"bus": {**check, "url": self.bus_url}}

    async def close(self) -> None:
        pass  # the gateway is closed by whoever started it


async def _check(probe: Any, timeout_s: float, *, required: bool, degraded: str | None = None) -> dict[str, Any]:
    try:
        await asyncio.wait_for(probe, timeout_s)
        return {"status": "ok", "required": required}
    except (RaglineError, TimeoutError) as exc:
        error = str(exc) or f"no answer within {timeout_s:g}s"
        return {"status": "unavailable", "required": required, "error": f"{error}; {degraded}" if degraded else error}
