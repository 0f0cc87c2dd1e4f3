"""Ingesting files through a running server, as its ingestion jobs.

The files are read here (the same loaders as a local ingest, pages included) and sent a
batch at a time without waiting (``wait=false``): each batch becomes a server job, which
is followed with ``GET /v1/ingestions/{id}`` until it ends, its chunk counts feeding the
progress bar. No request waits for a whole batch to be written, so a slow or loaded
server never times the CLI out, and a re-run never queues the same work twice behind a
request the client gave up on.

What happens when it stops:

- Interrupted (Ctrl-C): nothing is cancelled. ``interrupted()`` says what the server has
  written and which job it is still running, with the URL to follow it. Ingestion is
  idempotent: running the same command again skips what is written.
- The server stops answering: polls are retried for ``patience_s``; then
  ``ServerStopped`` says which job was running and how far it got. A server that
  restarts resumes the job from its spool; a re-run skips what was written.
- The server is full (503 with Retry-After): the batch is sent again after the wait.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ragline.client import Client
from ragline.core.errors import (
    DependencyTimeout,
    DependencyUnavailable,
    DocumentError,
    NotFound,
    RaglineError,
    RateLimited,
)
from ragline.core.models import Document, IngestReport
from ragline.ingest.loaders import iter_files, load_file
from ragline.seam import written_so_far

_BATCH_DOCS, _BATCH_BYTES = 32, 4_000_000  # per request (the server's body limit is 25 MB by default)
_ENDED = {"searchable", "published", "failed", "interrupted"}
_T = TypeVar("_T")


class ServerStopped(RaglineError):
    """The server stopped answering while it was running one of our jobs."""


@dataclass
class _Following:
    job_id: str
    documents: int
    done: int = 0
    written: int = 0
    unchanged: int = 0


@dataclass
class RemoteIngest:
    client: Client
    max_bytes: int
    on_file: Callable[[str], None] = lambda name: None
    progress: Callable[[str, int], None] = lambda kind, n: None
    total: IngestReport = field(default_factory=IngestReport)
    poll_s: float = 0.5  # the longest wait between two looks at a job (the first ones are 20 ms)
    patience_s: float = 20.0  # how long a server may not answer before it is taken as stopped
    sleep: Callable[[float], None] = time.sleep
    window: int = 4  # jobs submitted and not yet over: the next batch is read and sent meanwhile
    pending: deque[_Following] = field(default_factory=deque)

    @property
    def current(self) -> _Following | None:
        return self.pending[0] if self.pending else None

    def run(self, targets: list[Path], follow_symlinks: bool = False, id_prefix: str = "") -> IngestReport:
        started = time.perf_counter()
        for batch in self._batches(iter_files(targets, follow_symlinks, id_prefix)):
            self._send(batch)
            while len(self.pending) >= self.window:
                self._follow(self.pending[0])
        while self.pending:
            self._follow(self.pending[0])
        self.total.seconds = time.perf_counter() - started
        return self.total

    def interrupted(self, signal_name: str) -> str:
        """What was written, and what the server goes on with: for the user who pressed Ctrl-C."""
        written = written_so_far(signal_name, self.total)
        if not self.pending:
            return f"{written}; run the same command again to finish: what is written is skipped"
        jobs = ", ".join(
            f"{job.job_id} ({job.done} of {job.documents} documents done): {self.client.url}/v1/ingestions/{job.job_id}"
            for job in self.pending
        )
        return (
            f"{written}; the server goes on with its jobs, not cancelled: {jobs}. Run the same command again to "
            "finish the rest: what is written is skipped"
        )

    def _batches(self, items: Iterable[tuple[Path, str] | DocumentError]) -> Iterable[list[Document]]:
        batch: list[Document] = []
        size = 0
        for item in items:
            try:
                if isinstance(item, DocumentError):
                    raise item
                doc = load_file(item[0], "default", self.max_bytes, document_id=item[1])  # the server's tenant
            except DocumentError as exc:
                self.total.errors.append(str(exc))
                self.on_file(exc.source)
                continue
            batch.append(doc)
            size += len(doc.text) + 200
            self.on_file(str(item[0]))
            if len(batch) >= _BATCH_DOCS or size >= _BATCH_BYTES:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch

    def _send(self, batch: list[Document]) -> None:
        response = self._retrying(lambda: self.client.add(batch, wait=False), what="sending documents")
        self.total.errors.extend(response.errors)
        if response.job_id is None:  # an older server: written, or accepted, already
            if response.report is not None:
                self.total.add(response.report)
                self._advance(_Following("", 0), response.report.chunks_written, response.report.chunks_unchanged)
            else:
                self.total.documents += len(response.ids)
            return
        self.pending.append(_Following(response.job_id, len(response.ids)))

    def _follow(self, job: _Following) -> None:
        """Follow ``job`` (the oldest pending one) until it is over."""
        wait = 0.02  # an unchanged batch is over in milliseconds: look soon, then less often
        while True:
            view = self._retrying(lambda: self.client.ingestion(job.job_id), what=f"following job {job.job_id}")
            if view.progress is not None:
                job.done = view.progress.documents_done
                self._advance(job, view.progress.chunks_written, view.progress.chunks_unchanged)
            if view.status in _ENDED:
                break
            self.sleep(wait)
            wait = min(self.poll_s, wait * 2)
        self.pending.popleft()
        for document in view.documents:
            if document.status == "failed":
                self.total.errors.append(f"{document.id}: failed on the server ({view.error or 'see the job'})")
        if view.status == "published":  # through a bus gateway: on the broker, the ingest workers write it
            self.total.documents += len(view.documents)
        elif view.report is not None:
            self.total.add(view.report)
            self._advance(job, view.report.chunks_written, view.report.chunks_unchanged)
        if view.status in {"failed", "interrupted"} and not any(d.status == "failed" for d in view.documents):
            self.total.errors.append(f"job {job.job_id} {view.status}: {view.error or 'no reason given'}")

    def _advance(self, job: _Following, written: int, unchanged: int) -> None:
        new_written, new_unchanged = written - job.written, unchanged - job.unchanged
        if new_written > 0:
            self.progress("planned", new_written)
        if new_unchanged > 0:
            self.progress("unchanged", new_unchanged)
        if new_written > 0:
            self.progress("written", new_written)
        job.written, job.unchanged = max(written, job.written), max(unchanged, job.unchanged)

    def _retrying(self, call: Callable[[], _T], what: str) -> _T:
        """``call()``, again while the server is full or briefly away; ServerStopped past our patience."""
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                return call()
            except RateLimited as exc:
                wait = exc.retry_after_s
                error: RaglineError = exc
            except (DependencyUnavailable, DependencyTimeout) as exc:
                wait = float(getattr(exc, "retry_after_s", 0.5) or 0.5)
                error = exc
            except NotFound as exc:
                raise self._stopped(what, exc, restarted=True) from None
            except RaglineError as exc:
                if getattr(exc, "status", 0) < 500:
                    raise
                wait, error = 0.5, exc  # a server shutting down answers 500 for a moment
            if time.monotonic() + wait > deadline:
                raise self._stopped(what, error) from None
            self.sleep(min(wait, max(0.05, deadline - time.monotonic())))

    def _stopped(self, what: str, cause: RaglineError, restarted: bool = False) -> ServerStopped:
        job = self.current
        where = f" ({job.done} of {job.documents} documents of job {job.job_id} done)" if job else ""
        why = "it no longer knows the job (restarted?)" if restarted else f"it stopped answering: {cause}"
        return ServerStopped(
            f"the server at {self.client.url} failed while {what}{where}: {why}. {self.total.documents} documents "
            "were written before it and stay; a server restarted from its spool resumes its jobs. Run the same "
            "command again to finish: what is written is skipped"
        )
