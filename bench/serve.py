"""HTTP throughput and latency of /v1/search and /v1/query (extractive answers, so the LLM
does not dominate) at concurrency 1, 8, 32 and 64, against `ragline serve` on loopback
with MiniLM and Milvus Lite, caches off, over a collection of --chunks chunks (100,000
by default; 0: the sample corpus).

The stored vectors are generated as bench/search.py does (blends of MiniLM vectors of
the sample corpus' sentences plus noise: embedding 100k chunks takes about an hour on
two cores); each chunk's text is the sentence its vector mostly comes from, so BM25 and
the extractive answers have real text. The questions are real text about the sample
corpus, each made distinct by a number (none is ever asked twice), embedded per
request. Index: IVF_FLAT (what to configure past ~50k chunks).

Last line: {"chunks": N, "search": {"c1": {"rps", "p50_ms", "p99_ms"}, ...}, "query": {...}}.

Each level also reports the CPU milliseconds per request of the server process, of
Milvus Lite (its child) and of the load generator: on two cores they share the same
CPUs, so this says where a request's cost goes.

    python bench/serve.py [--chunks 100000] [--requests 300] [--concurrency 1,8,32,64]
                          [--retrieval hybrid|dense] [--client lean|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import QUESTIONS, LeanHTTP, cpu_seconds, free_port, median, percentile, report


async def fill(database: str, chunks: int) -> None:
    """``chunks`` generated chunks in tenant "default" of ``database`` (see the docstring)."""
    import numpy as np
    from search import sample_sentences

    from ragline import Chunk, Settings
    from ragline import sentences as sentence_index
    from ragline.adapters.embedders.minilm import MiniLMEmbedder
    from ragline.adapters.stores.milvus import MilvusStore
    from ragline.core.ids import chunk_id, content_hash

    embedder = MiniLMEmbedder(threads=1)
    sentences = sample_sentences()
    seeds = await embedder.embed(sentences)
    rng = np.random.default_rng(7)
    store = MilvusStore.of(Settings.load(milvus_uri=database, index="IVF_FLAT").store, embedder.dimension)
    try:
        for start in range(0, chunks, 2000):
            n = min(2000, chunks - start)
            picks = rng.integers(0, len(seeds), n)
            # as bench/search.py's generated_vectors, with the first sentence known: its text
            a, b = seeds[picks], seeds[rng.integers(0, len(seeds), n)]
            vectors = a + rng.uniform(0, 0.5, (n, 1)) * b + rng.normal(0, 0.03, size=a.shape)
            vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
            batch = []
            for j in range(n):
                i = start + j
                text = sentences[picks[j]]
                # its sentence and that sentence's own vector, as ingestion stores them
                stored = sentence_index.encode([text], seeds[picks[j]][None]) if len(text.split()) >= 4 else None
                batch.append(
                    Chunk(
                        id=chunk_id("default", f"doc{i // 10}", i % 10),
                        tenant="default",
                        document_id=f"doc{i // 10}",
                        number=i % 10,
                        text=text,
                        content_hash=content_hash(f"{i}:{text}"),
                        vector=vectors[j].tolist(),
                        sentences=stored,
                    )
                )
            await store.upsert(batch)
            print(f"filled {start + n} chunks", file=sys.stderr, flush=True)
        assert await store.count("default") == chunks
    finally:
        await store.close()
        await embedder.close()


def start(
    tmp: str, database: str, port: int, cache: str, chunks: int, retrieval: str
) -> tuple[subprocess.Popen, float]:
    """The server, and its start-up time (process start to /readyz 200); a server that
    exits, or is not ready within 10 minutes, ends the benchmark with its log."""
    env = dict(
        os.environ,
        RAGLINE_MILVUS_URI=database,
        RAGLINE_INDEX="IVF_FLAT",
        RAGLINE_RETRIEVAL_MODE=retrieval,
        RAGLINE_GENERATOR="extractive",
        RAGLINE_RATE_LIMIT_RPS="0",
        RAGLINE_KEYS_FILE=f"{tmp}/keys.json",
        HF_HUB_OFFLINE="1",
        RAGLINE_CACHE_URL=cache,
    )
    ragline = Path(sys.executable).with_name("ragline")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(ragline), "serve", "--no-auth", *(() if chunks else ("--sample",)), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(f"{tmp}/serve.log", "w"),  # noqa: SIM115 - the child holds it
    )
    while time.perf_counter() - started < 600:  # opening 100k chunks (the index is loaded) takes a while
        if proc.poll() is not None:
            log = Path(f"{tmp}/serve.log").read_text()[-2000:]
            raise RuntimeError(f"ragline serve exited with {proc.returncode} before it was ready:\n{log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("ragline serve did not become ready: " + Path(f"{tmp}/serve.log").read_text()[-2000:])


_next = iter(range(10**9))


def question() -> str:
    """The next question: about the sample corpus (the chunks' text comes from it), and
    never the same text twice, so no per-question memo makes a repeat look fast."""
    n = next(_next)
    return f"{QUESTIONS[n % len(QUESTIONS)]} ({n})"


class HttpxCaller:
    """httpx, for comparison (--client httpx): its client-side cost is on these cores too."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        response = await self.client.post(path, json=body)
        return response.status_code, response.content

    async def close(self) -> None:
        pass


async def load(callers: list, path: str, field: str, total: int, server_pid: int) -> dict:
    """``total`` requests from ``len(callers)`` concurrent callers, each waiting for its
    answer before the next (a closed loop), and the CPU each process spent per request."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(caller) -> None:
        for _ in counter:
            text = question()
            t0 = time.perf_counter()
            status, body = await caller.post(path, {field: text})
            if status != 200:
                raise RuntimeError(f"{path}: {status} {body[:300]!r}")
            latencies.append((time.perf_counter() - t0) * 1000)

    own, server, milvus = os.times(), cpu_seconds(server_pid, children=False), cpu_seconds(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in callers))
    elapsed = time.perf_counter() - started
    done = os.times()
    server_s = cpu_seconds(server_pid, children=False) - server
    milvus_s = cpu_seconds(server_pid) - milvus - server_s
    return {
        "rps": total / elapsed,
        "p50_ms": median(latencies),
        "p99_ms": percentile(latencies, 99),
        "deciles_ms": [percentile(latencies, q) for q in range(10, 100, 10)],
        "cpu_ms_per_request": {
            "server": server_s * 1000 / total,
            "milvus_lite": milvus_s * 1000 / total,
            "load_generator": (done.user + done.system - own.user - own.system) * 1000 / total,
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000, help="0: the sample corpus")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--retrieval", default="hybrid", choices=["dense", "bm25", "hybrid"])
    parser.add_argument(
        "--client",
        default="lean",
        choices=["lean", "httpx"],
        help="the load generator's HTTP client: lean (keep-alive, ~0.1 ms CPU per request) or httpx (~1 ms)",
    )
    parser.add_argument("--keep", help="a database file to fill once and reuse across runs (default: a fresh one)")
    parser.add_argument("--fill-into", help=argparse.SUPPRESS)  # the child that fills the database
    parser.add_argument(
        "--cache",
        default="none",
        help="none (default: every request does the work; bench/cache.py measures caching) or memory",
    )
    args = parser.parse_args()
    if args.fill_into:  # in a child process: its embedded Milvus is gone when it exits
        await fill(args.fill_into, args.chunks)
        return
    levels = [int(c) for c in args.concurrency.split(",")]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        database = args.keep or f"{tmp}/serve.db"
        filled = time.perf_counter()
        marker = f"{database}.filled-{args.chunks}-sentences"  # a fill from before stored sentences is not reused
        if args.chunks and not os.path.exists(marker):  # noqa: ASYNC240 - before any load
            command = [sys.executable, __file__, "--fill-into", database, "--chunks", str(args.chunks)]
            await asyncio.to_thread(subprocess.run, command, check=True)
            if args.keep:
                open(marker, "w").close()
        fill_s = time.perf_counter() - filled
        proc, startup_s = start(tmp, database, port, args.cache, args.chunks, args.retrieval)
        try:
            results: dict[str, dict] = {"search": {}, "query": {}}
            limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
            tenant = {"X-Ragline-Tenant": "default" if args.chunks else "sample"}  # the sample has its own tenant
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits, headers=tenant
            ) as client:

                def callers(n: int) -> list:
                    if args.client == "httpx":
                        return [HttpxCaller(client)] * n
                    return [LeanHTTP("127.0.0.1", port, tenant) for _ in range(n)]

                for name, path, field in (("search", "/v1/search", "query"), ("query", "/v1/query", "question")):
                    await load(callers(4), path, field, 20, proc.pid)  # warm-up
                    for c in levels:
                        pool = callers(c)
                        results[name][f"c{c}"] = await load(pool, path, field, args.requests, proc.pid)
                        for caller in pool:
                            await caller.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    report(
        {
            "chunks": args.chunks or "sample corpus",
            "retrieval": args.retrieval,
            "fill_s": fill_s,
            "startup_s": startup_s,  # process start to ready, with the collection loaded
            **results,
            "cache": args.cache,
            "client": args.client,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
