"""ragline against the frameworks a user would otherwise pick, side by side in one run:
LangChain (langchain-milvus) and LlamaIndex (llama-index-vector-stores-milvus), on the
same components and data. Install them with `scripts/setup.sh --peers` (requirements/
peers.lock; never part of the service).

Same for every system: SciFact (../shared/datasets/scifact, 5,183 abstracts), Milvus Lite
(each system its own database file), the same ONNX MiniLM question graph (the int8 copy
ragline uses; one thread), top 10, dense search, no caches. Rounds alternate between the
systems, so a drift of the machine's speed falls on all of them.

1. Write path: every abstract written, vectors looked up from a table made before the
   clock starts (the embedder is not what is timed). ragline ingests documents (its own
   chunking in MiniLM tokens, content-hash lookups, upserts with the BM25 field); the
   peers are handed ragline's chunks ready-made (no splitter of theirs runs: this favours
   them) and write them as their docs show (LangChain ``add_texts``; LlamaIndex
   ``VectorStoreIndex`` over nodes). The lookup embedder is not "semantic", so ragline
   stores no sentence vectors here: with the real model it also embeds each chunk's
   sentences once (issue 28), which none of the peers does.
2. Query path in-process: ragline ``Engine.search``, LangChain ``similarity_search``,
   LlamaIndex ``retriever.retrieve``; each against the bare layer on its own collection
   (tokenizer + onnxruntime session + ``MilvusClient.search``): overhead = p50 - bare p50.
3. Serving over HTTP: ``ragline serve`` against the minimal FastAPI app each peer's docs
   show (``POST /v1/search`` -> the vector store's search, one uvicorn worker), loopback,
   closed-loop callers at c1/c8/c32 (bench/serve.py's lean client).

Ratios are ragline / peer in throughput terms: > 1 means ragline is faster.
Last line: {"machine", "ragline": {...}, "langchain": {..., "query_p50_ratio",
"write_ratio", "serve_c32_ratio", ...}, "llamaindex": {...}}.

    python bench/peers.py [--documents 5183] [--queries 200] [--rounds 3]
                          [--requests 300] [--concurrency 1,8,32] [--only langchain,llamaindex]
    python bench/peers.py --serve-peer langchain --database D --port P   (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np
from _common import LeanHTTP, free_port, median, percentile, report
from overhead import TENANT, Precomputed, documents, engine_queries, questions
from pydantic import BaseModel

from ragline import Document, Engine, Settings
from ragline.adapters.embedders.minilm import MiniLMEmbedder, _session, load_tokenizer, question_model
from ragline.adapters.stores.milvus import MilvusStore

COLLECTION = {"langchain": "langchain_peer", "llamaindex": "llamaindex_peer"}
VECTOR_FIELD = {"langchain": "vector", "llamaindex": "embedding"}
TEXT_FIELD = {"langchain": "text", "llamaindex": "text"}


class QuestionGraph:
    """The question side of the embedder every system uses: ragline's int8 MiniLM graph."""

    def __init__(self) -> None:
        self.session = _session(1, question_model(Settings.load().query_precision)[0])
        self.tokenizer = load_tokenizer()

    def __call__(self, text: str) -> list[float]:
        return MiniLMEmbedder._embed_batch([text], self.session, self.tokenizer)[0].tolist()


def langchain_embeddings(table: dict[str, np.ndarray], question: QuestionGraph):
    from langchain_core.embeddings import Embeddings

    class Lookup(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [table[t].tolist() for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return question(text)

    return Lookup()


def llamaindex_embeddings(table: dict[str, np.ndarray], question: QuestionGraph):
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class Lookup(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            return table[text].tolist()

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return [table[t].tolist() for t in texts]

        def _get_query_embedding(self, query: str) -> list[float]:
            return question(query)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return question(query)

    return Lookup(model_name="minilm-lookup", embed_batch_size=256)


def _with_loop() -> None:
    """Both integrations also make an AsyncMilvusClient when built, which needs an event
    loop in the thread (asyncio.run leaves none); only their sync paths are timed here."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def langchain_store(database: str, embeddings, fresh: bool):
    from langchain_milvus import Milvus

    _with_loop()
    return Milvus(
        embedding_function=embeddings,
        collection_name=COLLECTION["langchain"],
        connection_args={"uri": database},
        index_params={"index_type": "FLAT", "metric_type": "IP"},
        search_params={"metric_type": "IP"},
        drop_old=fresh,
        auto_id=True,
    )


def llamaindex_store(database: str, fresh: bool):
    from llama_index.vector_stores.milvus import MilvusVectorStore

    _with_loop()
    return MilvusVectorStore(
        uri=database,
        collection_name=COLLECTION["llamaindex"],
        dim=384,
        overwrite=fresh,
        index_config={"index_type": "FLAT", "metric_type": "IP"},
        similarity_metric="IP",
    )


# -- the write path ---------------------------------------------------------------


def chunked(docs: list[Document], settings: Settings) -> tuple[dict[str, np.ndarray], list[list[str]]]:
    """ragline's chunks of each document (what the peers are handed) and a unit vector for each."""
    from ragline.service.engine import chunker_for

    chunker = chunker_for(Precomputed(load_tokenizer(), {}), settings)
    rng = np.random.default_rng(7)
    table: dict[str, np.ndarray] = {}
    per_doc = []
    for doc in docs:
        texts = chunker.split(doc.text)
        per_doc.append(texts)
        for text in texts:
            if text not in table:
                v = rng.normal(size=384).astype(np.float32)
                table[text] = v / np.linalg.norm(v)
    return table, per_doc


async def write_ragline(settings: Settings, docs: list[Document], table, batch: int) -> float:
    embedder = Precomputed(load_tokenizer(), table)
    engine = Engine(settings, embedder, MilvusStore.of(settings.store, 384))
    try:
        started = time.perf_counter()
        for i in range(0, len(docs), batch):
            await engine.ingest_documents(docs[i : i + batch])
        return time.perf_counter() - started
    finally:
        await engine.close()


def write_langchain(database: str, docs: list[Document], per_doc: list[list[str]], table, batch: int) -> float:
    store = langchain_store(database, langchain_embeddings(table, None), fresh=True)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i in range(0, len(docs), batch):
        texts, metadatas = [], []
        for doc, chunks in zip(docs[i : i + batch], per_doc[i : i + batch]):
            for n, text in enumerate(chunks):
                texts.append(text)
                metadatas.append({"document_id": doc.id, "number": n})
        store.add_texts(texts, metadatas)
    elapsed = time.perf_counter() - started
    store.client.close()
    return elapsed


def write_llamaindex(database: str, docs: list[Document], per_doc: list[list[str]], table, batch: int) -> float:
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode

    store = llamaindex_store(database, fresh=True)
    embed_model = llamaindex_embeddings(table, None)  # type: ignore[arg-type]
    started = time.perf_counter()
    index = None
    for i in range(0, len(docs), batch):
        nodes = [
            TextNode(
                text=text,
                metadata={"document_id": doc.id, "number": n},
                excluded_embed_metadata_keys=["document_id", "number"],  # embed the text alone
            )
            for doc, chunks in zip(docs[i : i + batch], per_doc[i : i + batch])
            for n, text in enumerate(chunks)
        ]
        if index is None:
            index = VectorStoreIndex(
                nodes, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
            )
        else:
            index.insert_nodes(nodes)
    elapsed = time.perf_counter() - started
    store.client.close()
    return elapsed


# -- the query path ---------------------------------------------------------------


def bare(database: str, system: str, texts: list[str], question: QuestionGraph, collection: str) -> list[float]:
    from pymilvus import MilvusClient

    client = MilvusClient(database)
    field = "vector" if system == "ragline" else VECTOR_FIELD[system]
    text_field = "text" if system == "ragline" else TEXT_FIELD[system]
    extra = {"filter": f'tenant == "{TENANT}"'} if system == "ragline" else {}
    latencies = []
    for text in texts:
        t0 = time.perf_counter()
        hits = client.search(
            collection, data=[question(text)], anns_field=field, limit=10, output_fields=[text_field], **extra
        )
        assert len(hits[0]) == 10
        latencies.append((time.perf_counter() - t0) * 1000)
    client.close()
    return latencies


def query_langchain(database: str, texts: list[str], question: QuestionGraph) -> list[float]:
    store = langchain_store(database, langchain_embeddings({}, question), fresh=False)
    latencies = []
    for text in texts:
        t0 = time.perf_counter()
        found = store.similarity_search(text, k=10)
        assert len(found) == 10
        latencies.append((time.perf_counter() - t0) * 1000)
    store.client.close()
    return latencies


def query_llamaindex(database: str, texts: list[str], question: QuestionGraph) -> list[float]:
    from llama_index.core import VectorStoreIndex

    store = llamaindex_store(database, fresh=False)
    retriever = VectorStoreIndex.from_vector_store(store, embed_model=llamaindex_embeddings({}, question)).as_retriever(
        similarity_top_k=10
    )
    latencies = []
    for text in texts:
        t0 = time.perf_counter()
        found = retriever.retrieve(text)
        assert len(found) == 10
        latencies.append((time.perf_counter() - t0) * 1000)
    store.client.close()
    return latencies


# -- serving ----------------------------------------------------------------------


class Search(BaseModel):  # the peers' request body (at module level: FastAPI resolves it by name)
    query: str
    top_k: int = 10


def peer_app(system: str, database: str):
    """The minimal FastAPI app a user would write, as the peer's docs show."""
    from fastapi import FastAPI

    question = QuestionGraph()
    app = FastAPI()
    if system == "langchain":
        store = langchain_store(database, langchain_embeddings({}, question), fresh=False)

        @app.post("/v1/search")
        def search(body: Search) -> dict:
            found = store.similarity_search_with_score(body.query, k=body.top_k)
            return {"hits": [{"text": d.page_content, "metadata": d.metadata, "score": s} for d, s in found]}

    else:
        from llama_index.core import VectorStoreIndex

        index = VectorStoreIndex.from_vector_store(
            llamaindex_store(database, fresh=False), embed_model=llamaindex_embeddings({}, question)
        )

        @app.post("/v1/search")
        def search(body: Search) -> dict:
            found = index.as_retriever(similarity_top_k=body.top_k).retrieve(body.query)
            return {"hits": [{"text": n.get_content(), "metadata": n.metadata, "score": n.score} for n in found]}

    @app.get("/readyz")
    def ready() -> dict:
        return {"status": "ready"}

    return app


def start_server(system: str, database: str, port: int, log: Path) -> subprocess.Popen:
    if system == "ragline":
        env = dict(
            os.environ,
            RAGLINE_MILVUS_URI=database,
            RAGLINE_RETRIEVAL_MODE="dense",
            RAGLINE_CACHE_URL="none",
            RAGLINE_RATE_LIMIT_RPS="0",
            RAGLINE_INDEX="FLAT",
            HF_HUB_OFFLINE="1",
        )
        command = [str(Path(sys.executable).with_name("ragline")), "serve", "--no-auth", "--port", str(port)]
    else:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        command = [sys.executable, __file__, "--serve-peer", system, "--database", database, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    started = time.monotonic()
    while time.monotonic() - started < 300:
        if proc.poll() is not None:
            raise RuntimeError(f"{system} server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{system} server not ready in 300 s:\n{log.read_text()[-2000:]}")


_distinct = iter(range(10**9))


async def load(port: int, texts: list[str], concurrency: int, total: int, proc: subprocess.Popen) -> dict:
    callers = [LeanHTTP("127.0.0.1", port) for _ in range(concurrency)]
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(caller: LeanHTTP) -> None:
        for _ in counter:
            n = next(_distinct)  # never the same text twice: no per-question memo makes a repeat fast
            text = f"{texts[n % len(texts)]} ({n})"
            t0 = time.perf_counter()
            status, body = await asyncio.wait_for(caller.post("/v1/search", {"query": text}), 60)
            if status != 200:
                raise RuntimeError(f"/v1/search: {status} {body[:300]!r}")
            latencies.append((time.perf_counter() - t0) * 1000)
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in callers))
    elapsed = time.perf_counter() - started
    for caller in callers:
        await caller.close()
    return {"rps": total / elapsed, "p50_ms": median(latencies), "p99_ms": percentile(latencies, 99)}


def serve_round(system: str, database: str, texts: list[str], levels: list[int], total: int, tmp: str) -> dict:
    port = free_port()
    proc = start_server(system, database, port, Path(tmp) / f"{system}.log")
    try:
        asyncio.run(load(port, texts, 4, 40, proc))  # warm-up
        return {f"c{c}": asyncio.run(load(port, texts, c, total, proc)) for c in levels}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- the run ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=5183)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="documents per write call")
    parser.add_argument("--requests", type=int, default=300, help="requests per serving level")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--only", default="langchain,llamaindex", help="the peers to run")
    parser.add_argument("--serve-peer", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        import uvicorn

        uvicorn.run(peer_app(args.serve_peer, args.database), host="127.0.0.1", port=args.port, log_level="warning")
        return
    peers = [p for p in args.only.split(",") if p]
    try:
        for peer in peers:
            __import__({"langchain": "langchain_milvus", "llamaindex": "llama_index.vector_stores.milvus"}[peer])
    except ImportError as exc:
        sys.exit(f"bench/peers.py: {exc.name} is not installed: run scripts/setup.sh --peers")
    systems = ["ragline", *peers]
    levels = [int(c) for c in args.concurrency.split(",")]
    docs = documents(args.documents)
    texts = questions(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        databases = {s: f"{tmp}/{s}.db" for s in systems}
        settings = Settings.load(
            milvus_uri=databases["ragline"], cache_url="none", retrieval_mode="dense", embed_threads=1, index="FLAT"
        )
        table, per_doc = chunked(docs, settings)
        chunks = sum(len(c) for c in per_doc)
        question = QuestionGraph()
        writes: dict[str, list[float]] = {s: [] for s in systems}
        queries: dict[str, list[list[float]]] = {s: [] for s in systems}
        bares: dict[str, list[list[float]]] = {s: [] for s in systems}
        for r in range(args.rounds):
            for system in systems:  # a fresh database each round; the last one is queried
                databases[system] = f"{tmp}/{system}-{r}.db"
                if system == "ragline":
                    settings = settings.model_copy(update={"milvus_uri": databases[system]})
                    seconds = asyncio.run(write_ragline(settings, docs, table, args.batch))
                elif system == "langchain":
                    seconds = write_langchain(databases[system], docs, per_doc, table, args.batch)
                else:
                    seconds = write_llamaindex(databases[system], docs, per_doc, table, args.batch)
                writes[system].append(len(docs) / seconds)
                print(f"round {r + 1}: {system} wrote {len(docs) / seconds:.0f} docs/s", file=sys.stderr, flush=True)
        for r in range(args.rounds):
            for system in systems:
                collection = settings.collection if system == "ragline" else COLLECTION[system]
                bares[system].append(bare(databases[system], system, texts, question, collection))
                if system == "ragline":
                    queries[system].append(asyncio.run(engine_queries(settings, texts)))
                elif system == "langchain":
                    queries[system].append(query_langchain(databases[system], texts, question))
                else:
                    queries[system].append(query_llamaindex(databases[system], texts, question))
                print(f"round {r + 1}: {system} query p50 {median(queries[system][-1]):.2f} ms", file=sys.stderr)
        # the servers open the databases themselves: Milvus Lite lets one process at a time
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_all()
        serving: dict[str, list[dict]] = {s: [] for s in systems}
        for r in range(max(1, args.rounds - 1)):
            for system in systems:
                serving[system].append(serve_round(system, databases[system], texts, levels, args.requests, tmp))
                print(f"round {r + 1}: {system} served {serving[system][-1]}", file=sys.stderr, flush=True)

    def summary(system: str) -> dict:
        out = {
            "write_docs_per_s": median(writes[system]),
            "query_p50_ms": median([median(q) for q in queries[system]]),
            "query_p99_ms": median([percentile(q, 99) for q in queries[system]]),
            "bare_p50_ms": median([median(q) for q in bares[system]]),
        }
        out["query_overhead_p50_ms"] = out["query_p50_ms"] - out["bare_p50_ms"]
        for c in levels:
            out[f"serve_c{c}_rps"] = median([s[f"c{c}"]["rps"] for s in serving[system]])
            out[f"serve_c{c}_p99_ms"] = median([s[f"c{c}"]["p99_ms"] for s in serving[system]])
        return out

    result: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "date": date.today().isoformat(),
        "documents": len(docs),
        "chunks": chunks,
        "rounds": args.rounds,
        "ragline": summary("ragline"),
    }
    ours = result["ragline"]
    for peer in peers:
        theirs = summary(peer)
        theirs["query_p50_ratio"] = theirs["query_p50_ms"] / ours["query_p50_ms"]
        theirs["query_overhead_delta_ms"] = ours["query_overhead_p50_ms"] - theirs["query_overhead_p50_ms"]
        theirs["write_ratio"] = ours["write_docs_per_s"] / theirs["write_docs_per_s"]
        for c in levels:
            theirs[f"serve_c{c}_ratio"] = ours[f"serve_c{c}_rps"] / theirs[f"serve_c{c}_rps"]
        result[peer] = theirs
    report(result)


if __name__ == "__main__":
    main()
