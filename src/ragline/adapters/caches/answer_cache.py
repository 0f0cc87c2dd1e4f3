"""The answer cache: never stale, never foreign.

The key holds the tenant, the normalized question, the generator and the sorted ids
and content hashes of the retrieved context, so a changed document changes the key.
Each answer is also indexed under its chunks, so updating or deleting a document
evicts the answers built from it at once, inside the TTL. Degraded answers are not
cached: the LLM's recovery must show at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Sequence

from ragline.adapters.caches.keys import answer_index_key, answer_key
from ragline.core.models import Answer, Hit


class AnswerCache:
    def __init__(self, cache, ttl_s: float = 30.0, count: Callable[[str, int], None] | None = None) -> None:
        self.cache = cache
        self.ttl_s = ttl_s
        self.count = count or (lambda result, n: None)

    @staticmethod
    def key(tenant: str, question: str, generator: str, hits: Sequence[Hit]) -> str:
        return answer_key(tenant, question, generator, [(h.chunk_id, h.content_hash) for h in hits])

    async def get(self, key: str, request_id: str) -> Answer | None:
        raw = await self.cache.get(key)
        self.count("miss" if raw is None else "hit", 1)
        if raw is None:
            return None
        answer = Answer.model_validate_json(raw)
        return answer.model_copy(update={"cached": True, "request_id": request_id})

    async def put(self, key: str, answer: Answer, hits: Sequence[Hit]) -> None:
        if answer.degraded:
            return
        await self.cache.set(key, answer.model_dump_json().encode(), self.ttl_s)
        await asyncio.gather(*(self._index(answer.tenant, h.chunk_id, key) for h in hits))

    async def _index(self, tenant: str, chunk_id: str, key: str) -> None:
        index_key = answer_index_key(tenant, chunk_id)
        raw = await self.cache.get(index_key)
        keys = set(json.loads(raw)) if raw else set()
        keys.add(key)
        await self.cache.set(index_key, json.dumps(sorted(keys)).encode(), self.ttl_s)

    async def evict_chunks(self, tenant: str, chunk_ids: Iterable[str]) -> None:
        """Drop every cached answer built from any of these chunks."""
        for chunk_id in set(chunk_ids):
            index_key = answer_index_key(tenant, chunk_id)
            raw = await self.cache.get(index_key)
            if raw:
                await self.cache.delete(*json.loads(raw), index_key)
