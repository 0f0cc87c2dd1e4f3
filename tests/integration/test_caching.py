"""Caching through the engine, in-process and in a real Redis: never stale, never foreign,
and a dead Redis fails no request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from ragline import Settings
from ragline.adapters.caches import build_cache
from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.models import Document
from ragline.service.engine import Engine
from ragline.service.observability import Metrics

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."
QUESTION = "What does the waggle dance tell nest mates?"


class CountingGenerator(ExtractiveGenerator):
    """The extractive generator, counting how often it is asked (stands in for an LLM's bill)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def generate(self, prompt, max_tokens):
        self.calls += 1
        return await super().generate(prompt, max_tokens)

    async def stream(self, prompt, max_tokens):
        self.calls += 1
        yield await super().generate(prompt, max_tokens)


async def make_engine(tmp_path, cache_url: str, **overrides) -> Engine:
    settings = Settings.load(
        milvus_uri=str(tmp_path / "cache.db"),
        embedder="hashing",
        generator="extractive",
        cache_url=cache_url,
        min_relevance=0.0,
        chunk_tokens=64,
        chunk_overlap=8,
        cache_breaker_open_s=0.3,
        **overrides,
    )
    metrics = Metrics()
    embedder = HashingEmbedder()
    return Engine(
        settings,
        embedder,
        MilvusStore.of(settings.store, embedder.dimension),
        CountingGenerator(),
        cache=build_cache(settings.cache, metrics.cache_state),
        metrics=metrics,
    )


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def engine(request, tmp_path) -> AsyncIterator[Engine]:
    url = "memory" if request.param == "memory" else request.getfixturevalue("running_redis").url
    eng = await make_engine(tmp_path, url)
    yield eng
    await eng.close()


async def test_a_repeated_query_calls_neither_the_llm_nor_the_embedder(engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    first = await engine.ask(QUESTION)
    embedded = engine.embedder.inner.texts_embedded
    second = await engine.ask(QUESTION)
    assert (first.cached, second.cached) == (False, True)
    assert second.text == first.text and second.citations == first.citations
    assert second.request_id != first.request_id
    assert engine.generator.calls == 1 and engine.embedder.inner.texts_embedded == embedded


async def test_a_query_differing_only_in_case_and_spacing_is_a_hit(engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    await engine.ask(QUESTION)
    assert (await engine.ask("  what DOES the waggle   dance tell nest mates? ")).cached


async def test_editing_a_document_changes_the_next_answer_within_the_ttl(engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    assert "flowers" in (await engine.ask(QUESTION)).text
    await engine.ingest_documents(
        [Document(id="bees", text="The waggle dance tells nest mates the direction of water.")]
    )
    answer = await engine.ask(QUESTION)
    assert not answer.cached and "water" in answer.text


async def test_deleting_a_document_evicts_the_answers_built_from_it(engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    context = await engine.search(QUESTION, top_k=engine.settings.answer_top_k)
    await engine.ask(QUESTION)
    key = engine.answers.key("default", QUESTION, engine.generator.name, context.hits)
    assert await engine.cache.get(key) is not None
    await engine.delete_document("bees")
    assert await engine.cache.get(key) is None  # removed from the cache, not merely no longer looked up
    answer = await engine.ask(QUESTION)
    assert not answer.cached and answer.citations == []


async def test_tenant_b_never_gets_tenant_as_cached_answer(engine):
    await engine.ingest_documents(
        [
            Document(tenant="a", id="bees", text=BEES),
            Document(tenant="b", id="bees", text="The waggle dance is a folk dance from Tyrol."),
        ]
    )
    a = await engine.ask(QUESTION, tenant="a")
    b = await engine.ask(QUESTION, tenant="b")
    assert not b.cached and "Tyrol" in b.text and "flowers" not in b.text and "flowers" in a.text


async def test_unchanged_chunks_reuse_cached_vectors_across_documents(engine):
    await engine.ingest_documents([Document(id="one", text=BEES)])
    before = engine.embedder.inner.texts_embedded
    await engine.ingest_documents([Document(id="copy", text=BEES)])
    assert engine.embedder.inner.texts_embedded == before


async def test_cache_hits_and_misses_are_counted(engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    await engine.ask(QUESTION)
    await engine.ask(QUESTION)
    sample = lambda cache, result: engine.metrics.registry.get_sample_value(
        "ragline_cache_requests_total", {"cache": cache, "result": result}
    )
    assert sample("answer", "hit") == 1 and sample("answer", "miss") == 1
    assert sample("embedding", "hit") >= 1


@pytest.mark.integration
async def test_stopping_redis_fails_no_request_and_restarting_restores_caching(running_redis, tmp_path):
    engine = await make_engine(tmp_path, running_redis.url)
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    await engine.ask(QUESTION)
    running_redis.stop()
    during = await asyncio.gather(*(engine.ask(QUESTION) for _ in range(5)))
    assert all(not a.cached and "flowers" in a.text for a in during)
    assert engine.cache.state == "open" and engine.metrics.cache_up._value.get() == 0
    running_redis.start()
    await asyncio.sleep(0.4)  # the breaker lets a call through again
    await engine.ask(QUESTION)
    again = await engine.ask(QUESTION)
    assert again.cached and engine.cache.state == "closed" and engine.metrics.cache_up._value.get() == 1
    await engine.close()


@pytest.mark.integration
async def test_a_dead_redis_costs_at_most_the_timeout_and_then_nothing(tmp_path):
    from conftest import free_port

    engine = await make_engine(tmp_path, f"redis://127.0.0.1:{free_port()}/0", cache_timeout_s=0.1)
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(10):
        assert "flowers" in (await engine.ask(QUESTION)).text
    assert loop.time() - started < 5
    await engine.close()


@pytest.mark.integration
def test_rate_limits_hold_across_api_replicas_sharing_redis(serve_app, running_redis, tmp_path):
    from ragline.service.api.auth import KeyStore

    replicas = [serve_app(cache_url=running_redis.url, rate_limit_rps=0.5, rate_limit_burst=2) for _ in range(2)]
    key, _ = KeyStore(tmp_path / "keys.json").create("a", ["query"])
    statuses = [
        httpx.post(f"{replicas[i % 2].url}/v1/search", json={"query": "x"}, headers={"X-API-Key": key}).status_code
        for i in range(3)
    ]
    assert statuses == [200, 200, 429]


@pytest.mark.integration
def test_readiness_reports_a_dead_redis_without_failing(serve_app, running_redis):
    server = serve_app(cache_url=running_redis.url, auth_enabled=False)
    assert httpx.get(f"{server.url}/readyz").json()["dependencies"]["cache"]["status"] == "ok"
    running_redis.stop()
    response = httpx.get(f"{server.url}/readyz")
    assert response.status_code == 200 and response.json()["dependencies"]["cache"]["status"] == "unavailable"
    assert httpx.post(f"{server.url}/v1/search", json={"query": "bees"}).status_code == 200


async def test_with_redis_frozen_the_rate_limiter_pays_its_timeout_three_times_then_skips_it(running_redis):
    import os
    import signal

    from ragline.service.api.ratelimit import RedisRateLimiter

    limiter = RedisRateLimiter(running_redis.url, rate=100, burst=100, timeout_s=0.25, breaker_open_s=30)
    assert await limiter.acquire("warm") == 0.0
    os.kill(running_redis.proc.pid, signal.SIGSTOP)
    try:
        took = []
        for _ in range(8):
            started = time.perf_counter()
            assert await limiter.acquire("a") == 0.0  # limited locally: still admitted within the burst
            took.append(time.perf_counter() - started)
    finally:
        os.kill(running_redis.proc.pid, signal.SIGCONT)
    assert all(t >= 0.2 for t in took[:3]), took  # each waited out the timeout
    assert all(t < 0.02 for t in took[3:]), took  # then the breaker skips Redis at once
    assert limiter.breaker.state == "open"
