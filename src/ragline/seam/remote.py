"""The seam served by a running ragline server, over HTTP (``ragline.client``).

The server decides the tenant from the credential: a tenant named here is sent as the
``X-Ragline-Tenant`` header, which the server honours only where the credential lets the
caller choose one (the owner's token, ``--no-auth``); an API key keeps its own tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from ragline.client import AsyncClient
from ragline.core.errors import NotFound, RaglineError
from ragline.core.models import Answer, Context, Document, Hit, IngestReport, Query
from ragline.seam import Catalogue, FileIngest, Receipt, WriteStatus

if TYPE_CHECKING:
    from ragline.seam.remote_ingest import RemoteIngest


class RemoteService:
    """A server behind the seam: one HTTP client per tenant asked for, closed together."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_document_mb: float = 20.0,
    ) -> None:
        self.url, self.api_key, self.timeout, self.transport = url, api_key, timeout, transport
        self.max_document_bytes = int(max_document_mb * 1_000_000)  # files larger are not sent
        self._clients: dict[str, AsyncClient] = {}
        self._ingest: RemoteIngest | None = None  # the last ingest_paths, as far as it got
        self.generator_name = f"the server's ({self._client('').url})"

    def _client(self, tenant: str) -> AsyncClient:
        if tenant not in self._clients:
            self._clients[tenant] = AsyncClient(
                self.url, self.api_key, tenant=tenant or None, timeout=self.timeout, transport=self.transport
            )
        return self._clients[tenant]

    @property
    def catalogue(self) -> Catalogue:
        return self

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
        """Read here, write there as jobs followed to the end (seam/remote_ingest.py), in a
        thread of its own: a Ctrl-C leaves at once (the server goes on with its jobs; the
        thread ends with the process) instead of waiting for the loop's executor."""
        from ragline.client import Client
        from ragline.seam.remote_ingest import RemoteIngest

        client = Client(self.url, self.api_key, tenant=tenant or None, timeout=self.timeout)
        ingest = RemoteIngest(
            client,
            self.max_document_bytes,
            on_file or (lambda name: None),
            progress or (lambda kind, n: None),
            into if into is not None else IngestReport(),
        )
        self._ingest = ingest
        executor = ThreadPoolExecutor(1, thread_name_prefix="ragline-ingest")
        try:
            return await asyncio.get_running_loop().run_in_executor(
                executor, ingest.run, targets, follow_symlinks, id_prefix
            )
        finally:
            executor.shutdown(wait=False)
            client.close()

    def interrupted(self, signal_name: str) -> str:
        if self._ingest is None:
            return f"interrupted ({signal_name})"
        return self._ingest.interrupted(signal_name)

    async def ask(self, query: Query) -> Answer:
        return await self._client(query.tenant).ask(
            query.text, _top_k(query), query.filters, query.mode, query.generator
        )

    async def stream(self, query: Query) -> AsyncIterator[str | Answer]:
        async for item in self._client(query.tenant).stream(
            query.text, _top_k(query), query.filters, query.mode, query.generator
        ):
            yield item

    async def search(self, query: Query) -> Context:
        found = await self._client(query.tenant).search(query.text, _top_k(query), query.filters, query.mode)
        return Context(query=query, hits=found.hits, mode=found.mode, notice=found.notice, timings_ms=found.timings_ms)

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        try:
            return (await self._client(tenant).get(document_id)).chunks
        except NotFound:
            return []

    async def write(self, documents: Sequence[Document], *, wait: bool = True) -> Receipt:
        tenants = {d.tenant for d in documents}
        if len(tenants) > 1:
            raise RaglineError("one write goes to one tenant over HTTP; split the documents by tenant")
        if not documents:
            return Receipt("searchable", ())
        response = await self._client(tenants.pop()).add(documents, wait=wait)
        status: WriteStatus = "searchable" if response.status == "searchable" else "accepted"
        return Receipt(status, tuple(response.ids), report=response.report, job_id=response.job_id)

    async def delete(self, tenant: str, document_id: str) -> int | None:
        return (await self._client(tenant).delete(document_id)).deleted_chunks

    async def documents(
        self, tenant: str, prefix: str, after: str, limit: int, filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        where = {key: str(value) for key, value in (filters or {}).items()}
        page = await self._client(tenant).list_documents(prefix, after, limit, where)
        return [d.model_dump(mode="json") for d in page.documents], page.next

    async def stats(self, tenant: str) -> dict[str, Any]:
        # where the chunks live: that server's own figures, and the server
        return {**await self._client(tenant).stats(), "server": self.url}

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """The server's own readiness checks (GET /readyz), or why it could not be asked."""
        return await self._client("").readiness()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def _top_k(query: Query) -> int | None:
    """The query's top_k, or None (the server's default) where the caller left it unset."""
    return query.top_k if "top_k" in query.model_fields_set else None
