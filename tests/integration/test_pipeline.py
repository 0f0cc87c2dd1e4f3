"""The pipeline end to end, on the in-process bus and on a real Kafka-protocol broker (Tansu).

On Kafka, the round trip and the kill -9 test run the stages as separate `ragline worker`
processes; elsewhere the workers run in this process over the same bus adapter.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from ragline import DependencyTimeout, InvalidInput, Settings
from ragline.adapters.buses.memory import MemoryBus
from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.models import Document, Query
from ragline.service.engine import Engine
from ragline.service.gateway import Gateway
from ragline.service.pipeline import Pipeline
from ragline.service.workers import Topics, Worker, build_worker, dead_letters, on_dead_for, replay

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."
OWLS = "Barn owls hunt at night and find mice by sound alone, even in total darkness."
DOCS = [Document(id="bees", text=BEES), Document(id="owls", text=OWLS)]


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def bus_kind(request) -> str:
    return request.param


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def topics(suffix) -> Topics:
    """Fresh topic names per test, so runs on the shared broker never see each other."""
    return Topics(*(f"rag-{name}-{suffix}" for name in ("docs", "queries", "context", "answers", "dlq")))


@pytest.fixture
async def bus(bus_kind, topics, request):
    if bus_kind == "memory":
        backend = MemoryBus()
    else:
        from ragline.adapters.buses.kafka import KafkaBus, TopicSpec

        backend = KafkaBus(
            request.getfixturevalue("kafka_broker").bootstrap,
            session_timeout_ms=2000,
            fetch_wait_max_ms=10,
            interactive_topics=(topics.queries, topics.context, topics.answers),
        )
        await backend.create_topics([TopicSpec(name, partitions=4) for name in vars(topics).values()])
    yield backend
    await backend.close()


def make_settings(tmp_path, **overrides) -> Settings:
    values = dict(
        milvus_uri=str(tmp_path / "p.db"),
        embedder="hashing",
        generator="extractive",
        min_relevance=0.0,
        cache_url="none",
        chunk_tokens=64,
        chunk_overlap=8,
    )
    values.update(overrides)
    return Settings.load(**values)


@pytest.fixture
async def engine(tmp_path):
    settings = make_settings(tmp_path)
    embedder = HashingEmbedder()
    async with Engine(
        settings, embedder, MilvusStore.of(settings.store, embedder.dimension), ExtractiveGenerator()
    ) as eng:
        await eng.ingest_documents(DOCS)
        yield eng


def worker_env(topics: Topics, broker, **extra: str) -> dict[str, str]:
    env = {
        "RAGLINE_BUS_URL": f"kafka://{broker.bootstrap}",
        "RAGLINE_EMBEDDER": "hashing",
        "RAGLINE_GENERATOR": "extractive",
        "RAGLINE_MIN_RELEVANCE": "0",
        "RAGLINE_CACHE_URL": "none",
        "RAGLINE_CHUNK_TOKENS": "64",
        "RAGLINE_CHUNK_OVERLAP": "8",
        "RAGLINE_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "RAGLINE_SHUTDOWN_GRACE_S": "5",
        "RAGLINE_KAFKA_STATS_INTERVAL_MS": "500",
        "HF_HUB_OFFLINE": "1",
    }
    env.update({f"RAGLINE_TOPIC_{field.upper()}": name for field, name in vars(topics).items()})
    env.update(extra)
    return env


# -- a query's full round trip through the API ----------------------------------------------


@pytest.fixture
def round_trip_setup(bus_kind, topics, suffix, tmp_path, request, serve_app):
    """The API with --bus; on Kafka, three worker processes sharing a Milvus server."""
    common = dict(
        chunk_tokens=64,
        chunk_overlap=8,
        auth_enabled=False,
        reply_timeout_s=30,
        **{f"topic_{field}": name for field, name in vars(topics).items()},
    )
    if bus_kind == "memory":
        return serve_app(bus_url="memory", **common), []
    broker = request.getfixturevalue("kafka_broker")
    uri = request.getfixturevalue("milvus_server_uri")
    start = request.getfixturevalue("worker_processes")
    collection = f"pipe_{suffix}"
    _cli(["topics", "create"], worker_env(topics, broker))
    env = worker_env(
        topics, broker, RAGLINE_MILVUS_URI=uri, RAGLINE_COLLECTION=collection, RAGLINE_WORKER_CONCURRENCY="4"
    )
    workers = [start([stage], env) for stage in ("ingest", "retrieve", "generate")]
    api = serve_app(  # a gateway: it must not need Milvus, so it is given one that is not there
        bus_url=f"kafka://{broker.bootstrap}",
        milvus_uri="http://127.0.0.1:9",
        embedder="minilm",
        collection=collection,
        kafka_session_timeout_ms=2000,
        **common,
    )
    for worker in workers:
        worker.wait_ready()
    assert type(api.app.state.service).__name__ == "BusService" and _no_milvus_client(api)
    return api, workers


async def test_a_query_makes_the_round_trip_through_the_workers_and_the_api(round_trip_setup, bus_kind):
    api, workers = round_trip_setup
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        sent = await client.post("/v1/documents", json={"documents": [{"id": d.id, "text": d.text} for d in DOCS]})
        assert sent.status_code == 202, sent.text
        waited = await client.post("/v1/documents", json={"documents": [{"text": "x"}], "wait": True})
        assert waited.status_code == 422 and "through the bus" in waited.json()["detail"]
        deadline = time.monotonic() + 30
        while True:  # published to rag-docs; searchable once the ingest worker has both
            found = [(await client.get(f"/v1/documents/{d.id}")).status_code for d in DOCS]
            if found == [200, 200] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert found == [200, 200]
        hits = (await client.post("/v1/search", json={"query": "waggle dance"})).json()["hits"]
        assert hits and hits[0]["document_id"] == "bees"

        reply = await client.post("/v1/query", json={"question": "What does the waggle dance tell nest mates?"})
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert "waggle dance" in answer["text"] and answer["citations"][0]["document_id"] == "bees"

        events = []
        async with client.stream(
            "POST", "/v1/query", json={"question": "How do barn owls find mice?", "stream": True}
        ) as streamed:
            assert streamed.headers["content-type"].startswith("text/event-stream")
            async for line in streamed.aiter_lines():
                if line.startswith("event: "):
                    events.append(line.removeprefix("event: "))
                elif line.startswith("data: ") and events[-1] == "answer":
                    final = json.loads(line.removeprefix("data: "))
        assert events[0] == "token" and events[-1] == "answer" and "error" not in events
        assert final["citations"][0]["document_id"] == "owls"
        chat = await client.post(
            "/v1/chat/completions",
            json={"model": "ragline", "messages": [{"role": "user", "content": "What does the waggle dance tell?"}]},
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["sources"][0]["document_id"] == "bees"  # the OpenAI-compatible route goes through the bus
        ready = (await client.get("/readyz")).json()
        assert ready["dependencies"]["bus"]["status"] == "ok"
        api_metrics = metric_samples((await client.get("/metrics")).text)
    assert api_metrics[("rag_query_latency_seconds_count", (("stage", "total"),))] == 3  # JSON, streamed, chat
    if bus_kind == "memory":  # the workers run in the API process
        assert api_metrics[("ragline_stage_messages_total", (("outcome", "ok"), ("stage", "generate")))] == 3
    for worker in workers:  # three processes, each did its stage's share, and says so on its metrics port
        stage = worker.stages[0]
        stats = httpx.get(f"{worker.url}/readyz", timeout=5).json()["workers"][stage]
        assert stats["processed"] >= 1, (worker.stages, stats)
        deadline = time.monotonic() + 15
        while True:  # consumer lag comes with librdkafka's statistics, every 500 ms here
            found = metric_samples(httpx.get(f"{worker.url}/metrics", timeout=5).text)
            lag = {labels: v for (name, labels), v in found.items() if name == "ragline_consumer_lag"}
            if lag or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found[("ragline_stage_messages_total", (("outcome", "ok"), ("stage", stage)))] >= 1
        assert lag and all(dict(labels)["group"] == f"ragline-{stage}" for labels in lag), lag
        assert all(v >= 0 for v in lag.values())
        if stage == "ingest":
            assert found[("rag_ingest_freshness_seconds_count", ())] == 2
        if stage == "retrieve":
            assert found[("vector_search_success_total", ())] >= 3
        if stage == "generate":
            assert found[("llm_requests_total", (("outcome", "ok"),))] == 3
        lines = [line for line in worker.log().splitlines() if line.strip()]
        assert lines and all(json.loads(line)["level"] for line in lines[1:])  # JSON lines (the first may be cut)
    for worker in workers:  # SIGTERM: a graceful stop, exit status 0
        assert worker.terminate(timeout_s=30) == 0, worker.log()


def _no_milvus_client(api) -> bool:
    """No engine (so no MilvusClient, no MiniLM session) anywhere in the gateway's app state."""
    answerer = api.app.state.service
    return not any(hasattr(holder, "engine") for holder in (api.app.state, answerer, answerer.gateway))


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- consumer groups share and rebalance ------------------------------------------------------


async def test_two_retrievers_in_one_group_share_the_partitions_and_one_takes_over(bus, topics, engine, suffix):
    seen: dict[str, set[int]] = {"a": set(), "b": set()}
    retrievers = {}
    for name in seen:
        worker = build_worker("retrieve", engine, bus, topics, group=f"retrievers-{suffix}", concurrency=2)
        inner = worker.handler

        async def tracked(delivery, inner=inner, name=name):
            seen[name].add(delivery.partition)
            return await inner(delivery)

        worker.handler = tracked
        retrievers[name] = worker
    generator = build_worker("generate", engine, bus, topics, group=f"generators-{suffix}", concurrency=8)
    gateway = await Gateway(bus, topics, timeout_s=60).start()
    tasks = {name: asyncio.create_task(w.run()) for name, w in retrievers.items()}
    tasks["g"] = asyncio.create_task(generator.run())
    try:
        deadline = time.monotonic() + 60
        while not (retrievers["a"].processed and retrievers["b"].processed):  # until both hold partitions
            assert time.monotonic() < deadline, "the second retriever never got a partition"
            await asyncio.gather(*(gateway.ask(Query(text=f"waggle dance {i}")) for i in range(8)))
        retrievers["a"].stop()
        await asyncio.wait_for(tasks.pop("a"), 30)  # leaves the group: its partitions move to b
        before = retrievers["b"].processed
        seen["b"].clear()
        answers = await asyncio.wait_for(
            asyncio.gather(*(gateway.ask(Query(text=f"owls at night {i}")) for i in range(40))), 60
        )
        assert len({a.request_id for a in answers}) == 40
        # at least the 40: a message b took before the rebalance is not committed by it
        # (buses/kafka.py: never commit across a reassignment) and is delivered again
        assert 40 <= retrievers["b"].processed - before <= 40 + 8
        if bus.name == "kafka":
            assert seen["b"] == {0, 1, 2, 3}  # every partition, including a's
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        await gateway.close()


# -- several API replicas ----------------------------------------------------------------------


async def test_two_api_replicas_sharing_the_answers_topic_each_get_their_own_answers(bus, topics, engine):
    replicas = [await Gateway(bus, topics, timeout_s=60).start() for _ in range(2)]
    await _two_replicas_ask(bus, topics, engine, replicas)
    assert all(g.foreign >= 20 for g in replicas)  # each sees the other's answers and ignores them


@pytest.mark.integration
async def test_two_api_replicas_with_a_partition_each_see_only_their_own_answers(kafka_broker, topics, engine):
    from ragline.adapters.buses.kafka import KafkaBus, TopicSpec

    bus = KafkaBus(kafka_broker.bootstrap, session_timeout_ms=2000)  # the in-process bus has one partition
    await bus.create_topics([TopicSpec(name, partitions=4) for name in vars(topics).values()])
    replicas = [await Gateway(bus, topics, timeout_s=60, reply_partition=n).start() for n in range(2)]
    await _two_replicas_ask(bus, topics, engine, replicas)
    assert [g.foreign for g in replicas] == [0, 0]
    await bus.close()


async def _two_replicas_ask(bus, topics, engine, replicas: list[Gateway]) -> None:
    async with Pipeline(engine, bus, topics, stages=("retrieve", "generate")):
        asked = {n: [Query(text=f"waggle dance {n}-{i}") for i in range(20)] for n in range(2)}
        answers = await asyncio.wait_for(asyncio.gather(*(replicas[n].ask(q) for n in range(2) for q in asked[n])), 60)
    for gateway in replicas:
        await gateway.close()
    sent = [q.request_id for n in range(2) for q in asked[n]]
    assert [a.request_id for a in answers] == sent  # each caller got its own answer
    assert [g.answered for g in replicas] == [20, 20]


# -- kill -9 of a generator with 200 queries in flight ------------------------------------------


async def test_kill_9_of_a_generator_with_200_queries_in_flight_loses_none_and_answers_each_once(
    bus, bus_kind, topics, engine, suffix, tmp_path, request
):
    retriever = build_worker("retrieve", engine, bus, topics, group=f"r-{suffix}", concurrency=8)
    gateway = await Gateway(bus, topics, timeout_s=120).start()
    tasks = [asyncio.create_task(retriever.run())]
    if bus_kind == "memory":

        def start_generator():
            worker = build_worker("generate", engine, bus, topics, group=f"g-{suffix}", concurrency=2)
            return worker, asyncio.create_task(worker.run())

        first, first_task = start_generator()
        kill = first_task.cancel  # abrupt: no graceful stop, nothing committed for what it held
    else:
        start = request.getfixturevalue("worker_processes")
        env = worker_env(
            topics,
            request.getfixturevalue("kafka_broker"),
            RAGLINE_MILVUS_URI=str(tmp_path / "g.db"),
            RAGLINE_WORKER_CONCURRENCY="2",
        )
        first = start(["generate"], env)
        first.wait_ready()
        kill = first.kill  # SIGKILL to its process group
    asked = [asyncio.create_task(gateway.ask(Query(text=f"How far are the flowers? ({i})"))) for i in range(200)]
    try:
        deadline = time.monotonic() + 60
        while gateway.answered < 20:
            assert time.monotonic() < deadline, "the first generator answered nothing"
            await asyncio.sleep(0.005)
        kill()
        answered_at_kill = gateway.answered
        assert answered_at_kill < 200, "every query was answered before the kill: the test proved nothing"
        if bus_kind == "memory":
            _, second_task = start_generator()
            tasks += [first_task, second_task]
        else:
            start(["generate"], env)
        answers = await asyncio.wait_for(asyncio.gather(*asked), 120)
    finally:
        for task in tasks + asked:
            task.cancel()
        await asyncio.gather(*tasks, *asked, return_exceptions=True)
        await gateway.close()
    ids = [a.request_id for a in answers]
    assert len(ids) == 200 and len(set(ids)) == 200  # every query, its own answer, exactly once
    assert gateway.answered == 200
    assert all(a.citations and a.citations[0].document_id == "bees" for a in answers)
    print(f"answered before the kill: {answered_at_kill}; redelivered duplicates dropped: {gateway.duplicates}")


# -- poison messages, replay, failures and timeouts ------------------------------------------------


async def test_five_malformed_queries_go_to_the_dlq_while_good_ones_flow_and_replay_works(
    bus, bus_kind, topics, engine, suffix, request
):
    pipeline = Pipeline(engine, bus, topics, stages=("retrieve", "generate"), concurrency=4, timeout_s=60)
    bad = [b"not json", b"{}", b'{"text": ""}', b'{"text": "q", "top_k": 0}', b"\xff\xfe"]
    async with pipeline:
        for payload in bad:
            await bus.publish(topics.queries, payload)
        answers = await asyncio.wait_for(
            asyncio.gather(*(pipeline.gateway.ask(Query(text=f"Where do barn owls hunt? {i}")) for i in range(20))), 60
        )
        assert all(a.citations[0].document_id == "owls" for a in answers)
        letters = await dead_letters(bus, topics.dlq, idle_s=3)
        assert len(letters) == 5 and {lt.error_kind for lt in letters} == {"unparseable"}
        assert all(lt.stage == "retrieve" and lt.topic == topics.queries for lt in letters)
        if bus_kind == "kafka":  # the CLI against the broker
            env = worker_env(topics, request.getfixturevalue("kafka_broker"))
            listed = _cli(["dlq", "list", "--json", "--idle", "3"], env)
            assert sorted(item["id"] for item in json.loads(listed)) == sorted(lt.id for lt in letters)
            assert "replayed 1 dead letters" in _cli(["dlq", "replay", "--id", letters[0].id, "--idle", "3"], env)
        else:
            assert await replay(bus, letters[:1], topics.dlq) == 1
        # the replayed message is still malformed: it is dead-lettered again, the original marked replayed
        deadline = time.monotonic() + 30
        while len(await dead_letters(bus, topics.dlq, idle_s=2, include_replayed=True)) < 6:
            assert time.monotonic() < deadline
        pending = await dead_letters(bus, topics.dlq, idle_s=2)
        assert len(pending) == 5 and letters[0].id not in {lt.id for lt in pending}
        assert pipeline.workers["retrieve"].dead == 6


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ragline", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_stage_that_gives_up_tells_the_caller_at_once(bus, topics, engine, suffix):
    async def refuse(delivery):
        raise InvalidInput("filter field 'colour' is not indexed")

    worker = Worker(
        bus, "retrieve", topics.queries, f"r-{suffix}", refuse, topics.dlq, on_dead=on_dead_for("retrieve", topics)
    )
    task = asyncio.create_task(worker.run())
    async with Gateway(bus, topics, timeout_s=60) as gateway:
        started = time.monotonic()
        with pytest.raises(InvalidInput, match="the retrieve stage failed: filter field 'colour'"):
            await gateway.ask(Query(text="anything"))
        assert time.monotonic() - started < 30
    task.cancel()


async def test_without_workers_a_query_times_out_with_a_clear_error(bus, topics):
    async with Gateway(bus, topics, timeout_s=1.5) as gateway:
        started = time.monotonic()
        with pytest.raises(DependencyTimeout, match="no answer to request .* within 1.5s"):
            await gateway.ask(Query(text="is anyone there?"))
        assert time.monotonic() - started < 5


@pytest.mark.integration
async def test_the_api_answers_504_when_no_worker_answers(kafka_broker, topics, serve_app):
    _cli(["topics", "create"], worker_env(topics, kafka_broker))
    api = serve_app(
        bus_url=f"kafka://{kafka_broker.bootstrap}",
        auth_enabled=False,
        reply_timeout_s=1,
        **{f"topic_{field}": name for field, name in vars(topics).items()},
    )
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        reply = await client.post("/v1/query", json={"question": "is anyone there?"})
    assert reply.status_code == 504 and reply.headers["content-type"] == "application/problem+json"
    assert "workers are down or behind" in reply.json()["detail"]


# -- streaming ingestion ----------------------------------------------------------------------------


async def test_a_published_document_becomes_searchable_within_seconds_and_freshness_is_recorded(
    bus, topics, engine, suffix
):
    worker = build_worker("ingest", engine, bus, topics, group=f"i-{suffix}", metrics=engine.metrics)
    task = asyncio.create_task(worker.run())
    gateway = Gateway(bus, topics)
    fresh_before = engine.metrics.registry.get_sample_value("rag_ingest_freshness_seconds_count")
    try:
        published = time.monotonic()
        await gateway.submit([Document(id="moles", text="Star-nosed moles find food with 22 fleshy tentacles.")])
        while not [h for h in (await engine.search("star-nosed moles tentacles")).hits if h.document_id == "moles"]:
            assert time.monotonic() - published < 20
            await asyncio.sleep(0.02)
        assert time.monotonic() - published < 20
        count = engine.metrics.registry.get_sample_value("rag_ingest_freshness_seconds_count")
        assert count == fresh_before + 1
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_a_delete_sent_right_after_a_queued_upsert_leaves_the_document_deleted(bus, topics, engine, suffix):
    """Deletes travel rag-docs keyed like upserts: a delete published while the upsert
    of the same document still waits on the topic is applied after it, never undone."""
    gateway = Gateway(bus, topics)
    docs = [Document(id=f"race-{n}", text=f"Racing document {n} about star-nosed moles.") for n in range(20)]
    await gateway.submit(docs)  # queued: no worker runs yet
    for doc in docs[::2]:
        await gateway.delete(doc.tenant, doc.id)
    await gateway.submit([Document(id="race-last", text="The last one, written after the deletes.")])
    worker = build_worker("ingest", engine, bus, topics, group=f"i-{suffix}", metrics=engine.metrics)
    task = asyncio.create_task(worker.run())
    try:
        started = time.monotonic()
        published = len(docs) + len(docs[::2]) + 1  # upserts, deletes, the last one
        while worker.processed < published:  # every message handled: a delete undone would show
            assert time.monotonic() - started < 30, worker.processed
            await asyncio.sleep(0.05)
        stored = {d.id: bool(await engine.store.document_chunks("default", d.id)) for d in docs}
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    assert stored == {d.id: n % 2 == 1 for n, d in enumerate(docs)}


@pytest.mark.integration
async def test_with_kafka_transactions_outputs_and_offsets_commit_together(kafka_broker, topics, engine, suffix):
    """Tansu runs the transactional protocol (its read_committed isolation is not
    trustworthy, so what is checked is the flow and the offsets the transactions commit)."""
    from confluent_kafka import Consumer, TopicPartition

    from ragline.adapters.buses.kafka import KafkaBus, TopicSpec

    plain = KafkaBus(kafka_broker.bootstrap, session_timeout_ms=2000)
    await plain.create_topics([TopicSpec(name, partitions=1) for name in vars(topics).values()])
    workers_bus = KafkaBus(kafka_broker.bootstrap, session_timeout_ms=2000, transactional_id=f"test-{suffix}")
    assert workers_bus.transactional
    retriever = build_worker("retrieve", engine, workers_bus, topics, group=f"tr-{suffix}", concurrency=8)
    generator = build_worker("generate", engine, workers_bus, topics, group=f"tg-{suffix}", concurrency=8)
    assert retriever.concurrency == generator.concurrency == 1
    gateway = await Gateway(plain, topics, timeout_s=60).start()
    tasks = [asyncio.create_task(w.run()) for w in (retriever, generator)]
    try:
        await plain.publish(topics.queries, b"not a query")  # dead-lettered, and committed, in a transaction
        answers = await asyncio.wait_for(
            asyncio.gather(*(gateway.ask(Query(text=f"waggle dance {i}")) for i in range(5))), 60
        )
        assert all(a.citations[0].document_id == "bees" for a in answers)
        letters = await dead_letters(plain, topics.dlq, idle_s=3)
        assert len(letters) == 1 and letters[0].stage == "retrieve"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gateway.close()
    for group, topic, count in ((f"tr-{suffix}", topics.queries, 6), (f"tg-{suffix}", topics.context, 5)):
        offsets = [d.offset for d in await _read_all(plain, topic, count)]
        reader = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group})
        [committed] = await asyncio.to_thread(reader.committed, [TopicPartition(topic, 0)], 10)
        await asyncio.to_thread(reader.close)
        # every message consumed and committed (transaction markers take offsets between them)
        assert len(offsets) == count and committed.offset == max(offsets) + 1, (group, offsets, committed)
    await workers_bus.close()
    await plain.close()


async def _read_all(bus, topic: str, count: int) -> list:
    stream = bus.consume([topic], f"reader-{uuid.uuid4().hex[:6]}")
    got = []
    try:
        while len(got) < count:
            got.append(await asyncio.wait_for(anext(stream), 30))
    finally:
        await stream.aclose()
    return got


@pytest.mark.integration
async def test_topics_create_sets_partitions_replication_and_retention_and_is_idempotent(kafka_broker, topics):
    from confluent_kafka.admin import AdminClient, ConfigResource

    groups = f"{topics.dlq}-groups"  # the group directory: one partition, whatever the setting
    env = {**worker_env(topics, kafka_broker), "RAGLINE_TOPIC_PARTITIONS": "3", "RAGLINE_TOPIC_GROUPS": groups}
    first = _cli(["topics", "create"], env)
    assert first.count(": created") == 6 and f"{groups}: created (partitions 1," in first
    assert _cli(["topics", "create"], env).count(": exists") == 6
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    metadata = await asyncio.to_thread(admin.list_topics, timeout=10)
    assert all(len(metadata.topics[name].partitions) == 3 for name in vars(topics).values())
    retention = {}
    for resource, future in admin.describe_configs(
        [ConfigResource("topic", t) for t in (topics.dlq, topics.queries)]
    ).items():
        retention[resource.name] = int((await asyncio.to_thread(future.result, 10))["retention.ms"].value)
    assert retention == {topics.dlq: 7 * 86_400_000, topics.queries: 24 * 3_600_000}


async def test_a_stopped_worker_finishes_what_it_holds_and_hands_back_the_rest(bus, topics, suffix):
    done: list[bytes] = []

    async def slow(delivery):
        await asyncio.sleep(0.3)
        done.append(delivery.value)
        return []

    for i in range(20):
        await bus.publish(topics.queries, b"m%d" % i)
    first = Worker(bus, "retrieve", topics.queries, f"g-{suffix}", slow, topics.dlq, concurrency=4)
    task = asyncio.create_task(first.run(grace_s=10))
    deadline = time.monotonic() + 30
    while len(done) < 2:
        assert time.monotonic() < deadline, "the worker took nothing"
        await asyncio.sleep(0.01)
    first.stop()
    await asyncio.wait_for(task, 20)
    assert first.processed == len(done) >= 2  # whatever it had taken, it finished
    second = Worker(bus, "retrieve", topics.queries, f"g-{suffix}", slow, topics.dlq, concurrency=4)
    await asyncio.wait_for(second.run(limit=20 - first.processed), 60)
    assert sorted(done) == sorted(b"m%d" % i for i in range(20))  # nothing lost, nothing twice
