"""Stage workers over the bus (in-process and Kafka): outputs, dead letters, replay."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ragline import DependencyUnavailable, Settings
from ragline.adapters.buses.memory import MemoryBus
from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.models import Answer, Document, Query, reply_key
from ragline.service.engine import Engine
from ragline.service.workers import (
    Output,
    Topics,
    Worker,
    dead_letters,
    generate_handler,
    ingest_handler,
    replay,
    retrieve_handler,
)

BEES = "Honeybees perform the waggle dance to tell nest mates how far away the flowers are."


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
async def bus(request):
    if request.param == "memory":
        backend = MemoryBus()
    else:
        from ragline.adapters.buses.kafka import KafkaBus

        backend = KafkaBus(request.getfixturevalue("kafka_broker").bootstrap, session_timeout_ms=2000)
    yield backend
    await backend.close()


@pytest.fixture
async def topics(bus) -> Topics:
    """Fresh topics per test, so runs on the shared broker never see each other."""
    suffix = uuid.uuid4().hex[:8]
    names = Topics(*(f"{name}-{suffix}" for name in ("docs", "queries", "context", "answers", "dlq")))
    if hasattr(bus, "create_topics"):  # Kafka: consumers only see topics that exist when they subscribe
        from ragline.adapters.buses.kafka import TopicSpec

        await bus.create_topics([TopicSpec(name, partitions=2) for name in vars(names).values()])
    return names


@pytest.fixture
async def engine(tmp_path):
    settings = Settings.load(
        milvus_uri=str(tmp_path / "w.db"),
        embedder="hashing",
        generator="extractive",
        min_relevance=0.0,
        cache_url="none",
    )
    embedder = HashingEmbedder()
    async with Engine(
        settings, embedder, MilvusStore.of(settings.store, embedder.dimension), ExtractiveGenerator()
    ) as eng:
        yield eng


async def test_five_malformed_messages_go_to_the_dlq_while_the_good_ones_flow(bus, topics, engine):
    bad = [b"not json", b"{}", b'{"id": "x"}', b'{"id": "", "text": "t"}', b"\xff\xfe"]
    for i, payload in enumerate(bad):
        await bus.publish(topics.docs, payload)
        await bus.publish(topics.docs, Document(id=f"good{i}", text=f"{BEES} ({i})").model_dump_json().encode())
    worker = Worker(bus, "ingest", topics.docs, "ingesters", ingest_handler(engine), topics.dlq)
    await asyncio.wait_for(worker.run(limit=10), 60)
    assert (worker.processed, worker.dead) == (5, 5)
    assert await engine.store.count("default") == 5
    letters = await dead_letters(bus, topics.dlq, "dlq-reader", idle_s=3)
    assert len(letters) == 5 and {lt.error_kind for lt in letters} == {"unparseable"}
    assert all(lt.topic == topics.docs and lt.stage == "ingest" and lt.attempts == 1 for lt in letters)


async def test_a_query_flows_through_retrieve_and_generate_workers_to_an_answer(bus, topics, engine):
    await engine.ingest_documents([Document(id="bees", text=BEES)])
    query = Query(text="What does the waggle dance tell nest mates?")
    await bus.publish(topics.queries, query.model_dump_json().encode(), query.request_id.encode())
    retriever = Worker(bus, "retrieve", topics.queries, "retrievers", retrieve_handler(engine, topics), topics.dlq)
    generator = Worker(bus, "generate", topics.context, "generators", generate_handler(engine, topics), topics.dlq)
    await asyncio.wait_for(asyncio.gather(retriever.run(limit=1), generator.run(limit=1)), 60)
    stream = bus.consume([topics.answers], "api")
    delivery = await asyncio.wait_for(anext(stream), 30)
    await stream.aclose()
    answer = Answer.model_validate_json(delivery.value)
    assert answer.request_id == query.request_id and delivery.key == reply_key(query)  # tenant/request id
    assert answer.citations[0].document_id == "bees"


async def test_a_retryable_failure_is_retried_then_dead_lettered_and_replay_delivers_it(bus, topics):
    down = {"value": True}
    seen: list[bytes] = []

    async def flaky(delivery):
        if down["value"]:
            raise DependencyUnavailable("store is down")
        seen.append(delivery.value)
        return [Output(topics.answers, delivery.value)]

    await bus.publish(topics.queries, b"payload-1")
    worker = Worker(bus, "retrieve", topics.queries, "retrievers", flaky, topics.dlq, max_attempts=3, backoff_s=0.01)
    await asyncio.wait_for(worker.run(limit=1), 60)
    [letter] = await dead_letters(bus, topics.dlq, "dlq-reader", idle_s=3)
    assert (letter.error_kind, letter.attempts, letter.payload) == ("retryable", 3, "payload-1")
    assert "store is down" in letter.error and letter.first_failure_at <= letter.last_failure_at
    down["value"] = False
    assert await replay(bus, [letter]) == 1
    await asyncio.wait_for(worker.run(limit=1), 60)
    assert seen == [b"payload-1"]


async def test_ingestion_waits_out_a_store_outage_instead_of_dead_lettering_accepted_documents(bus, topics):
    """A document was accepted (202): a store that is down for longer than max_attempts'
    backoff is waited out (measured on the stack: 908 accepted documents dead-lettered
    during a 15 s Milvus freeze with five attempts); past the patience, a dead letter."""
    loop = asyncio.get_running_loop()
    down_until = loop.time() + 2.0
    seen: list[bytes] = []

    async def store(delivery):
        if loop.time() < down_until or delivery.value == b"never":
            raise DependencyUnavailable("milvus is down")
        seen.append(delivery.value)
        return []

    await bus.publish(topics.docs, b"doc-1")
    worker = Worker(
        bus, "ingest", topics.docs, "ingesters", store, topics.dlq, max_attempts=2, backoff_s=0.05, outage_patience_s=30
    )
    await asyncio.wait_for(worker.run(limit=1), 60)
    assert seen == [b"doc-1"] and worker.dead == 0
    await bus.publish(topics.docs, b"never")
    worker.outage_patience_s = 1.0
    await asyncio.wait_for(worker.run(limit=1), 60)
    [letter] = await dead_letters(bus, topics.dlq, "dlq-reader", idle_s=3)
    assert letter.payload == "never" and letter.attempts > 2  # patience, not max_attempts, decided


async def test_a_query_whose_store_stays_down_is_given_up_within_its_budget_and_its_caller_told(bus, topics):
    from ragline.core.errors import DependencyTimeout
    from ragline.core.models import Failure
    from ragline.service.workers import on_dead_for

    async def frozen_store(delivery):
        await asyncio.sleep(0.4)  # a call that runs into its deadline
        raise DependencyTimeout("milvus did not answer within 0.4s")

    query = Query(text="bees", tenant="t", reply_to=topics.answers)
    await bus.publish(topics.queries, query.model_dump_json().encode(), reply_key(query))
    worker = Worker(
        bus,
        "retrieve",
        topics.queries,
        "retrievers",
        frozen_store,
        topics.dlq,
        max_attempts=5,
        backoff_s=0.5,
        on_dead=on_dead_for("retrieve", topics),
        retry_budget_s=1.0,
    )
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(worker.run(limit=1), 60)
    [letter] = await dead_letters(bus, topics.dlq, "dlq-reader", idle_s=3)
    assert letter.attempts == 2  # not five attempts of a call that times out: the caller waits
    assert asyncio.get_running_loop().time() - started < 30

    async def first_reply() -> Failure:
        async for delivery in bus.consume([topics.answers], "answer-reader"):
            return Failure.model_validate_json(delivery.value)
        raise AssertionError("no reply")

    failure = await asyncio.wait_for(first_reply(), 30)
    assert failure.request_id == query.request_id and failure.error_type == "DependencyTimeout"


async def test_a_worker_rides_out_failed_commits_and_their_messages_are_delivered_again():
    """A failed commit (a rebalance's ILLEGAL_GENERATION, a broker restart) does not stop
    the worker: it goes on, and what it could not acknowledge is handed out again."""

    class FailingCommits(MemoryBus):
        async def commit(self, delivery):
            raise DependencyUnavailable("Kafka at broker:9092: ILLEGAL_GENERATION: Commit failed")

    bus = FailingCommits()
    topics = Topics()
    for i in range(3):
        await bus.publish(topics.queries, b"m%d" % i)
    seen = []

    async def handler(delivery):
        seen.append(delivery.value)
        return []

    worker = Worker(bus, "retrieve", topics.queries, "g", handler, topics.dlq)
    await asyncio.wait_for(worker.run(limit=3), 30)  # returns normally: no failure recorded
    assert worker.failure is None and sorted(seen) == [b"m0", b"m1", b"m2"]
    again = [d.value async for d in _take(MemoryBus.consume(bus, [topics.queries], "g"), 3)]
    assert sorted(again) == [b"m0", b"m1", b"m2"]  # nothing was acknowledged: all handed out again


async def test_while_the_bus_refuses_publishes_the_worker_waits_and_dead_letters_nothing():
    class Outage(MemoryBus):
        refusals = 4

        async def publish(self, topic, value, key=None, headers=None, partition=None):
            if topic == "out" and self.refusals:
                self.refusals -= 1
                raise DependencyUnavailable("Kafka at broker:9092: Local: Message timed out")
            await super().publish(topic, value, key, headers, partition)

    bus = Outage()
    topics = Topics()
    await bus.publish(topics.queries, b"q1")

    async def handler(delivery):
        return [Output("out", delivery.value)]

    worker = Worker(bus, "retrieve", topics.queries, "g", handler, topics.dlq, max_attempts=2, backoff_s=0.01)
    await asyncio.wait_for(worker.run(limit=1), 30)
    assert bus.refusals == 0 and worker.dead == 0 and worker.processed == 1
    [out] = [d.value async for d in _take(MemoryBus.consume(bus, ["out"], "reader"), 1)]
    assert out == b"q1"


async def _take(stream, n):
    for _ in range(n):
        yield await asyncio.wait_for(anext(stream), 5)
    await stream.aclose()


async def test_documents_in_hand_together_are_written_in_batches_and_a_delete_keeps_its_place(bus, topics, engine):
    """The ingest worker writes the documents it holds at once in one call; a document's
    write, delete and write again, taken together, still end with the last write."""
    from ragline.core.models import DocumentRef
    from ragline.service.protocol import DELETE, KIND

    calls: list[int] = []
    write = engine.ingest_documents

    async def counted(documents, *args, **kwargs):
        calls.append(len(documents))
        return await write(documents, *args, **kwargs)

    engine.ingest_documents = counted
    key = b"default/again"
    await bus.publish(topics.docs, Document(id="again", text=f"{BEES} First.").model_dump_json().encode(), key)
    for i in range(40):
        await bus.publish(topics.docs, Document(id=f"d{i}", text=f"{BEES} ({i})").model_dump_json().encode())
    ref = DocumentRef(tenant="default", id="again").model_dump_json().encode()
    await bus.publish(topics.docs, ref, key, {KIND: DELETE})
    await bus.publish(topics.docs, Document(id="again", text=f"{BEES} Last.").model_dump_json().encode(), key)
    worker = Worker(bus, "ingest", topics.docs, "ingesters", ingest_handler(engine), topics.dlq, concurrency=32)
    await asyncio.wait_for(worker.run(limit=43), 60)
    assert (worker.processed, worker.dead) == (43, 0)
    assert await engine.store.count("default") == 41
    assert [h.text for h in await engine.store.document_chunks("default", "again")] == [f"{BEES} Last."]
    assert max(calls) > 1 and len(calls) < 42  # batched: fewer calls than documents
