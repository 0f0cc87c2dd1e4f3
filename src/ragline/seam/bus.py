"""The seam served over the bus: this process only publishes and listens (the gateway);
the stage workers embed, search and answer. It holds no embedding model and no Milvus
connection, so it has no catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from ragline.core.errors import InvalidInput
from ragline.core.models import Answer, Context, Document, Hit, Query
from ragline.seam import Catalogue, FileIngest, Receipt
from ragline.seam.local import check

if TYPE_CHECKING:
    from ragline.service.gateway import Gateway


class BusService:
    """The pipeline behind the seam: searches and document reads are answered by the
    retrieve workers; writes and deletes go through the documents topic, in order."""

    catalogue: Catalogue | None = None
    files: FileIngest | None = None  # files reach the gateway as uploads (POST /v1/documents/files)

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

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        query = self.gateway.query(document_id, tenant, 1)
        return (await self.gateway.search(query, purpose="document")).hits

    async def write(self, documents: Sequence[Document], *, wait: bool = True) -> Receipt:
        if wait:
            raise InvalidInput(
                "wait=true is not available while ingestion goes through the bus; the documents "
                "are searchable once the ingest workers have them (poll GET /v1/documents/{id})"
            )
        await self.gateway.submit(documents)  # on the broker (acks=all) before the receipt
        return Receipt("queued", tuple(d.id for d in documents))

    async def delete(self, tenant: str, document_id: str) -> None:
        await self.gateway.delete(tenant, document_id)

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """The broker answers, and replies are being listened for."""
        probe = await check(self.gateway.bus.ping(), 3, required=True)
        if probe["status"] == "ok" and not self.gateway.listening:
            probe = {**probe, "status": "unavailable", "error": "not listening for answers"}
        return {"bus": {**probe, "url": self.bus_url}}

    async def close(self) -> None:
        pass  # the gateway is closed by whoever started it
