"""Embedder adapters by name (``embedder``): MiniLM (the default) and a hashing embedder
for fast tests. A new embedder is one module and one ``EMBEDDERS.register``."""

from __future__ import annotations

from collections.abc import Callable

from ragline.core.ports import Embedder
from ragline.core.registry import Registry
from ragline.settings import Settings

EmbedderFactory = Callable[[Settings], Embedder]
EMBEDDERS: Registry[EmbedderFactory] = Registry("embedder", "embedder")


def build_embedder(settings: Settings) -> Embedder:
    return EMBEDDERS.factory(settings.embedder)(settings)


def _minilm(settings: Settings) -> Embedder:
    from ragline.adapters.embedders.minilm import MiniLMEmbedder
    from ragline.core.bulkhead import Bulkhead

    return MiniLMEmbedder(
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
        query_threads=settings.query_embed_threads,
        query_precision=settings.query_precision,
        bulkhead=Bulkhead("embedder", settings.embed_workers, settings.embed_queue, nice=settings.background_nice),
        query_bulkhead=Bulkhead("query embedder", 1, settings.query_embed_queue),
    )


def _hashing(settings: Settings) -> Embedder:
    from ragline.adapters.embedders.hashing import HashingEmbedder

    return HashingEmbedder()


EMBEDDERS.register("minilm", _minilm)
EMBEDDERS.register("hashing", _hashing)
