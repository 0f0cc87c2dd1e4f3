"""One owner per embedded database: ragline's own lock on a Milvus Lite file.

Milvus Lite runs one server per database file. A second process opening the same file
waited ~28 s and failed, and its failed attempt removed the first one's lock file, after
which two processes could write the same file. So before Milvus Lite is started,
ragline takes an exclusive ``flock`` on ``<file>.owner`` (held for the life of the
store) and writes who holds it (pid, command line). A second process fails at once,
naming the owner. The lock is released by the kernel when the owner exits, so a crash
leaves no stale lock, and no process ever deletes a lock file it does not hold.

A server that owns a file also announces in the record where it listens and a token
for local callers (``announce``). The record is created 0600 in one step (``O_CREAT``
with the mode, never chmod-ed after the fact: no moment where another user can open
it), the data directory 0700; a record owned by another user is never written to.
``owner_of`` tells a CLI command whether a live process holds a file and how to reach
it, so the command goes through that server instead of failing; ``trusted`` says
whether a record may be believed: owned by this user, mode 0600, in a directory others
cannot write to, naming a loopback URL. An untrusted record is reported, not followed.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from ragline.core.errors import ConfigurationError

# What this process tells other processes about itself (url, token), and the locks it holds.
_announced: dict[str, Any] = {}
_held: list[DatabaseOwnership] = []


def announce(**fields: Any) -> None:
    """Add ``fields`` to the record of every database this process holds, now and later."""
    _announced.update(fields)
    for ownership in _held:
        ownership.write_record()


def trusted(database: Path) -> str | None:
    """Why the owner record of ``database`` must not be believed, or None when it may be:
    owned by this user, mode 0600, in a directory only its owner (or root) can write to."""
    path = database.with_name(database.name + ".owner")
    try:
        record, folder = path.lstat(), path.parent.stat()
    except OSError as exc:
        return f"its owner record cannot be read ({exc.strerror})"
    if not stat.S_ISREG(record.st_mode):
        return f"{path} is not a regular file"
    if record.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {record.st_uid})"
    if record.st_mode & 0o077:
        return f"{path} is readable or writable by others (mode {stat.S_IMODE(record.st_mode):o}, not 600)"
    if folder.st_mode & 0o022 and folder.st_uid not in (os.getuid(), 0):
        return f"{path.parent} can be written by other users"
    if folder.st_mode & 0o022 and not folder.st_mode & stat.S_ISVTX:
        return f"{path.parent} can be written by other users (mode {stat.S_IMODE(folder.st_mode):o})"
    return None


def loopback(url: str) -> bool:
    """Whether ``url`` names this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        # Created 0600 in one step: no window in which another user could open it.
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        file = open(descriptor, "a+")  # noqa: SIM115 - held open for the life of the store
        if os.fstat(descriptor).st_uid != os.getuid():
            file.close()
            raise ConfigurationError(
                f"{self.path} belongs to another user: ragline will not write its token into it; remove it "
                "or choose another database path (RAGLINE_MILVUS_URI)"
            )
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
        os.fchmod(descriptor, 0o600)  # a record left by an older version with another mode
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
