"""An Embedder that remembers: repeated queries and unchanged chunk texts are embedded once."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ragline.adapters.caches.keys import embedding_key


class CachedEmbedder:
    def __init__(
        self, embedder, cache, ttl_s: float = 86_400.0, count: Callable[[str, int], None] | None = None
    ) -> None:
        self.inner = embedder
        self.cache = cache
        self.ttl_s = ttl_s
        self.count = count or (lambda result, n: None)
        self.name = embedder.name
        self.dimension = embedder.dimension
        self.semantic = embedder.semantic
        self.tokenizer = embedder.tokenizer

    async def close(self) -> None:
        await self.inner.close()

    async def embed_query(self, text: str, tenant: str = "", *, exact: bool = False) -> np.ndarray:
        # An approximate question vector (MiniLM's int8 graph) is kept under its own name:
        # it must never be served where the model's own vector is expected, or the reverse.
        precision = getattr(self.inner, "query_precision", "float32")
        name = self.name if exact or precision == "float32" else f"{self.name}/{precision}"
        key = embedding_key(name, text, tenant)
        found = await self.cache.get(key)
        if found is not None and len(found) == 4 * self.dimension:
            self.count("hit", 1)
            return np.frombuffer(found, dtype=np.float32)
        self.count("miss", 1)
        vector = await self.inner.embed_query(text, tenant, exact=exact)
        await self.cache.set(key, vector.astype(np.float32).tobytes(), self.ttl_s)
        return vector

    async def embed(self, texts: Sequence[str], tenant: str = "", *, interactive: bool = False) -> np.ndarray:
        keys = [embedding_key(self.name, t, tenant) for t in texts]
        found = await self.cache.get_many(keys)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing = [i for i, value in enumerate(found) if value is None or len(value) != 4 * self.dimension]
        for i in set(range(len(texts))) - set(missing):
            out[i] = np.frombuffer(found[i], dtype=np.float32)
        self.count("hit", len(texts) - len(missing))
        self.count("miss", len(missing))
        if missing:
            vectors = await self.inner.embed([texts[i] for i in missing], tenant, interactive=interactive)
            out[missing] = vectors
            await self.cache.set_many(
                [(keys[i], vectors[j].astype(np.float32).tobytes()) for j, i in enumerate(missing)], self.ttl_s
            )
        return out
