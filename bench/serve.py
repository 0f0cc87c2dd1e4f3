"""HTTP throughput and latency of /v1/search and /v1/query (extractive answers, so the LLM
does not dominate) at concurrency 1, 8 and 32, against `ragline serve` on loopback with
MiniLM and Milvus Lite over the sample corpus, hybrid retrieval, caches off.

Last line: {"search": {"c1": {"rps", "p50_ms", "p99_ms"}, ...}, "query": {...}}.

    python bench/serve.py [--requests 200] [--concurrency 1,8,32]
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
from _common import QUESTIONS, free_port, median, percentile, report


def start(tmp: str, port: int, cache: str) -> subprocess.Popen:
    env = dict(
        os.environ,
        RAGLINE_MILVUS_URI=f"{tmp}/serve.db",
        RAGLINE_GENERATOR="extractive",
        RAGLINE_RATE_LIMIT_RPS="0",
        RAGLINE_KEYS_FILE=f"{tmp}/keys.json",
        HF_HUB_OFFLINE="1",
        RAGLINE_CACHE_URL=cache,
    )
    ragline = Path(sys.executable).with_name("ragline")
    proc = subprocess.Popen(
        [str(ragline), "serve", "--no-auth", "--sample", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("ragline serve did not become ready")


async def load(client: httpx.AsyncClient, path: str, field: str, concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            response = await client.post(path, json={field: QUESTIONS[i % len(QUESTIONS)]})
            response.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "rps": total / elapsed,
        "p50_ms": median(latencies),
        "p99_ms": percentile(latencies, 99),
        "deciles_ms": [percentile(latencies, q) for q in range(10, 100, 10)],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument(
        "--cache",
        default="none",
        help="none (default: every request does the work; bench/cache.py measures caching) or memory",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start(tmp, port, args.cache)
        try:
            results: dict[str, dict] = {"search": {}, "query": {}}
            limits = httpx.Limits(max_connections=max(levels), max_keepalive_connections=max(levels))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
                for name, path, field in (("search", "/v1/search", "query"), ("query", "/v1/query", "question")):
                    await load(client, path, field, 4, 20)  # warm-up
                    for c in levels:
                        results[name][f"c{c}"] = await load(client, path, field, c, args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    results["cache"] = args.cache
    report(results)


if __name__ == "__main__":
    asyncio.run(main())
