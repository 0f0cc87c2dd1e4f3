"""The cache through the engine: a cache-hit query against a miss, and the hit rate on a
replayed query log with repeats (Zipf-distributed over the sample questions, seeded).

MiniLM + Milvus Lite over the sample corpus, the in-process cache. The miss/hit pair
uses the chosen generator (--generator: extractive, the default answerer, or local, the
small model: what a hit saves); an answer that came back degraded (the local model's
answer replaced as ungrounded) is never cached, so it is counted apart, not timed as a
miss. The replay uses the extractive generator (the hit rate does not depend on it).
Last line: {"hit_p50_ms", "miss_p50_ms", "speedup", "hit_rate", ...}.

    python bench/cache.py [--generator extractive|local] [--log 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, median, report

from ragline import Settings
from ragline.adapters.generators import build_generator
from ragline.service.engine import Engine
from ragline.service.samples import sample_files

QUESTIONS = [q["question"] for q in json.loads((ROOT / "bench" / "data" / "sample_questions.json").read_text())]


async def timed(engine: Engine, question: str) -> tuple[float, bool, bool]:
    """(milliseconds, cached, degraded): a degraded answer (an LLM answer replaced as
    ungrounded, the LLM down) is never cached, so it is not a miss to time against a hit."""
    t0 = time.perf_counter()
    answer = await engine.ask(question)
    return (time.perf_counter() - t0) * 1000, answer.cached, answer.degraded


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", default="extractive", help="extractive (the default answerer) or local")
    parser.add_argument("--log", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(
            milvus_uri=str(Path(tmp) / "cache.db"), generator=args.generator, answer_cache_ttl_s=3600, llm_timeout_s=120
        )
        engine = Engine.from_settings(settings)
        await engine.ingest_paths(sample_files())
        misses, hits, degraded = [], [], 0
        for question in QUESTIONS[:8]:
            ms, cached, was_degraded = await timed(engine, question)
            if cached:
                sys.exit(f"bench/cache.py: a first ask was served from the cache: {question!r}")
            if was_degraded:  # not cached by design: nothing for a hit to save
                degraded += 1
                continue
            misses.append(ms)
            ms, cached, _ = await timed(engine, question)
            if not cached:
                sys.exit(f"bench/cache.py: the same question asked again missed the cache: {question!r}")
            hits.append(ms)
        if not hits:
            sys.exit(f"bench/cache.py: every answer of the {args.generator} generator was degraded (never cached)")
        engine._generator = build_generator(settings.model_copy(update={"generator": "extractive"}).llm)
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
            "pairs_timed": len(hits),
            "degraded_not_cached": degraded,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
