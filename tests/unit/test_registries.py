"""A new adapter is one module and one registration: toy adapters per port, built from settings."""

from __future__ import annotations

import numpy as np

from ragline.adapters.buses import BUSES, build_bus
from ragline.adapters.buses.memory import MemoryBus
from ragline.adapters.caches import CACHES, build_cache
from ragline.adapters.caches.memory import MemoryCache
from ragline.adapters.embedders import EMBEDDERS, build_embedder
from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators import GENERATORS, build_generator
from ragline.adapters.stores import STORES, build_store
from ragline.adapters.stores.memory import MemoryStore
from ragline.core.models import Prompt
from ragline.core.ports import Bus, Cache, Embedder, Generator, VectorStore
from ragline.settings import Settings


class ShoutingGenerator:
    """A toy generator: the question, loudly. Declares everything the Generator port asks."""

    name = "shout"

    async def generate(self, prompt: Prompt, max_tokens: int) -> str:
        return prompt.question.upper()

    async def stream(self, prompt: Prompt, max_tokens: int):
        yield prompt.question.upper()

    def observe_batches(self, observe) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def test_each_port_builds_a_registered_toy_adapter_from_settings():
    STORES.register("toy", lambda settings, dim: MemoryStore(dim))
    BUSES.register("toybus", lambda settings: MemoryBus())
    CACHES.register("toycache", lambda settings, on_state: MemoryCache(10, 10_000))
    EMBEDDERS.register("toy", lambda settings: HashingEmbedder(dimension=16))
    GENERATORS.register("shout", lambda settings: ShoutingGenerator())
    settings = Settings.load(
        milvus_uri="toy://x", bus_url="toybus://", cache_url="toycache://", embedder="toy", generator="shout"
    )
    built = [
        (build_store(settings.store, 16), VectorStore),
        (build_bus(settings.bus), Bus),
        (build_cache(settings.cache), Cache),
        (build_embedder(settings.embedding), Embedder),
        (build_generator(settings.llm), Generator),
    ]
    assert all(isinstance(adapter, port) for adapter, port in built)
    assert build_embedder(settings.embedding).dimension == 16


async def test_a_registered_generator_answers_through_the_engine():
    from ragline.core.models import Document
    from ragline.service.engine import Engine

    GENERATORS.register("shout", lambda settings: ShoutingGenerator())
    settings = Settings.load(milvus_uri="memory://", embedder="hashing", generator="shout", min_relevance=0.0)
    async with Engine.from_settings(settings) as engine:
        await engine.ingest_documents([Document(id="bees", text="Honeybees dance to show where the flowers are.")])
        answer = await engine.ask("where are the flowers honeybees dance to show?")
    assert answer.model == "shout" and answer.text.startswith("WHERE ARE THE FLOWERS")
    assert np.isfinite(answer.timings_ms["generate"])
