"""One owner per embedded database: ragline's own lock on a Milvus Lite file.

Milvus Lite runs one server per database file. A second process opening the same file
waited ~28 s and failed, and its failed attempt removed the first one's lock file, after
which two processes could write the same file. So before Milvus Lite is started,
ragline takes an exclusive ``flock`` on ``<file>.owner`` (held for the life of the
store) and writes who holds it (pid, command line). A second process fails at once,
naming the owner. The lock is released by the kernel when the owner exits, so a crash
leaves no stale lock, and no process ever deletes a lock file it does not hold.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import IO

from ..errors import ConfigurationError


class DatabaseOwnership:
    def __init__(self, database: Path) -> None:
        self.path = database.with_name(database.name + ".owner")
        self._file: IO[str] | None = None

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
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300], "since": time.time()}))
        file.flush()
        self._file = file

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _describe(text: str) -> str:
    try:
        owner = json.loads(text)
        return f"process {owner['pid']} ({owner['command']})"
    except (ValueError, KeyError, TypeError):
        return "another process"
