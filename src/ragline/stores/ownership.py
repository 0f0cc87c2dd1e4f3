"""One owner per embedded database: ragline's own lock on a Milvus Lite file.

Milvus Lite runs one server per database file. A second process opening the same file
waited ~28 s and failed, and its failed attempt removed the first one's lock file, after
which two processes could write the same file. So before Milvus Lite is started,
ragline takes an exclusive ``flock`` on ``<file>.owner`` (held for the life of the
store) and writes who holds it (pid, command line). A second process fails at once,
naming the owner. The lock is released by the kernel when the owner exits, so a crash
leaves no stale lock, and no process ever deletes a lock file it does not hold.

A server that owns a file also announces in the record where it listens and a token
for local callers (``announce``): the file is 0600, so only the user who could open
the database file anyway can read it. ``owner_of`` tells a CLI command whether a live
process holds a file and how to reach it, so the command goes through that server
instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigurationError

# What this process tells other processes about itself (url, token), and the locks it holds.
_announced: dict[str, Any] = {}
_held: list[DatabaseOwnership] = []


def announce(**fields: Any) -> None:
    """Add ``fields`` to the record of every database this process holds, now and later."""
    _announced.update(fields)
    for ownership in _held:
        ownership.write_record()


def owner_of(database: Path) -> dict[str, Any] | None:
    """The record of the live process that holds ``database`` (pid, command, and url and
    token when it is a server), or None when nobody holds it."""
    path = database.with_name(database.name + ".owner")
    try:
        file = open(path)  # noqa: SIM115 - closed below
    except OSError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                record = json.loads(file.read())
            except ValueError:
                record = None
            return record if isinstance(record, dict) else {}
        fcntl.flock(file, fcntl.LOCK_UN)
        return None


class DatabaseOwnership:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".owner")
        self._file: IO[str] | None = None
        self._since = 0.0

    def acquire(self) -> None:
        """Hold the lock, or raise ConfigurationError naming the process that does."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        file = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the store
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            owner = _describe(file.read())
            file.close()
            raise ConfigurationError(
                f"the database {self.path.with_suffix('')} is in use by {owner}; stop that process, or send "
                "your request to it over HTTP (a Milvus Lite file has one owner at a time)"
            ) from None
        os.chmod(self.path, 0o600)
        self._file = file
        self._since = time.time()
        self.write_record()
        _held.append(self)

    def write_record(self) -> None:
        if self._file is None:
            return
        record = {"pid": os.getpid(), "command": " ".join(sys.argv)[:300], "since": self._since, **_announced}
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(record))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            _held.remove(self)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _describe(text: str) -> str:
    try:
        return describe(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return "another process"


def describe(owner: dict[str, Any]) -> str:
    where = f", serving {owner['url']}" if owner.get("url") else ""
    return f"process {owner['pid']} ({owner['command']}{where})"
