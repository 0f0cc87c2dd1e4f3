"""Per-stage worker capacity: messages per second one worker process handles, for the
capacity arithmetic in docs/scaling.md.

Each stage's worker (concurrency 32) drains a backlog of messages from the in-process
bus, so the figure is the stage's own cost (MiniLM, Milvus Lite, extractive answers),
not the broker's. ONNX gets one thread, as in a 1-CPU pod. Over a Tansu broker the
same worker is also timed (`kafka_*`), to show the per-message Kafka overhead.

Last line: {"ingest_docs_per_s", "retrieve_per_s", "generate_per_s", "kafka_retrieve_per_s", ...}.

    python bench/workers.py [--messages 400] [--only ingest] [--milvus-uri http://HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

from _common import QUESTIONS, report, start_broker

from ragline.adapters.buses import build_bus, topic_specs
from ragline.adapters.buses.memory import MemoryBus
from ragline.core.models import Document, Query
from ragline.service.engine import Engine
from ragline.service.samples import sample_files
from ragline.service.workers import Topics, build_worker
from ragline.settings import Settings


async def drain(engine: Engine, bus, topics: Topics, stage: str, payloads: list[bytes], topic: str) -> float:
    await asyncio.gather(*(bus.publish(topic, payload) for payload in payloads))  # a backlog, in batches
    worker = build_worker(stage, engine, bus, topics, group=f"bench-{stage}-{uuid.uuid4().hex[:6]}", concurrency=32)
    handler, first = worker.handler, []

    async def timed(delivery):  # the clock starts at the first message: a group join is not throughput
        first.append(first[0] if first else time.perf_counter())
        return await handler(delivery)

    worker.handler = timed
    await worker.run(limit=len(payloads))
    elapsed = time.perf_counter() - first[0]
    assert worker.processed == len(payloads), (worker.processed, worker.dead)
    return (len(payloads) - 1) / elapsed


async def contexts(engine: Engine, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        query = Query(text=QUESTIONS[i % len(QUESTIONS)], top_k=3)
        out.append((await engine.retrieve(query)).model_dump_json().encode())
    return out


async def run(args) -> dict:
    result: dict = {"messages": args.messages}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(
            milvus_uri=args.milvus_uri or f"{tmp}/w.db",
            collection=f"bench_workers_{uuid.uuid4().hex[:6]}",
            generator="extractive",
            cache_url="none",
            retrieval_mode="dense",
            embed_threads=1,
        )
        engine = Engine.from_settings(settings)
        await engine.ingest_paths(sample_files())
        queries = [
            Query(text=f"{QUESTIONS[i % len(QUESTIONS)]} ({i})", top_k=3).model_dump_json().encode()
            for i in range(args.messages)
        ]
        docs = [
            Document(
                id=f"bench-{i}",
                text=f"Note {i}: the ferry to the lighthouse island leaves at {i % 12}:30 "
                "every morning from the old harbour, weather permitting, and returns at noon.",
            )
            .model_dump_json()
            .encode()
            for i in range(args.messages // 4)
        ]
        topics = Topics()
        bus = MemoryBus()
        result["ingest_docs_per_s"] = await drain(engine, bus, topics, "ingest", docs, topics.docs)
        if args.only == "ingest":
            await engine.close()
            return result
        result["retrieve_per_s"] = await drain(engine, bus, topics, "retrieve", queries, topics.queries)
        result["generate_per_s"] = await drain(
            engine, bus, topics, "generate", await contexts(engine, args.messages), topics.context
        )
        proc, bootstrap = start_broker()
        try:
            suffix = uuid.uuid4().hex[:6]
            names = {f"topic_{f}": f"rag-{f}-{suffix}" for f in ("docs", "queries", "context", "answers", "dlq")}
            shape = Settings.load(bus_url=f"kafka://{bootstrap}", kafka_session_timeout_ms=2000, **names)
            kafka = build_bus(shape.bus)
            await kafka.create_topics(topic_specs(shape.bus))
            kt = Topics.from_settings(shape)
            result["kafka_retrieve_per_s"] = await drain(engine, kafka, kt, "retrieve", queries, kt.queries)
            result["kafka_generate_per_s"] = await drain(
                engine, kafka, kt, "generate", await contexts(engine, args.messages), kt.context
            )
            await kafka.close()
        finally:
            proc.kill()
        await engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--only", choices=("ingest",), default=None, help="only the ingest worker's figure")
    parser.add_argument("--milvus-uri", default=None, help="a Milvus server (default: Milvus Lite)")
    report(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
