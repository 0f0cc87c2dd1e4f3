"""`ragline bench`: run the benchmarks in bench/, then write one JSON file of all their
results, a markdown summary and PNG plots into a results folder."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ALL = ("ingest", "search", "generate", "answers", "serve", "overhead", "cache", "pipeline", "workers", "gateway")


def bench_dir() -> Path:
    here = Path(__file__).resolve().parents[2] / "bench"
    if not here.is_dir():
        raise FileNotFoundError("bench/ not found: run `ragline bench` from a source checkout")
    return here


def run_one(name: str, timeout_s: float = 1800) -> dict[str, Any]:
    """Run bench/<name>.py; its last stdout line is its JSON result."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(bench_dir() / f"{name}.py")], capture_output=True, text=True, timeout=timeout_s
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}
    result = json.loads(lines[-1])
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def write_report(results: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": _cpus(),
    }
    (folder / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    (folder / "summary.md").write_text(_markdown(results, meta))
    return [folder / "results.json", folder / "summary.md", *_plots(results, folder)]


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    if isinstance(value, list):
        return {}
    return {prefix.rstrip("."): value}


def _markdown(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# ragline benchmarks",
        "",
        f"{meta['when']} · Python {meta['python']} · {meta['machine']} · {meta['cpus']} CPUs",
        "",
    ]
    for name, result in results.items():
        lines += [f"## {name}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _flatten(result).items()]
        lines.append("")
    return "\n".join(lines)


def _plots(results: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    serve = results.get("serve", {})
    if isinstance(serve.get("search"), dict):
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        for endpoint in ("search", "query"):
            levels = sorted((c for c in serve[endpoint] if c[1:].isdigit()), key=lambda c: int(c[1:]))
            conc = [int(c[1:]) for c in levels]
            left.plot(conc, [serve[endpoint][c]["rps"] for c in levels], marker="o", label=f"/v1/{endpoint}")
            for c in levels:
                deciles = serve[endpoint][c].get("deciles_ms")
                if deciles:
                    right.plot(deciles, [i / 10 for i in range(1, 10)], label=f"/v1/{endpoint} {c}")
        left.set(xlabel="concurrency", ylabel="requests/s", title="Throughput against concurrency", xscale="log")
        right.set(
            xlabel="latency (ms)", ylabel="fraction of requests", title="Latency distribution (deciles)", xscale="log"
        )
        left.legend()
        right.legend(fontsize=7)
        fig.tight_layout()
        written.append(folder / "serve.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    latency = {name: r for name, r in results.items() if "p50_ms" in r and "p99_ms" in r}
    if latency:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(latency)
        ax.bar([i - 0.2 for i in range(len(names))], [latency[n]["p50_ms"] for n in names], 0.4, label="p50")
        ax.bar([i + 0.2 for i in range(len(names))], [latency[n]["p99_ms"] for n in names], 0.4, label="p99")
        ax.set_xticks(range(len(names)), names)
        ax.set(ylabel="ms", title="Latency")
        ax.legend()
        fig.tight_layout()
        written.append(folder / "latency.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written
