"""Folder watching: file change -> searchable, with MiniLM and Milvus Lite.

`ragline watch`'s watcher runs in this process over a temporary folder; the benchmark
saves a file (a new one, or an edit of one of ten, alternating), then polls the store
until the document's content hash is the new one, and takes the time from the file's
modification time. It also reports what the watcher measured itself (the figure that
goes into the freshness metric). Goal: p99 <= 1000 ms.
Last line: {"changes", "freshness_p50_ms", "freshness_p99_ms", "watcher_p50_ms", "watcher_p99_ms"}.

    python bench/watch.py [--changes 60]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import percentile, report

from ragline import Settings
from ragline.seam.local import LocalService
from ragline.service.engine import Engine
from ragline.service.watching import ServiceSink, Watcher

WORDS = [
    "honeybees",
    "dance",
    "to",
    "tell",
    "their",
    "sisters",
    "how",
    "far",
    "away",
    "the",
    "flowers",
    "are",
    "and",
    "in",
    "which",
    "direction",
]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "notes"
        folder.mkdir()
        engine = Engine.from_settings(Settings.load(milvus_uri=str(Path(tmp) / "watch.db"), cache_url="none"))
        await engine.embedder.embed(["warm-up"])
        measured: list[float] = []

        def heard(what: str, name: str, seconds: float | None) -> None:
            if what == "updated" and seconds is not None:
                measured.append(seconds)

        watcher = Watcher(ServiceSink(LocalService(engine), "default"), [folder], "default", 10**7, report=heard)
        ready = asyncio.Event()
        task = asyncio.create_task(watcher.run(ready=ready))
        await asyncio.wait_for(ready.wait(), 30)
        latencies = []
        for n in range(args.changes):
            name = f"note-{n % 10}.md" if n % 2 else f"new-{n}.md"
            text = f"# Note {n}\n\n" + " ".join(WORDS[(n + i) % len(WORDS)] for i in range(120)) + f" ({n})."
            before = await _hash(engine, name)
            (folder / name).write_text(text)
            changed = (folder / name).stat().st_mtime
            deadline = time.monotonic() + 30
            while await _hash(engine, name) == before:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not searchable within 30 s")
                await asyncio.sleep(0.005)
            latencies.append(time.time() - changed)
            await asyncio.sleep(0.05)  # changes a little apart, as a person saves them
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.close()
    report(
        {
            "changes": len(latencies),
            "freshness_p50_ms": percentile(latencies, 50) * 1000,
            "freshness_p99_ms": percentile(latencies, 99) * 1000,
            "watcher_p50_ms": percentile(measured, 50) * 1000 if measured else None,
            "watcher_p99_ms": percentile(measured, 99) * 1000 if measured else None,
        }
    )


async def _hash(engine: Engine, name: str) -> str | None:
    page, _ = await engine.list_documents(None, name, "", 1)
    return page[0]["content_hash"] if page and page[0]["id"] == name else None


if __name__ == "__main__":
    asyncio.run(main())
