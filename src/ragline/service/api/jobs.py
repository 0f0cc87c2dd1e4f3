"""Ingestion jobs: what a 202 promised, and what became of each document.

A batch accepted without waiting becomes a job with an id; ``GET /v1/ingestions/{id}``
shows its status and each document's outcome (and the documents refused when it was
submitted). In the embedded shape the job runs in this process; at shutdown, jobs not
finished within the grace period are written to the spool directory and resumed at
the next start (ingestion is idempotent, so a resumed job never duplicates). In the
bus shape a job is done when its documents are on the broker (acks=all).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragline.core.errors import NotFound, Overloaded, RaglineError
from ragline.core.models import Document, IngestReport
from ragline.seam import Receipt

log = logging.getLogger("ragline.jobs")

Write = Callable[[Sequence[Document], Callable[[str, int], None] | None], Awaitable[IngestReport | None]]
_GROUP_CHUNKS = 64  # documents are written a group of about this many chunks at a time
_CHARS_PER_CHUNK = 900  # the estimate before any document is chunked
_KINDS = ("planned", "unchanged", "embedded", "written")  # stages.ingest's progress events


@dataclass
class Job:
    id: str
    tenant: str
    documents: list[Document]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    status: str = "queued"  # queued, running, searchable, published, failed, interrupted
    error: str | None = None
    report: IngestReport | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    started: float | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # document id -> searchable / failed
    chunks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_KINDS, 0))
    chars_planned: int = 0  # characters of the documents handed to the writer so far
    ids: list[str] = field(default_factory=list)  # kept when the texts are let go
    chars_total: int = 0

    def __post_init__(self) -> None:
        self.ids = [d.id for d in self.documents]
        self.chars_total = sum(len(d.text) for d in self.documents)

    def let_go_of_texts(self) -> None:
        """A finished job keeps its ids and outcomes, not its documents' texts (a server
        remembers up to 10,000 jobs: their texts would be the whole uploads again)."""
        self.documents = []

    def view(self) -> dict[str, Any]:
        default = {"searchable": "searchable", "published": "accepted", "failed": "failed"}.get(self.status, "pending")
        return {
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "documents": [{"id": i, "status": self.outcomes.get(i, default)} for i in self.ids],
            "rejected": self.rejected,
            "report": self.report.model_dump() if self.report else None,
            "progress": self.progress(),
            "created_at": self.created,
            "finished_at": self.finished,
        }

    def track(self, kind: str, n: int) -> None:
        """The progress callback of the writes (stages.ingest)."""
        self.chunks[kind] = self.chunks.get(kind, 0) + n

    def progress(self) -> dict[str, Any]:
        """Chunks embedded and written so far, the rate, and an estimate of the time left
        (chunks per character so far times the characters not yet chunked)."""
        known = self.chunks["planned"] + self.chunks["unchanged"]
        done = self.chunks["written"] + self.chunks["unchanged"]
        unplanned = self.chars_total - self.chars_planned
        per_char = known / self.chars_planned if known and self.chars_planned else 1 / _CHARS_PER_CHUNK
        total = known + round(max(0, unplanned) * per_char)
        elapsed = ((self.finished or time.time()) - self.started) if self.started else 0.0
        rate = done / elapsed if elapsed > 0 else 0.0
        over = self.finished is not None
        return {
            "documents_total": len(self.ids),
            "documents_done": len(self.outcomes),
            "chunks_estimated": max(total, done),
            "chunks_embedded": self.chunks["embedded"],
            "chunks_written": self.chunks["written"],
            "chunks_unchanged": self.chunks["unchanged"],
            "chunks_per_s": round(rate, 1),
            "eta_s": 0.0 if over else (round((total - done) / rate, 1) if rate > 0 else None),
        }


class Jobs:
    """Accepted jobs wait in a bounded queue for ``runners`` tasks; past ``max_queued``
    a new job is refused (503, retry later) instead of piling up in memory."""

    def __init__(self, spool_dir: Path | None, max_jobs: int = 10_000, max_queued: int = 64, runners: int = 2) -> None:
        self.spool_dir = spool_dir
        self.max_jobs = max_jobs
        self.max_queued = max_queued
        self.runners = runners
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: asyncio.Queue[tuple[Job, Write]] | None = None
        self._running: set[str] = set()
        self._waiting: dict[str, int] = {}  # queued jobs per tenant
        self._tasks: list[asyncio.Task[None]] = []

    async def accept(self, tenant: str, documents: list[Document], rejected: list[dict[str, Any]], write: Write) -> Job:
        """Queue a job written to the spool first: the 202 that follows survives a crash
        (kill -9, out of memory), not only a graceful shutdown; the next start resumes it."""
        self._check_room(tenant)
        job = Job(uuid.uuid4().hex, tenant, documents, rejected)
        if self.spool_dir is not None:
            await asyncio.to_thread(self._spool, job, "accepted")
        try:
            return self.start(tenant, documents, rejected, write, job=job)
        except Overloaded:
            self._unspool(job.id)
            raise

    def start(
        self,
        tenant: str,
        documents: list[Document],
        rejected: list[dict[str, Any]],
        write: Write,
        job_id: str | None = None,
        force: bool = False,
        job: Job | None = None,
    ) -> Job:
        """Queue a job (``force``: even past the bound, for jobs accepted before a restart)."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._tasks = [asyncio.create_task(self._runner(), name=f"ingest-runner-{n}") for n in range(self.runners)]
        if not force:
            self._check_room(tenant)
        self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
        job = job or Job(job_id or uuid.uuid4().hex, tenant, documents, rejected)
        self._remember(job)
        self._queue.put_nowait((job, write))
        return job

    def _check_room(self, tenant: str) -> None:
        if self._queue is not None and self._queue.qsize() >= self.max_queued:
            raise Overloaded("ingestion job", self.max_queued)
        per_tenant = max(1, self.max_queued // 4)  # one tenant cannot fill the queue for all
        if self._waiting.get(tenant, 0) >= per_tenant:
            raise Overloaded("tenant's ingestion job", per_tenant)

    async def _runner(self) -> None:
        assert self._queue is not None
        while True:
            job, write = await self._queue.get()
            self._waiting[job.tenant] -= 1
            self._running.add(job.id)
            try:
                await self._run(job, write)
            finally:
                self._running.discard(job.id)

    def record(
        self,
        tenant: str,
        documents: list[Document],
        rejected: list[dict[str, Any]],
        status: str,
        report: IngestReport | None = None,
    ) -> Job:
        """A job that is already over (written while the caller waited, or published)."""
        job = Job(uuid.uuid4().hex, tenant, documents, rejected, status=status, report=report, finished=time.time())
        job.let_go_of_texts()
        self._remember(job)
        return job

    def book(self, receipt: Receipt, tenant: str, documents: list[Document], rejected: list[dict[str, Any]]) -> Job:
        """The job a write's receipt stands for, with the documents refused beside it: the
        job already running for an ``accepted`` receipt, else one recorded as over
        (``searchable``, or ``published`` for a write queued on the bus)."""
        if receipt.job_id is not None and receipt.job_id in self._jobs:
            job = self._jobs[receipt.job_id]
            job.rejected = rejected
            return job
        status = "searchable" if receipt.status == "searchable" else "published"
        return self.record(tenant, documents, rejected, status, receipt.report)

    def get(self, tenant: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:
            raise NotFound(f"no ingestion job {job_id!r}")
        return job

    async def _run(self, job: Job, write: Write) -> None:
        """Write the job's documents a group at a time: each group is searchable (and its
        documents' outcome known) before the next starts; a group that fails fails its
        documents and the rest, and earlier groups stay written."""
        job.status, job.started = "running", time.time()
        total = IngestReport()
        try:
            for group in _groups(job.documents):
                job.chars_planned += sum(len(d.text) for d in group)
                report = await write(group, job.track)
                if report is not None:
                    total.add(report)
                    job.report = total
                job.outcomes.update((d.id, "searchable") for d in group)
            job.status = "searchable"
        except asyncio.CancelledError:
            job.status = "interrupted"
            raise
        except RaglineError as exc:
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("ingestion job %s failed: %s", job.id, job.error)
        except Exception as exc:
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("ingestion job %s failed", job.id)
        finally:
            job.finished = time.time()
            if job.status == "failed":
                job.outcomes.update((i, "failed") for i in job.ids if i not in job.outcomes)
            if job.status != "interrupted":
                self._unspool(job.id)
                job.let_go_of_texts()

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > self.max_jobs:
            oldest = next(iter(self._jobs))
            if self._jobs[oldest].finished is None:
                break  # never forget a job that is not over
            self._jobs.popitem(last=False)

    # -- shutdown and resumption ------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for queued and running jobs; spool the rest for the next start."""
        if not self._tasks:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while (self._running or (self._queue and not self._queue.empty())) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for job in self._jobs.values():
            if job.status in ("interrupted", "queued", "running"):
                await asyncio.to_thread(self._spool, job)

    def _spool(self, job: Job, why: str = "interrupted by shutdown") -> None:
        if self.spool_dir is None:
            log.error(
                "ingestion job %s interrupted and no spool directory set: %d documents not written",
                job.id,
                len(job.documents),
            )
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{job.id}.json"
        body = json.dumps({"tenant": job.tenant, "documents": [d.model_dump(mode="json") for d in job.documents]})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        if why != "accepted":
            log.warning(
                "ingestion job %s %s: %d documents spooled to %s, resumed at next start",
                job.id,
                why,
                len(job.documents),
                path,
            )

    def _unspool(self, job_id: str) -> None:
        if self.spool_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.spool_dir / f"{job_id}.json").unlink()

    def resume(self, write: Write) -> list[Job]:
        """Start again every job a previous shutdown spooled (under its old id)."""
        if self.spool_dir is None or not self.spool_dir.is_dir():
            return []
        resumed = []
        for path in sorted(self.spool_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                documents = [Document.model_validate(d) for d in data["documents"]]
            except (ValueError, KeyError) as exc:
                log.error("cannot resume spooled ingestion %s: %s (left in place)", path.name, exc)
                continue
            resumed.append(self.start(data["tenant"], documents, [], write, job_id=path.stem, force=True))
            log.info("resumed spooled ingestion job %s (%d documents)", path.stem, len(documents))
        return resumed


def _groups(documents: list[Document]) -> list[list[Document]]:
    groups: list[list[Document]] = [[]]
    estimate = 0
    for doc in documents:
        if estimate >= _GROUP_CHUNKS:
            groups.append([])
            estimate = 0
        groups[-1].append(doc)
        estimate += max(1, len(doc.text) // _CHARS_PER_CHUNK)
    return [g for g in groups if g]
