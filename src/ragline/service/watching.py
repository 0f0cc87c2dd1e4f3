"""Keep an index in step with folders: `ragline watch DIR...`.

At start the folders are synchronised: every supported file is ingested (unchanged ones
are skipped by content hash) and every indexed document whose source lies under a
folder but whose file is gone is deleted. Then file-system events (inotify through
watchfiles, a Rust watcher) are applied as they come: a created or changed file is
written, a deleted one removed, a renamed one is both; a folder moved in is ingested,
one moved out or deleted takes its documents with it. Events are gathered for at most
``step_ms`` of quiet (50 ms) so an editor's save (write, rename, chmod) is one update.

A document's id is the path relative to the folder given, with ``id_prefix`` in front
(as ``ragline ingest`` names them), and it is received at the file's modification time,
so the freshness metric (``rag_ingest_freshness_seconds``) measures change ->
searchable. Hidden files and unsupported types are ignored (editors' swap files).

Where it writes is a ``Sink``; ``ServiceSink`` writes through the answering seam, so the
same watcher serves the engine in this process (LocalService) and a server over HTTP
(RemoteService).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ragline.core.errors import DocumentError, NotFound
from ragline.core.models import Document
from ragline.ingest.loaders import SUPPORTED_SUFFIXES, iter_files, load_file
from ragline.seam import Service, catalogue_of

log = logging.getLogger("ragline.watch")


class Sink(Protocol):
    async def write(self, documents: Sequence[Document]) -> None: ...

    async def delete(self, document_id: str) -> bool: ...

    async def documents(self, prefix: str) -> list[dict[str, Any]]: ...


class ServiceSink:
    """Writes, deletes and lists through the seam (a Service with a catalogue: the
    engine here, or a server), a tenant's documents, 32 to a request."""

    def __init__(self, service: Service, tenant: str) -> None:
        self.service = service
        self.tenant = tenant
        self.catalogue = catalogue_of(service)  # the bus shape has none: it says so at once

    async def write(self, documents: Sequence[Document]) -> None:
        for start in range(0, len(documents), 32):
            await self.service.write(documents[start : start + 32], wait=True)

    async def delete(self, document_id: str) -> bool:
        try:
            await self.service.delete(self.tenant, document_id)
        except NotFound:
            return False
        return True

    async def documents(self, prefix: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: str | None = ""
        while after is not None:
            page, after = await self.catalogue.documents(self.tenant, prefix, after, 1000)
            found += page
        return found


@dataclass(frozen=True)
class Root:
    path: Path  # absolute, resolved
    prefix: str


Report = Callable[[str, str, float | None], None]  # (what: updated/deleted/skipped, id or message, seconds)


_LINK_OUT = "a symbolic link out of the watched folder; skipped (--follow-symlinks to include it)"


class Watcher:
    def __init__(
        self,
        sink: Sink,
        folders: Sequence[Path],
        tenant: str,
        max_bytes: int,
        id_prefix: str = "",
        report: Report | None = None,
        step_ms: int = 50,
        follow_symlinks: bool = False,
    ) -> None:
        for folder in folders:
            if not folder.is_dir():
                raise DocumentError(str(folder), "not a directory (ragline watch takes folders)")
        self.sink = sink
        self.roots = [Root(Path(f).resolve(), id_prefix) for f in folders]
        self.tenant = tenant
        self.max_bytes = max_bytes
        self.report = report or (lambda what, name, seconds: None)
        self.step_ms = step_ms
        self.follow_symlinks = follow_symlinks

    async def sync(self) -> tuple[int, int]:
        """Ingest what is there and delete what is gone; (files ingested, documents deleted)."""
        written = 0
        for root in self.roots:
            docs = []
            for item in iter_files([root.path], self.follow_symlinks, id_prefix=root.prefix):
                if isinstance(item, DocumentError):
                    continue  # unsupported or unreadable: the ingest command reports those
                doc = await asyncio.to_thread(self._load, item[0], item[1])
                if doc is not None:
                    docs.append(doc)
                if len(docs) >= 32:
                    await self.sink.write(docs)
                    written, docs = written + len(docs), []
            if docs:
                await self.sink.write(docs)
                written += len(docs)
        deleted = 0
        for root in self.roots:
            for listed in await self.sink.documents(root.prefix):
                source = str(listed.get("metadata", {}).get("source", ""))
                if source.startswith(f"{root.path}/") and not await asyncio.to_thread(Path(source).exists):
                    deleted += await self.sink.delete(listed["id"])
        return written, deleted

    async def run(self, stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> None:
        """Apply changes until ``stop`` is set (or the task is cancelled)."""
        from watchfiles import awatch

        changes = awatch(
            *(r.path for r in self.roots),
            watch_filter=self._wanted,
            step=self.step_ms,
            debounce=1000,
            stop_event=stop,
            yield_on_timeout=True,
            rust_timeout=200,
        )
        async for batch in changes:
            if ready is not None:
                ready.set()  # the watcher is armed: changes from now on are seen
            if batch:
                await self.apply({Path(path) for _, path in batch})

    async def apply(self, paths: set[Path]) -> None:
        """Bring these paths' documents in step with the disk."""
        upserts: list[Document] = []
        for path in sorted(paths):
            root = self._root_of(path)
            if root is None:
                continue
            name = root.prefix + path.relative_to(root.path).as_posix()
            if not self._inside(path, root):  # a link out of the tree, new or replacing a file
                self.report("skipped", f"{path}: {_LINK_OUT}", None)
                if await self.sink.delete(name):
                    self.report("deleted", name, None)
                continue
            if path.is_dir():  # a folder moved in
                for item in iter_files([path], self.follow_symlinks, id_prefix=f"{name}/"):
                    if isinstance(item, tuple) and (doc := await asyncio.to_thread(self._load, *item)) is not None:
                        upserts.append(doc)
            elif path.is_file():
                if path.suffix.lower() in SUPPORTED_SUFFIXES and (
                    doc := await asyncio.to_thread(self._load, path, name)
                ):
                    upserts.append(doc)
            else:  # gone: the file, or a whole folder
                if await self.sink.delete(name):
                    self.report("deleted", name, None)
                for listed in await self.sink.documents(f"{name}/"):
                    await self.sink.delete(listed["id"])
                    self.report("deleted", listed["id"], None)
        if upserts:
            await self.sink.write(upserts)
            now = time.time()
            for doc in upserts:
                self.report("updated", doc.id, now - doc.received_at.timestamp())

    def _inside(self, path: Path, root: Root) -> bool:
        """Whether ``path`` (after its links) is inside the watched folder, or links are followed."""
        if self.follow_symlinks:
            return True
        try:
            return path.resolve().is_relative_to(root.path)
        except (OSError, RuntimeError):  # a loop of links, a vanished path
            return False

    def _load(self, path: Path, document_id: str) -> Document | None:
        root = self._root_of(path)
        if root is not None and not self._inside(path, root):  # replaced by a link since the event
            self.report("skipped", f"{path}: {_LINK_OUT}", None)
            return None
        try:
            changed = path.stat().st_mtime
            doc = load_file(path, self.tenant, self.max_bytes, document_id=document_id)
        except (DocumentError, OSError) as exc:
            self.report("skipped", str(exc), None)
            return None
        # Received when the file changed: the freshness metric measures change -> searchable.
        return doc.model_copy(update={"received_at": datetime.fromtimestamp(changed, UTC)})

    def _root_of(self, path: Path) -> Root | None:
        inside = [r for r in self.roots if path.is_relative_to(r.path)]
        return max(inside, key=lambda r: len(r.path.parts)) if inside else None

    def _wanted(self, change: Any, path: str) -> bool:
        """Not hidden below the folder watched (swap files, .git), not a backup (~)."""
        where = Path(path)
        root = self._root_of(where)
        parts = where.relative_to(root.path).parts if root else where.parts
        return not any(p.startswith(".") for p in parts) and not path.endswith("~")
