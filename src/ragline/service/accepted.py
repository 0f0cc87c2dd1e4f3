"""What the gateway accepted and the ingest side has not confirmed yet, kept on disk.

A 202 for a document means it will be indexed, even when the broker loses its memory
before an ingest worker took the message (Tansu keeps its log in memory; a Kafka broker
with replication does not lose it, and then nothing is ever sent twice). The gateway
writes each write it accepts (a document or a delete) here, one file per document
(tenant and id), so a later write of the same document replaces an earlier one. It is
kept before publishing (a receipt can come back before the publish returns) and put
back as it was if the broker refused it. The ingest worker sends a receipt to the
gateway's reply route once the write is done (or dead-lettered), and the entry goes. What is left is published
again: after the bus came back from a failure, at start (what a previous run left), and
every ``resend_after_s`` for entries that old (a receipt lost with a broker). Writes are
upserts with content-derived ids and deletes are idempotent, so sending again is safe.

The spool is bounded (``max_bytes``): past it, writes are refused with 503 until
receipts come back. Files are written atomically (temporary file and rename), not
fsync'd: they survive the process, not the machine.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ragline.core.errors import DependencyUnavailable

log = logging.getLogger("ragline.gateway")


@dataclass(frozen=True)
class Entry:
    key: str  # "tenant/document id", the message key
    token: str  # this write's receipt token (a newer write of the same document has another)
    topic: str
    value: bytes
    headers: dict[str, bytes]
    accepted_at: float  # wall clock

    def encode(self) -> bytes:
        return json.dumps(
            {
                "key": self.key,
                "token": self.token,
                "topic": self.topic,
                "value": base64.b64encode(self.value).decode(),
                "headers": {k: base64.b64encode(v).decode() for k, v in self.headers.items()},
                "accepted_at": self.accepted_at,
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        record = json.loads(raw)
        return cls(
            key=record["key"],
            token=record["token"],
            topic=record["topic"],
            value=base64.b64decode(record["value"]),
            headers={k: base64.b64decode(v) for k, v in record["headers"].items()},
            accepted_at=float(record["accepted_at"]),
        )


def new_token() -> str:
    return uuid.uuid4().hex


class AcceptedSpool:
    def __init__(self, directory: Path, max_bytes: int = 1 << 30) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] = {p: p.stat().st_size for p in self.directory.glob("*.json")}
        self._bytes = sum(self._sizes.values())  # kept with _sizes: the bound is checked per write
        self.confirmed = 0
        self.resent = 0
        self.confirmed_up_to = 0.0  # the latest accepted_at among confirmed entries (wall clock)
        self.last_confirmed_at = time.monotonic()  # when a receipt last removed an entry (or start)

    def _path(self, key: str) -> Path:
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.json"

    @property
    def pending(self) -> int:
        return len(self._sizes)

    def _set(self, path: Path, size: int | None) -> None:
        """Record ``path``'s size (None: gone); the caller holds the lock."""
        self._bytes += (size or 0) - self._sizes.pop(path, 0)
        if size is not None:
            self._sizes[path] = size

    def room_for(self, size: int) -> None:
        """Raise DependencyUnavailable (503) when ``size`` more bytes would pass the bound."""
        with self._lock:
            if self._bytes + size > self.max_bytes:
                raise DependencyUnavailable(
                    f"{len(self._sizes)} accepted documents are waiting for the ingest workers "
                    f"({self.max_bytes // 1_000_000} MB spooled); try again later"
                )

    def keep(self, entries: list[Entry]) -> list[Entry]:
        """Write ``entries``; returns the entries they replaced (to put back with
        ``restore`` if the broker refuses the new ones)."""
        replaced = []
        for entry in entries:
            path = self._path(entry.key)
            raw = entry.encode()
            temporary = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
            temporary.write_bytes(raw)
            with self._lock:
                with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                    replaced.append(Entry.decode(path.read_bytes()))
                os.replace(temporary, path)
                self._set(path, len(raw))
        return replaced

    def restore(self, refused: list[Entry], replaced: list[Entry]) -> None:
        """The broker refused ``refused``: drop them and put back what they replaced."""
        for entry in refused:
            self.confirm(entry.key, entry.token)
        self.keep([e for e in replaced if not self._path(e.key).exists()])

    def confirm(self, key: str, token: str) -> bool:
        """The ingest side wrote (or dead-lettered) the write ``token`` of ``key``: its entry
        goes, unless a newer write of that document replaced it meanwhile."""
        path = self._path(key)
        with self._lock:
            try:
                entry = Entry.decode(path.read_bytes())
                if entry.token != token:
                    return False
                path.unlink()
            except (FileNotFoundError, ValueError, KeyError):
                return False
            self._set(path, None)
            self.confirmed += 1
            self.confirmed_up_to = max(self.confirmed_up_to, entry.accepted_at)
            self.last_confirmed_at = time.monotonic()
            return True

    def overtaken(self, by_s: float) -> list[Entry]:
        """Entries accepted more than ``by_s`` before an entry that was confirmed: the ingest
        side went past them (a consumer group that skipped them, a broker that forgot
        them), so they are sent again without waiting for ``resend_after_s``."""
        if self.confirmed_up_to <= 0:
            return []
        return [e for e in self.entries() if e.accepted_at < self.confirmed_up_to - by_s]

    def entries(self, older_than_s: float = 0.0) -> list[Entry]:
        """Entries accepted at least ``older_than_s`` ago, oldest first."""
        now = time.time()
        found = []
        for path in list(self._sizes):
            try:
                entry = Entry.decode(path.read_bytes())
            except FileNotFoundError:  # confirmed meanwhile (by another replica sharing the directory)
                with self._lock:
                    self._set(path, None)
                continue
            except (ValueError, KeyError) as exc:  # a torn file: nothing to send
                log.error("spooled write %s unreadable (%s); moved aside", path.name, exc)
                with self._lock, contextlib.suppress(OSError):
                    path.rename(path.with_suffix(".bad"))
                    self._set(path, None)
                continue
            if now - entry.accepted_at >= older_than_s:
                found.append(entry)
        return sorted(found, key=lambda e: e.accepted_at)
