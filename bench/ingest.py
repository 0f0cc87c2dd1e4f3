"""End-to-end ingestion throughput against the embedder's own, on the same chunks.

A corpus of distinct documents is made from the sample corpus (each copy numbered,
so every chunk is new), ingested from files into a fresh Milvus Lite with MiniLM;
then the same chunk texts are embedded alone. Goal: ratio >= 0.8.
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
from ragline.engine import Engine
from ragline.ingest.loaders import iter_files, load_file
from ragline.samples import sample_corpus_dir
from ragline.stages import chunk_document


def make_corpus(root: Path, copies: int) -> None:
    for copy in range(copies):
        for path, _ in iter_files([sample_corpus_dir()]):
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
        await engine.embedder.embed(["warm-up"])
        t0 = time.perf_counter()
        result = await engine.ingest_paths([corpus])
        end_to_end = time.perf_counter() - t0
        assert not result.errors and result.chunks_written == await engine.store.count("default")
        texts = [
            c.text
            for path, doc_id in iter_files([corpus])
            for c in chunk_document(load_file(path, "default", 10**8, doc_id), engine.chunker)
        ]
        t0 = time.perf_counter()
        await engine.embedder.embed(texts)
        raw = time.perf_counter() - t0
        await engine.close()
    chunks = result.chunks_written
    report(
        {
            "chunks": chunks,
            "chunks_per_s": chunks / end_to_end,
            "raw_embed_per_s": len(texts) / raw,
            "ratio": (chunks / end_to_end) / (len(texts) / raw),
            "threads": args.threads,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
