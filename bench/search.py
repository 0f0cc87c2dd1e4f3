"""Query embedding (MiniLM) + top-10 search over 100,000 chunks in Milvus Lite.

The stored vectors are generated (embedding 100k chunks with MiniLM takes about an
hour on 2 cores): MiniLM vectors of the sample corpus' chunks plus noise, normalized,
so they sit where real text sits. The queries are real text embedded by MiniLM on
every call. Warm, sequential. Last line: {"chunks", "p50_ms", "p99_ms", ...}.

    python bench/search.py [--chunks 100000] [--queries 300] [--index IVF_FLAT|FLAT] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import median, percentile, report

from ragline import Chunk, Settings
from ragline.adapters.embedders.minilm import MiniLMEmbedder
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.ids import chunk_id, content_hash

QUESTIONS = [
    "How do honeybees tell each other where flowers are?",
    "Who invented the Fresnel lens?",
    "What does RuBisCO do in the Calvin cycle?",
    "How much caffeine does black tea contain?",
    "Which eruption cooled the planet in 1991?",
    "What happened at Pompeii in AD 79?",
    "Why does sealed honey keep for years?",
    "Where did the Pharos lighthouse stand?",
    "How are green and black tea made differently?",
    "What is a shield volcano?",
    "Does re-ingesting a document duplicate its chunks?",
    "Why do leaves look green?",
]


def generated_vectors(n: int, seeds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random blends of two real sentence vectors plus noise: a continuum, not clusters."""
    a = seeds[rng.integers(0, len(seeds), n)]
    b = seeds[rng.integers(0, len(seeds), n)]
    vectors = a + rng.uniform(0, 1, (n, 1)) * b + rng.normal(0, 0.03, size=a.shape)
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sample_sentences() -> list[str]:
    from ragline.service.samples import sample_corpus_dir

    text = " ".join(p.read_text() for p in sorted(sample_corpus_dir().glob("*.*")))
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 4]


async def fill(store: MilvusStore, vectors: np.ndarray, batch: int = 2000) -> None:
    for start in range(0, len(vectors), batch):
        chunks = [
            Chunk(
                id=chunk_id("bench", f"doc{i // 10}", i % 10),
                tenant="bench",
                document_id=f"doc{i // 10}",
                number=i % 10,
                text=f"generated chunk {i}",
                content_hash=content_hash(str(i)),
                vector=vectors[i].tolist(),
            )
            for i in range(start, min(start + batch, len(vectors)))
        ]
        await store.upsert(chunks)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--index",
        default="IVF_FLAT",
        choices=["FLAT", "IVF_FLAT"],
        help="IVF_FLAT is what to configure past ~50k chunks; FLAT is exact",
    )
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (0: all cores)")
    args = parser.parse_args()
    embedder = MiniLMEmbedder(threads=args.threads)
    seeds = await embedder.embed(sample_sentences())
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(milvus_uri=str(Path(tmp) / "bench.db"), index=args.index)
        store = MilvusStore.of(settings.store, embedder.dimension)
        t0 = time.perf_counter()
        vectors = generated_vectors(args.chunks, seeds, np.random.default_rng(7))
        await fill(store, vectors)
        fill_s = time.perf_counter() - t0
        assert await store.count("bench") == args.chunks
        for q in QUESTIONS:  # warm-up
            await store.search("bench", (await embedder.embed([q]))[0], 10)
        latencies, embed_ms, recalls = [], [], []
        for i in range(args.queries):
            question = QUESTIONS[i % len(QUESTIONS)] + ("" if i < len(QUESTIONS) else f" ({i})")
            t0 = time.perf_counter()
            vector = (await embedder.embed([question]))[0]
            t1 = time.perf_counter()
            hits = await store.search("bench", vector, 10)
            t2 = time.perf_counter()
            assert len(hits) == 10
            exact = {f"{i // 10}:{i % 10}" for i in np.argsort(-(vectors @ vector))[:10]}
            recalls.append(len(exact & {f"{h.document_id[3:]}:{h.number}" for h in hits}) / 10)
            latencies.append((t2 - t0) * 1000)
            embed_ms.append((t1 - t0) * 1000)
        await store.close()
    report(
        {
            "chunks": args.chunks,
            "index": store.index.kind,
            "queries": args.queries,
            "p50_ms": median(latencies),
            "p99_ms": percentile(latencies, 99),
            "embed_p50_ms": median(embed_ms),
            "recall_at_10": float(np.mean(recalls)),
            "fill_s": fill_s,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
