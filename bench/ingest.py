"""End-to-end ingestion throughput against the embedder's own, on the same chunks.

A corpus of distinct documents is made from the sample corpus (each copy numbered,
so every chunk is new), ingested from files into a fresh Milvus Lite with MiniLM;
and the same chunk texts are embedded by the bare model, before and after (the mean of
the two passes: the machine's speed drifts). The bare pass calls the model itself, not
the engine's embedder: that one is wrapped in the embedding cache, and an earlier
version of this benchmark timed cache lookups as "raw" embedding. Goal: ratio >= 0.8.
Last line: {"chunks", "chunks_per_s", "raw_embed_per_s", "ratio"}.

    python bench/ingest.py [--copies 12] [--threads 0]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import report

from ragline import Settings
from ragline.core.stages import chunk_document
from ragline.ingest.loaders import iter_files, load_file
from ragline.service.engine import Engine
from ragline.service.samples import sample_files


def make_corpus(root: Path, copies: int) -> None:
    for copy in range(copies):
        for path in sample_files():
            text = path.read_text()
            (root / f"{copy:03d}-{path.name}").write_text(f"Edition {copy}.\n{text}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        make_corpus(corpus, args.copies)
        settings = Settings.load(milvus_uri=str(Path(tmp) / "bench.db"), embed_threads=args.threads)
        engine = Engine.from_settings(settings)
        bare = getattr(engine.embedder, "inner", engine.embedder)  # the model, without the cache
        texts = [
            c.text
            for path, doc_id in iter_files([corpus])
            if isinstance(path, Path)
            for c in chunk_document(load_file(path, "default", 10**8, doc_id), engine.chunker)
        ]
        await bare.embed(["warm-up"])
        raw = [await _timed(bare.embed(texts))]
        t0 = time.perf_counter()
        result = await engine.ingest_paths([corpus])
        end_to_end = time.perf_counter() - t0
        raw.append(await _timed(bare.embed(texts)))
        assert not result.errors and result.chunks_written == await engine.store.count("default") == len(texts)
        await engine.close()
    raw_s = sum(raw) / len(raw)
    chunks = result.chunks_written
    report(
        {
            "chunks": chunks,
            "chunks_per_s": chunks / end_to_end,
            "raw_embed_per_s": len(texts) / raw_s,
            "raw_passes_s": [round(r, 2) for r in raw],
            "ratio": (chunks / end_to_end) / (len(texts) / raw_s),
            "threads": args.threads,
        }
    )


async def _timed(work) -> float:
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


if __name__ == "__main__":
    asyncio.run(main())
