"""CPU per query of each process in the scale-out shape, for sizing pods: the API gateway
(`ragline serve --bus kafka://...`) and one worker process running retrieve and generate
(`ragline worker retrieve generate`, MiniLM with 1 ONNX thread, Milvus Lite, extractive
answers, dense retrieval, caches off), over a Tansu broker, all on loopback.

Queries go through HTTP at ``--concurrency``; each process's CPU time (user + system,
from /proc) is divided by the queries answered. Everything shares this machine's cores,
so the req/s figure is the whole shape's on this machine; the CPU milliseconds per query
are what size a pod (queries/s per core = 1000 / ms).

Last line: {"api_cpu_ms_per_query", "worker_cpu_ms_per_query", "broker_cpu_ms_per_query",
"queries_per_s", "p50_ms", "p99_ms", "api_queries_per_core_s", "worker_queries_per_core_s"}.

    python bench/gateway.py [--queries 600] [--concurrency 16]
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
from _common import QUESTIONS, free_port, median, percentile, report, start_broker

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime


def ragline(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ragline", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


async def drive(url: str, n: int, concurrency: int) -> tuple[list[float], float]:
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(i: int) -> None:
            async with slots:
                started = time.perf_counter()
                reply = await client.post("/v1/query", json={"question": QUESTIONS[i % len(QUESTIONS)], "top_k": 3})
                reply.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return latencies, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    broker, bootstrap = start_broker()
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port, metrics_port = free_port(), free_port()
            env = dict(
                os.environ,
                HF_HUB_OFFLINE="1",
                RAGLINE_BUS_URL=f"kafka://{bootstrap}",
                RAGLINE_GENERATOR="extractive",
                RAGLINE_CACHE_URL="none",
                RAGLINE_RETRIEVAL_MODE="dense",
                RAGLINE_EMBED_THREADS="1",
                RAGLINE_KAFKA_SESSION_TIMEOUT_MS="2000",
                RAGLINE_RATE_LIMIT_RPS="0",
                RAGLINE_LOG_LEVEL="WARNING",
                RAGLINE_KEYS_FILE=f"{tmp}/keys.json",
            )
            subprocess.run(
                [sys.executable, "-m", "ragline", "topics", "create"],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
            worker = ragline(
                ["worker", "ingest", "retrieve", "generate", "--metrics-port", str(metrics_port)],
                {**env, "RAGLINE_MILVUS_URI": f"{tmp}/worker.db"},
                Path(tmp) / "worker.log",
            )
            procs.append(worker)
            api = ragline(
                ["serve", "--no-auth", "--port", str(port)],
                {**env, "RAGLINE_MILVUS_URI": f"{tmp}/api.db"},
                Path(tmp) / "api.log",
            )
            procs.append(api)
            wait_http(f"http://127.0.0.1:{metrics_port}/readyz")
            wait_http(f"http://127.0.0.1:{port}/healthz")
            from ragline.service.samples import sample_files

            subprocess.run(
                [sys.executable, "-m", "ragline", "publish", *map(str, sample_files())],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
            time.sleep(3)  # ingested by the worker
            url = f"http://127.0.0.1:{port}"
            asyncio.run(drive(url, 40, args.concurrency))  # warm up
            before = {name: cpu_s(p.pid) for name, p in (("api", api), ("worker", worker), ("broker", broker))}
            latencies, elapsed = asyncio.run(drive(url, args.queries, args.concurrency))
            used = {
                name: cpu_s(p.pid) - before[name] for name, p in (("api", api), ("worker", worker), ("broker", broker))
            }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.kill()
    per_query = {name: seconds * 1000 / args.queries for name, seconds in used.items()}
    report(
        {
            "api_cpu_ms_per_query": per_query["api"],
            "worker_cpu_ms_per_query": per_query["worker"],
            "broker_cpu_ms_per_query": per_query["broker"],
            "queries_per_s": args.queries / elapsed,
            "p50_ms": median(latencies),
            "p99_ms": percentile(latencies, 99),
            "api_queries_per_core_s": 1000 / per_query["api"],
            "worker_queries_per_core_s": 1000 / per_query["worker"],
            "queries": args.queries,
            "concurrency": args.concurrency,
        }
    )


if __name__ == "__main__":
    main()
