"""The seam served by a running ragline server, over HTTP (``ragline.client``).

The server decides the tenant from the credential: a tenant named here is sent as the
``X-Ragline-Tenant`` header, which the server honours only where the credential lets the
caller choose one (the owner's token, ``--no-auth``); an API key keeps its own tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from ragline.client import AsyncClient
from ragline.core.errors import NotFound, RaglineError
from ragline.core.models import Answer, Context, Document, Hit, Query
from ragline.seam import Catalogue, Receipt, WriteStatus


class RemoteService:
    """A server behind the seam: one HTTP client per tenant asked for, closed together."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, self.api_key, self.timeout, self.transport = url, api_key, timeout, transport
        self._clients: dict[str, AsyncClient] = {}
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
