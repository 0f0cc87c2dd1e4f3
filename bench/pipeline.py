"""What the Kafka path adds over the in-process path, pipeline throughput, and freshness.

The same Pipeline (retrieve, generate and ingest workers + the request-reply gateway)
runs once over the in-process bus and once over a Tansu broker on loopback, with MiniLM,
Milvus Lite over the sample corpus, extractive answers (so the LLM does not dominate),
dense retrieval and caches off. Latency: sequential queries (one in flight). Throughput:
``--concurrency`` queries in flight over Kafka. Freshness: documents published to the
docs topic one at a time, timed until a search finds them.

Last line: {"inproc_p50_ms", "kafka_p50_ms", "kafka_p99_ms", "added_p99_ms", "queries_per_s",
"freshness_p50_ms", "freshness_p99_ms", ...}.

    python bench/pipeline.py [--queries 300] [--concurrency 32] [--documents 40]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

from _common import QUESTIONS, median, percentile, report, start_broker

from ragline.adapters.buses import build_bus, topic_specs
from ragline.core.models import Document, Query
from ragline.service.engine import Engine
from ragline.service.pipeline import Pipeline
from ragline.service.samples import sample_files
from ragline.service.workers import Topics
from ragline.settings import Settings


async def sequential(pipeline: Pipeline, n: int) -> list[float]:
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        await pipeline.gateway.ask(Query(text=QUESTIONS[i % len(QUESTIONS)], top_k=3))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


async def throughput(pipeline: Pipeline, n: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            await pipeline.gateway.ask(Query(text=QUESTIONS[i % len(QUESTIONS)], top_k=3))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


async def freshness(pipeline: Pipeline, engine: Engine, n: int) -> list[float]:
    times = []
    for i in range(n):
        doc = Document(
            id=f"fresh-{uuid.uuid4().hex[:8]}",
            text=f"Bulletin {i}: the harbour ferry to the "
            f"lighthouse island now leaves at {7 + i % 5}:{i % 6}0 every morning, weather permitting.",
        )
        started = time.perf_counter()
        await pipeline.gateway.submit([doc])
        while not (await engine.store.stored_chunks(doc.tenant, [doc.id]))[doc.id]:
            await asyncio.sleep(0.005)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run(args) -> dict:
    proc, bootstrap = start_broker()
    result: dict = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = dict(
                milvus_uri=f"{tmp}/p.db",
                generator="extractive",
                cache_url="none",
                retrieval_mode="dense",
                embed_threads=1,
                worker_concurrency=args.concurrency,
                kafka_session_timeout_ms=2000,
            )
            settings = Settings.load(**base)
            engine = Engine.from_settings(settings)
            await engine.ingest_paths(sample_files())
            await engine.search("warm up")
            shapes = {
                "inproc": dict(bus_url="memory"),
                "kafka": dict(bus_url=f"kafka://{bootstrap}"),
                "kafka_linger5": dict(bus_url=f"kafka://{bootstrap}", kafka_interactive_linger_ms=5),
            }
            runs: dict[str, dict] = {}
            for name, extra in shapes.items():
                suffix = uuid.uuid4().hex[:6]
                names = {f"topic_{f}": f"rag-{f}-{suffix}" for f in ("docs", "queries", "context", "answers", "dlq")}
                shape = Settings.load(**base, **extra, **names)
                bus = build_bus(shape.bus)
                if hasattr(bus, "create_topics"):
                    await bus.create_topics(topic_specs(shape.bus))
                async with Pipeline(engine, bus, Topics.from_settings(shape), concurrency=args.concurrency) as pipe:
                    await sequential(pipe, 10)  # warm: group joins, connections
                    lat = await sequential(pipe, args.queries)
                    runs[name] = {
                        "p50_ms": median(lat),
                        "p90_ms": percentile(lat, 90),
                        "p99_ms": percentile(lat, 99),
                        "queries_per_s": await throughput(pipe, args.queries * 2, args.concurrency),
                    }
                    if name != "kafka_linger5":
                        fresh = await freshness(pipe, engine, args.documents)
                        runs[name]["freshness_p50_ms"] = median(fresh)
                        runs[name]["freshness_p99_ms"] = percentile(fresh, 99)
                await bus.close()
            await engine.close()
    finally:
        proc.kill()
    inproc, kafka = runs["inproc"], runs["kafka"]
    result = {
        "inproc_p50_ms": inproc["p50_ms"],
        "inproc_p99_ms": inproc["p99_ms"],
        "kafka_p50_ms": kafka["p50_ms"],
        "kafka_p90_ms": kafka["p90_ms"],
        "kafka_p99_ms": kafka["p99_ms"],
        "added_p50_ms": kafka["p50_ms"] - inproc["p50_ms"],
        "added_p99_ms": kafka["p99_ms"] - inproc["p99_ms"],
        "queries_per_s": kafka["queries_per_s"],
        "inproc_queries_per_s": inproc["queries_per_s"],
        "freshness_p50_ms": kafka["freshness_p50_ms"],
        "freshness_p99_ms": kafka["freshness_p99_ms"],
        "inproc_freshness_p50_ms": inproc["freshness_p50_ms"],
        "linger5_kafka_p50_ms": runs["kafka_linger5"]["p50_ms"],
        "linger5_kafka_p99_ms": runs["kafka_linger5"]["p99_ms"],
        "linger5_queries_per_s": runs["kafka_linger5"]["queries_per_s"],
        "queries": args.queries,
        "concurrency": args.concurrency,
        "documents": args.documents,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--documents", type=int, default=40)
    report(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
