"""An in-memory VectorStore: exact cosine search over numpy arrays, per tenant.

For unit tests of the stages and for trying ragline without a database file
(``milvus_uri = "memory://"``); nothing survives the process. It passes the same
contract suite as Milvus (tests/contracts/test_vector_store.py). No full-text index:
bm25 and hybrid retrieval serve dense, as on Milvus servers before 2.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ragline.core.errors import InvalidInput
from ragline.core.limits import FILTER_KEY
from ragline.core.models import Chunk, FilterValue, Hit
from ragline.core.ports import DocumentRow, StoredChunk

_COLUMNS = {"document_id", "number", "content_hash"}


class MemoryStore:
    full_text = False

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._chunks: dict[str, dict[str, Chunk]] = {}  # tenant -> chunk id -> chunk

    async def upsert(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            if chunk.vector is None or len(chunk.vector) != self.dimension:
                raise InvalidInput(f"chunk {chunk.id} has no {self.dimension}-dimensional vector")
        for chunk in chunks:
            self._chunks.setdefault(chunk.tenant, {})[chunk.id] = chunk

    async def delete_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> None:
        stored = self._chunks.get(tenant, {})
        for chunk_id in chunk_ids:
            stored.pop(chunk_id, None)

    async def delete_document(self, tenant: str, document_id: str) -> int:
        ids = [c.id for c in self._tenant(tenant) if c.document_id == document_id]
        await self.delete_chunks(tenant, ids)
        return len(ids)

    async def stored_chunks(self, tenant: str, document_ids: Sequence[str]) -> dict[str, list[StoredChunk]]:
        found: dict[str, list[StoredChunk]] = {d: [] for d in document_ids}
        for chunk in self._tenant(tenant):
            if chunk.document_id in found:
                found[chunk.document_id].append(
                    StoredChunk(chunk.id, chunk.document_id, chunk.number, chunk.content_hash)
                )
        return found

    async def search(
        self,
        tenant: str,
        vector: np.ndarray,
        top_k: int,
        filters: Mapping[str, FilterValue] | None = None,
        *,
        text: str | None = None,
        mode: str = "dense",
        with_sentences: bool = False,
    ) -> list[Hit]:
        filters = filters or {}
        for key in filters:
            if not FILTER_KEY.match(key):
                raise InvalidInput(f"filter key {key!r} must be letters, digits and '_'")
        candidates = [c for c in self._tenant(tenant) if _matches(c, filters)]
        if not candidates:
            return []
        matrix = np.asarray([c.vector for c in candidates], dtype=np.float32)
        query = np.asarray(vector, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
        scores = matrix @ query / np.clip(norms, 1e-12, None)
        best = np.argsort(-scores, kind="stable")[:top_k]
        hits = [_hit(candidates[i], float(scores[i])) for i in best]
        if with_sentences:
            hits = [h.model_copy(update={"sentences": candidates[i].sentences}) for h, i in zip(hits, best)]
        return hits

    async def document_chunks(self, tenant: str, document_id: str) -> list[Hit]:
        chunks = sorted((c for c in self._tenant(tenant) if c.document_id == document_id), key=lambda c: c.number)
        return [_hit(c, 1.0) for c in chunks]

    async def documents(
        self,
        tenant: str,
        prefix: str = "",
        after: str = "",
        limit: int = 100,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> list[DocumentRow]:
        first = {c.document_id: c for c in self._tenant(tenant) if c.number == 0 and _matches(c, filters or {})}
        ids = sorted(i for i in first if i.startswith(prefix) and i > after)[:limit]
        return [DocumentRow(i, dict(first[i].metadata)) for i in ids]

    async def count(self, tenant: str) -> int:
        return len(self._chunks.get(tenant, {}))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def _tenant(self, tenant: str) -> list[Chunk]:
        return list(self._chunks.get(tenant, {}).values())


def _matches(chunk: Chunk, filters: Mapping[str, FilterValue]) -> bool:
    for key, wanted in filters.items():
        value: Any = getattr(chunk, key) if key in _COLUMNS else chunk.metadata.get(key)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return False
    return True


def _hit(chunk: Chunk, score: float) -> Hit:
    return Hit(
        chunk_id=chunk.id,
        document_id=chunk.document_id,
        number=chunk.number,
        text=chunk.text,
        score=score,
        similarity=score,
        content_hash=chunk.content_hash,
        metadata=chunk.metadata,
    )
