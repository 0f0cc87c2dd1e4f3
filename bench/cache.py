"""The cache through the engine: a cache-hit query against a miss, and the hit rate on a
replayed query log with repeats (Zipf-distributed over the sample questions, seeded).

MiniLM + Milvus Lite over the sample corpus, the in-process cache. The miss/hit pair
uses the configured generator (the local model by default: what a hit saves); the
replay uses the extractive one (the hit rate does not depend on the generator).
Last line: {"hit_p50_ms", "miss_p50_ms", "speedup", "hit_rate", ...}.

    python bench/cache.py [--generator local] [--log 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, median, report

from ragline import Settings
from ragline.engine import Engine
from ragline.generators import build_generator
from ragline.samples import sample_files

QUESTIONS = [q["question"] for q in json.loads((ROOT / "bench" / "data" / "sample_questions.json").read_text())]


async def timed(engine: Engine, question: str) -> tuple[float, bool]:
    t0 = time.perf_counter()
    answer = await engine.ask(question)
    return (time.perf_counter() - t0) * 1000, answer.cached


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", default="local")
    parser.add_argument("--log", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(
            milvus_uri=str(Path(tmp) / "cache.db"), generator=args.generator, answer_cache_ttl_s=3600, llm_timeout_s=120
        )
        engine = Engine.from_settings(settings)
        await engine.ingest_paths(sample_files())
        misses, hits = [], []
        for question in QUESTIONS[:8]:
            ms, cached = await timed(engine, question)
            assert not cached
            misses.append(ms)
            ms, cached = await timed(engine, question)
            assert cached
            hits.append(ms)
        engine._generator = build_generator(settings.model_copy(update={"generator": "extractive"}))
        await engine.cache.close()  # the replay starts cold
        ranks = np.random.default_rng(11).zipf(1.3, size=args.log)
        log = [QUESTIONS[(r - 1) % len(QUESTIONS)] for r in ranks]  # another generator: a fresh key space
        cached = [(await timed(engine, q))[1] for q in log]
        await engine.close()
    report(
        {
            "hit_p50_ms": median(hits),
            "miss_p50_ms": median(misses),
            "speedup": median(misses) / median(hits),
            "hit_rate": sum(cached) / len(cached),
            "log_queries": len(log),
            "distinct": len(set(log)),
            "best_possible_hit_rate": 1 - len(set(log)) / len(log),
            "generator": args.generator,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
