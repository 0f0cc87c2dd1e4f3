"""Generation speed: the local model's time to first token and tokens/s, and against an
OpenAI-compatible server (llama.cpp's, serving the same model) the throughput of 32
concurrent requests sent as one batched /v1/completions call vs 32 separate calls.

Last line: {"ttft_ms_p50", "tokens_per_s", "batched_speedup", ...}.

    python bench/generate.py [--runs 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import httpx
from _common import ROOT, median, report

from ragline.adapters.generators.local import LocalGenerator
from ragline.adapters.generators.openai import OpenAIGenerator
from ragline.adapters.generators.templates import render
from ragline.core.models import Hit
from ragline.core.prompting import build_prompt

PASSAGES = [
    p.strip()
    for f in sorted((ROOT / "src/ragline/service/sample_corpus").glob("*.*"))
    for p in f.read_text().split("\n\n")
    if len(p) > 200
]


def prompt_for(question: str, run: int = 0):
    """Three passages, rotated per run so llama.cpp's prompt cache cannot skip the work."""
    texts = [PASSAGES[(run * 3 + i) % len(PASSAGES)] for i in range(3)]
    hits = [
        Hit(chunk_id=f"c{i}", document_id="d", number=i, text=t, score=0.9, content_hash="h")
        for i, t in enumerate(texts)
    ]
    return build_prompt(question, hits, 1500)


async def local_speed(runs: int, max_tokens: int) -> tuple[float, float]:
    generator = LocalGenerator(threads=1, parallel=1)
    ttfts, rates = [], []
    for run in range(runs + 1):
        started = time.perf_counter()
        first, pieces = None, 0
        async for _ in generator.stream(prompt_for("What is this passage about?", run), max_tokens):
            first = first or time.perf_counter()
            pieces += 1
        if run and pieces > 1:  # the first run warms up
            ttfts.append((first - started) * 1000)
            rates.append((pieces - 1) / (time.perf_counter() - first))
    return median(ttfts), median(rates)


def start_server(parallel: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "llm_server.py"), str(port), str(parallel)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the LLM server did not start")


async def batched_vs_unbatched(url: str, n: int, runs: int, max_tokens: int) -> tuple[float, float]:
    prompts = [render(prompt_for("What is this passage about?", i), "chatml") for i in range(n)]
    batched = OpenAIGenerator(url, "smollm2", timeout_s=300, concurrency=n)
    single = OpenAIGenerator(url, "smollm2", timeout_s=300, concurrency=n, batch_max=1)
    await batched.complete_many(prompts[:2], 4)  # warm-up
    times_batched, times_single = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        await batched.complete_many(prompts, max_tokens)
        times_batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(single.complete_many([p], max_tokens) for p in prompts))
        times_single.append(time.perf_counter() - t0)
    await batched.close()
    await single.close()
    return n / median(times_batched), n / median(times_single)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    ttft, rate = await local_speed(args.runs + 2, args.max_tokens * 2)
    proc, url = start_server(args.concurrency)
    try:
        batched, single = await batched_vs_unbatched(url, args.concurrency, args.runs, args.max_tokens)
    finally:
        proc.kill()
    report(
        {
            "ttft_ms_p50": ttft,
            "tokens_per_s": rate,
            "batched_speedup": batched / single,
            "batched_requests_per_s": batched,
            "unbatched_requests_per_s": single,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
