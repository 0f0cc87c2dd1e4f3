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

from ..errors import NotFound, RaglineError
from ..models import Document, IngestReport

log = logging.getLogger("ragline.jobs")

Write = Callable[[Sequence[Document]], Awaitable[IngestReport | None]]


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

    def view(self) -> dict[str, Any]:
        outcome = {"searchable": "searchable", "published": "accepted", "failed": "failed"}.get(self.status, "pending")
        return {
            "id": self.id, "status": self.status, "error": self.error,
            "documents": [{"id": d.id, "status": outcome} for d in self.documents],
            "rejected": self.rejected,
            "report": self.report.model_dump() if self.report else None,
            "created_at": self.created, "finished_at": self.finished,
        }


class Jobs:
    def __init__(self, spool_dir: Path | None, max_jobs: int = 10_000) -> None:
        self.spool_dir = spool_dir
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, tenant: str, documents: list[Document], rejected: list[dict[str, Any]], write: Write,
              job_id: str | None = None) -> Job:
        job = Job(job_id or uuid.uuid4().hex, tenant, documents, rejected)
        self._remember(job)
        task = asyncio.create_task(self._run(job, write), name=f"ingest-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))
        return job

    def record(self, tenant: str, documents: list[Document], rejected: list[dict[str, Any]],
               status: str, report: IngestReport | None = None) -> Job:
        """A job that is already over (written while the caller waited, or published)."""
        job = Job(uuid.uuid4().hex, tenant, documents, rejected, status=status, report=report,
                  finished=time.time())
        self._remember(job)
        return job

    def get(self, tenant: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.tenant != tenant:
            raise NotFound(f"no ingestion job {job_id!r}")
        return job

    async def _run(self, job: Job, write: Write) -> None:
        job.status = "running"
        try:
            job.report = await write(job.documents) or None
            job.status = "searchable"
        except asyncio.CancelledError:
            job.status = "interrupted"
            raise
        except RaglineError as exc:
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.error("ingestion job %s failed: %s", job.id, job.error)
        except Exception as exc:  # noqa: BLE001 - reported on the job, never lost silently
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("ingestion job %s failed", job.id)
        finally:
            job.finished = time.time()
            if job.status != "interrupted":
                self._unspool(job.id)

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        while len(self._jobs) > self.max_jobs:
            oldest = next(iter(self._jobs))
            if oldest in self._tasks:
                break  # never forget a running job
            self._jobs.popitem(last=False)

    # -- shutdown and resumption ------------------------------------------------------------

    async def close(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for running jobs; spool the rest to disk for the next start."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=grace_s)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for job in self._jobs.values():
            if job.status in ("interrupted", "queued", "running"):
                self._spool(job)

    def _spool(self, job: Job) -> None:
        if self.spool_dir is None:
            log.error("ingestion job %s interrupted and no spool directory set: %d documents not written",
                      job.id, len(job.documents))
            return
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        path = self.spool_dir / f"{job.id}.json"
        body = json.dumps({"tenant": job.tenant, "documents": [d.model_dump(mode="json") for d in job.documents]})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        log.warning("ingestion job %s interrupted by shutdown: %d documents spooled to %s, resumed at next start",
                    job.id, len(job.documents), path)

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
            resumed.append(self.start(data["tenant"], documents, [], write, job_id=path.stem))
            log.info("resumed spooled ingestion job %s (%d documents)", path.stem, len(documents))
        return resumed
