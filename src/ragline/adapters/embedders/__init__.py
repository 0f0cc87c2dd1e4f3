"""Embedder adapters by name (``embedder``, ``settings.embedding.name``): MiniLM (the default) and a hashing embedder
for fast tests. A new embedder is one module and one ``EMBEDDERS.register``."""

from __future__ import annotations

from collections.abc import Callable

from ragline.core.ports import Embedder
from ragline.core.registry import Registry
from ragline.settings import EmbeddingSettings

EmbedderFactory = Callable[[EmbeddingSettings], Embedder]
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder", "embedder")


def build_embedder(config: EmbeddingSettings) -> Embedder:
    """The embedder ``config.name`` names (``settings.embedding``)."""
    return EMBEDDERS.factory(config.name)(config)


def _minilm(settings: EmbeddingSettings) -> Embedder:
    from ragline.adapters.embedders.minilm import MiniLMEmbedder
    from ragline.core.bulkhead import Bulkhead

    return MiniLMEmbedder(
        batch_size=settings.batch_size,
        threads=settings.threads,
        query_threads=settings.query_threads,
        query_precision=settings.query_precision,
        bulkhead=Bulkhead("embedder", settings.workers, settings.queue, nice=settings.background_nice),
        query_bulkhead=Bulkhead("query embedder", 1, settings.query_queue),
    )


def _hashing(settings: EmbeddingSettings) -> Embedder:
    from ragline.adapters.embedders.hashing import HashingEmbedder

    return HashingEmbedder()


EMBEDDERS.register("minilm", _minilm)
EMBEDDERS.register("hashing", _hashing)
