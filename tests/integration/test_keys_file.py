"""The API keys file under concurrent `ragline keys` commands, and when it is corrupt."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ragline.core.errors import ConfigurationError, DependencyUnavailable
from ragline.service.api.auth import KeyStore

_WORKER = """
import sys
from pathlib import Path
from ragline.service.api.auth import KeyStore
store = KeyStore(Path(sys.argv[1]))
made = [store.create("t%s" % sys.argv[2], ["query"])[1].id for _ in range(3)]
if int(sys.argv[2]) % 2:
    store.revoke(made[0])
print(" ".join(made))
"""


def test_twenty_processes_creating_and_revoking_keys_leave_exactly_their_changes(tmp_path: Path):
    path = tmp_path / "keys.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        for n in range(20)
    ]
    made = {n: p.communicate(timeout=120)[0].split() for n, p in enumerate(procs)}
    assert all(p.returncode == 0 for p in procs)
    records = {r["id"]: r for r in json.loads(path.read_text())["keys"]}  # valid JSON
    assert set(records) == {key for ids in made.values() for key in ids}
    revoked = {ids[0] for n, ids in made.items() if n % 2}
    assert {k for k, r in records.items() if r["revoked"]} == revoked
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_a_corrupt_keys_file_is_a_configuration_error_at_start_and_unavailable_at_run_time(tmp_path: Path):
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    key, _ = store.create("a", ["query"])
    path.write_text('{"keys": [{"id": ')
    with pytest.raises(ConfigurationError, match="corrupt"):
        KeyStore(path).check()
    with pytest.raises(DependencyUnavailable, match="corrupt"):
        store.verify(key)
