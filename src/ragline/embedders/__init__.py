"""Embedder adapters."""

from __future__ import annotations

from ..errors import ConfigurationError
from ..ports import Embedder
from ..settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    if settings.embedder == "minilm":
        from ..bulkhead import Bulkhead
        from .minilm import MiniLMEmbedder

        return MiniLMEmbedder(batch_size=settings.embed_batch_size, threads=settings.embed_threads,
                              bulkhead=Bulkhead("embedder", settings.embed_workers, settings.embed_queue,
                                                nice=settings.background_nice),
                              query_bulkhead=Bulkhead("query embedder", 1, settings.query_embed_queue))
    if settings.embedder == "hashing":
        from .hashing import HashingEmbedder

        return HashingEmbedder()
    raise ConfigurationError(f"unknown embedder {settings.embedder!r}")
