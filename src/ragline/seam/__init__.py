"""The answering seam: what the HTTP API, the command line and the chat completions use,
whatever answers behind it.

Three small Protocols, one per concern (as Haystack keeps one per document-store concern):

- ``Answers``: ask, stream and search, and read back one document's chunks.
- ``DocumentWrites``: write documents (a ``Receipt`` says whether they are searchable
  already, queued on a durable bus, or accepted as a job to follow) and delete one.
- ``Catalogue``: list documents and count chunks. Optional: a front door that holds no
  store (the gateway of the bus shape) has none, and says so with ``catalogue = None``.
- ``FileIngest``: ingest files and folders named by path on this machine (``ragline
  ingest``), with progress and what to say when interrupted. Optional like the catalogue
  (the gateway serves other machines' files only as uploads).

A ``Service`` has all of them plus readiness and close. Three implementations, built
only by their factories (nothing else branches on the shape):

- ``LocalService`` (seam/local.py): the embedded engine in this process.
- ``BusService`` (seam/bus.py): the gateway; the stage workers answer over the bus.
- ``RemoteService`` (seam/remote.py): a running server, over HTTP.

``tests/contracts/test_seam.py`` runs one contract suite on all three.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ragline.core.errors import NotImplementedInShape
from ragline.core.models import Answer, Context, Document, Hit, IngestReport, Query

WriteStatus = Literal["searchable", "queued", "accepted"]


@dataclass(frozen=True)
class Receipt:
    """What a write came to.

    ``searchable``: written; a search sees it now (``report`` says what was done).
    ``queued``: on a durable queue (the bus, acks=all); the ingest workers make it searchable.
    ``accepted``: a job in this service (``job_id`` to follow); kept on disk until done.
    """

    status: WriteStatus
    ids: tuple[str, ...]
    report: IngestReport | None = None
    job_id: str | None = None


class Answers(Protocol):
    """Questions and searches over the caller's tenant (the query names it)."""

    async def ask(self, query: Query) -> Answer:
        """An answer with citations; "not in the sources" is an answer, not an error."""
        ...

    def stream(self, query: Query) -> AsyncIterator[str | Answer]:
        """The answer's text as it is made (``str`` pieces), then the whole ``Answer`` last."""
        ...

    async def search(self, query: Query) -> Context:
        """The best chunks for the query, best first; no answer is made."""
        ...

    async def document(self, tenant: str, document_id: str) -> list[Hit]:
        """One document's chunks in order; ``[]`` when there is no such document."""
        ...


class DocumentWrites(Protocol):
    """Writes are idempotent: writing the same document again changes nothing."""

    async def write(self, documents: Sequence[Document], *, wait: bool = True) -> Receipt:
        """Add or replace documents. ``wait``: return once they are searchable (a service
        that cannot promise that raises InvalidInput); otherwise it may return sooner with a
        ``queued`` or ``accepted`` receipt."""
        ...

    async def delete(self, tenant: str, document_id: str) -> int | None:
        """Remove a document: the chunks removed, or None when the delete was queued and
        happens shortly (in order after the document's writes). NotFound when there is
        no such document and the service can tell at once."""
        ...


class Catalogue(Protocol):
    """What a tenant holds; only where the store is reachable from this side."""

    async def documents(
        self, tenant: str, prefix: str, after: str, limit: int, filters: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of documents in id order (id > ``after``), and the cursor of the next page."""
        ...

    async def stats(self, tenant: str) -> dict[str, Any]:
        """The tenant's chunk count, the collection and the embedder (and, through a server, its URL)."""
        ...


class FileIngest(Protocol):
    """Files and folders on this machine, read with the same loaders (ingest/loaders.py)
    whoever writes them: the engine here (files parsed in child processes) or a server
    (sent a batch at a time as jobs, followed to the end)."""

    async def ingest_paths(
        self,
        tenant: str,
        targets: list[Path],
        *,
        follow_symlinks: bool = False,
        id_prefix: str = "",
        on_file: Callable[[str], None] | None = None,
        progress: Callable[[str, int], None] | None = None,
        into: IngestReport | None = None,
    ) -> IngestReport:
        """Write every file (a file that fails is reported in ``errors``; the rest go on).
        ``into`` is kept up to date as groups are written; ``progress(kind, n)``: chunks
        planned, written and unchanged; ``on_file(path)`` as each file is read."""
        ...

    def interrupted(self, signal_name: str) -> str:
        """What the user who stopped the ingest should know: what is written, what goes on."""
        ...


class Service(Answers, DocumentWrites, Protocol):
    """Everything a front door needs: answers, writes, an optional catalogue, readiness."""

    @property
    def catalogue(self) -> Catalogue | None: ...

    @property
    def files(self) -> FileIngest | None: ...

    @property
    def generator_name(self) -> str: ...

    async def readiness(self) -> dict[str, dict[str, Any]]:
        """Each dependency's check: ``status`` ok/unavailable and whether it is ``required``."""
        ...

    async def close(self) -> None: ...


def catalogue_of(service: Service) -> Catalogue:
    """The service's catalogue, or a clear 501 where this deployment has none."""
    catalogue = service.catalogue
    if catalogue is None:
        raise NotImplementedInShape(
            "listing documents and statistics need the store, which this API process does not "
            "hold (the bus shape: the workers do); run `ragline ls` / `ragline stats` with a "
            "worker's settings"
        )
    return catalogue


def written_so_far(signal_name: str, report: IngestReport) -> str:
    """The first words to a user who stopped an ingest, whoever was writing."""
    return (
        f"interrupted ({signal_name}): {report.documents} documents written "
        f"({report.chunks_written} chunks written, {report.chunks_unchanged} unchanged)"
    )


def files_of(service: Service) -> FileIngest:
    """The service's file ingest, or a clear 501 where this deployment has none."""
    files = service.files
    if files is None:
        raise NotImplementedInShape("ingesting files by path needs the engine or a server to send them to")
    return files


__all__ = [
    "Answers",
    "Catalogue",
    "DocumentWrites",
    "FileIngest",
    "Receipt",
    "Service",
    "WriteStatus",
    "catalogue_of",
    "files_of",
    "written_so_far",
]
