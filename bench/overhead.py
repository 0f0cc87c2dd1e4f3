"""What ragline adds on top of the bare components, per query and per written document.

On SciFact (../shared/datasets/scifact: 5,183 abstracts), one process, one ONNX thread:

1. Write path: every abstract through ragline's own ingest path (chunking in MiniLM
   tokens, content-hash lookups, upserts with the BM25 field, stale-chunk deletes) into
   Milvus Lite, with vectors computed beforehand (an embedder that looks them up), so
   what is timed is everything but the embedder: `store_docs_per_s` and
   `ingest_overhead_ms_per_doc` (the embedder's lookups subtracted).
2. Query path, the same SciFact questions through
   (a) bare components: the tokenizer + onnxruntime MiniLM session, then pymilvus'
       MilvusClient.search on the same collection (tenant filter, top 10, dense);
   (b) ragline's engine (`Engine.search`, dense, caches off);
   (c) ragline over HTTP (`POST /v1/search` on `ragline serve`, loopback, one client).
   Each layer's added milliseconds at p50 and p99 (per-query differences of the
   medians of their own runs, not of pairs).

Last line: {"store_docs_per_s", "ingest_overhead_ms_per_doc", "bare_p50_ms",
"engine_p50_ms", "http_p50_ms", "engine_overhead_p50_ms", "http_overhead_p50_ms", ...}.

    python bench/overhead.py [--queries 300] [--documents 5183] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from _common import ROOT, free_port, median, percentile, report

from ragline import Document, Engine, Settings
from ragline.adapters.embedders.minilm import MiniLMEmbedder, _session, load_tokenizer, question_model
from ragline.adapters.stores.milvus import MilvusStore

SCIFACT = Path(os.environ.get("RAGLINE_SCIFACT", ROOT.parent / "shared" / "datasets" / "scifact"))
TENANT = "default"  # what `ragline serve --no-auth` serves


class Precomputed:
    """An embedder that looks vectors up (computed before the clock starts)."""

    name = "precomputed"
    dimension = 384
    semantic = False

    def __init__(self, tokenizer, table: dict[str, np.ndarray]) -> None:
        self.tokenizer = tokenizer
        self.table = table
        self.seconds = 0.0

    async def embed(self, texts, tenant: str = "", *, interactive: bool = False) -> np.ndarray:
        t0 = time.perf_counter()
        out = np.stack([self.table[t] for t in texts])
        self.seconds += time.perf_counter() - t0
        return out

    async def embed_query(self, text: str, tenant: str = "", *, exact: bool = False) -> np.ndarray:
        return (await self.embed([text]))[0]

    async def close(self) -> None:
        pass


def documents(limit: int) -> list[Document]:
    out = []
    with open(SCIFACT / "corpus.jsonl") as corpus:
        for line in corpus:
            row = json.loads(line)
            out.append(Document(id=row["_id"], tenant=TENANT, text=f"{row['title']}\n\n{row['text']}"))
            if len(out) == limit:
                break
    return out


def questions(limit: int) -> list[str]:
    with open(SCIFACT / "queries.jsonl") as queries:
        return [json.loads(line)["text"] for line in queries][:limit]


async def write_path(settings: Settings, docs: list[Document], batch: int) -> dict:
    from ragline.service.engine import chunker_for

    tokenizer = load_tokenizer()
    probe = Precomputed(tokenizer, {})
    chunker = chunker_for(probe, settings)
    rng = np.random.default_rng(7)
    table = {}
    for doc in docs:  # the same chunks the ingest path will make, each with a unit vector
        for text in chunker.split(doc.text):
            v = rng.normal(size=384).astype(np.float32)
            table[text] = v / np.linalg.norm(v)
    embedder = Precomputed(tokenizer, table)
    store = MilvusStore.of(settings.store, 384)
    engine = Engine(settings, embedder, store)
    try:
        started = time.perf_counter()
        chunks = 0
        for i in range(0, len(docs), batch):
            chunks += (await engine.ingest_documents(docs[i : i + batch])).chunks_written
        elapsed = time.perf_counter() - started
        assert await store.count(TENANT) == chunks
    finally:
        await engine.close()
    return {
        "documents": len(docs),
        "chunks": chunks,
        "store_docs_per_s": len(docs) / elapsed,
        "ingest_overhead_ms_per_doc": (elapsed - embedder.seconds) * 1000 / len(docs),
    }


def bare_queries(database: str, collection: str, texts: list[str], precision: str) -> list[float]:
    from pymilvus import MilvusClient

    # the same graph the engine uses for questions (the int8 copy by default)
    session, tokenizer = _session(1, question_model(precision)[0]), load_tokenizer()
    client = MilvusClient(database)
    latencies = []
    for text in texts:
        t0 = time.perf_counter()
        vector = MiniLMEmbedder._embed_batch([text], session, tokenizer)[0]
        hits = client.search(
            collection,
            data=[vector.tolist()],
            anns_field="vector",
            limit=10,
            filter=f'tenant == "{TENANT}"',
            output_fields=["document_id", "number", "text", "content_hash", "metadata"],
        )
        assert len(hits[0]) == 10
        latencies.append((time.perf_counter() - t0) * 1000)
    client.close()
    return latencies


async def engine_queries(settings: Settings, texts: list[str]) -> list[float]:
    engine = Engine(settings, MiniLMEmbedder(threads=1), MilvusStore.of(settings.store, 384))
    latencies = []
    try:
        for text in texts:
            t0 = time.perf_counter()
            context = await engine.search(text, tenant=TENANT, top_k=10, mode="dense")
            assert len(context.hits) == 10
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await engine.close()
    return latencies


def http_queries(database: str, texts: list[str]) -> list[float]:
    port = free_port()
    env = dict(
        os.environ,
        RAGLINE_MILVUS_URI=database,
        RAGLINE_RETRIEVAL_MODE="dense",
        RAGLINE_CACHE_URL="none",
        RAGLINE_RATE_LIMIT_RPS="0",
        HF_HUB_OFFLINE="1",
    )
    ragline = Path(sys.executable).with_name("ragline")
    proc = subprocess.Popen(
        [str(ragline), "serve", "--no-auth", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    latencies = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        # The standard library's keep-alive client: httpx spends ~1 ms of CPU per request
        # in the client, which is not the server's overhead.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        for i, text in enumerate([*texts[:10], *texts]):  # ten warm-up requests first
            t0 = time.perf_counter()
            connection.request("POST", "/v1/search", json.dumps({"query": text, "top_k": 10}), headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"/v1/search: {response.status} {body[:300]!r}")
            if i >= 10:
                latencies.append((time.perf_counter() - t0) * 1000)
                assert len(json.loads(body)["hits"]) == 10
        connection.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--documents", type=int, default=5183)
    parser.add_argument("--batch", type=int, default=256, help="documents per ingest call")
    parser.add_argument("--rounds", type=int, default=3, help="query rounds per layer, alternating")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()
    texts = questions(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        database = f"{tmp}/overhead.db"
        settings = Settings.load(
            milvus_uri=database, cache_url="none", retrieval_mode="dense", embed_threads=1, index="FLAT"
        )
        written = asyncio.run(write_path(settings, documents(args.documents), args.batch))
        runs: dict[str, list[list[float]]] = {"bare": [], "engine": [], "http": []}
        warm = texts[:10]
        bare_queries(database, settings.collection, warm, settings.query_precision)
        asyncio.run(engine_queries(settings, warm))
        for _ in range(args.rounds):
            runs["bare"].append(bare_queries(database, settings.collection, texts, settings.query_precision))
            runs["engine"].append(asyncio.run(engine_queries(settings, texts)))
            if not args.skip_http:
                runs["http"].append(http_queries(database, texts))
    result: dict = {**written, "queries": len(texts), "rounds": args.rounds}
    for layer, rounds in runs.items():
        if rounds:
            result[f"{layer}_p50_ms"] = median([median(r) for r in rounds])
            result[f"{layer}_p99_ms"] = median([percentile(r, 99) for r in rounds])
    result["engine_overhead_p50_ms"] = result["engine_p50_ms"] - result["bare_p50_ms"]
    result["engine_overhead_p99_ms"] = result["engine_p99_ms"] - result["bare_p99_ms"]
    if runs["http"]:
        result["http_overhead_p50_ms"] = result["http_p50_ms"] - result["bare_p50_ms"]
        result["http_overhead_p99_ms"] = result["http_p99_ms"] - result["bare_p99_ms"]
    report(result)


if __name__ == "__main__":
    main()
