"""The owner record of an embedded database, and the owner's token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragline.api.auth import Authenticator, JWTConfig, KeyStore
from ragline.errors import ConfigurationError, Unauthorized
from ragline.stores import ownership


def test_the_owner_token_is_accepted_from_loopback_only_and_lets_the_caller_pick_a_tenant(tmp_path: Path):
    auth = Authenticator(KeyStore(tmp_path / "keys.json"), JWTConfig())
    owner = auth.authenticate(f"Bearer {auth.owner_token}", None, "acme", loopback=True)
    assert (owner.tenant, owner.subject) == ("acme", "owner") and "ingest" in owner.scopes
    assert auth.authenticate(None, auth.owner_token, None, loopback=True).tenant == "default"
    with pytest.raises(Unauthorized):
        auth.authenticate(f"Bearer {auth.owner_token}", None, None, loopback=False)
    with pytest.raises(Unauthorized):
        auth.authenticate("Bearer rlo_guessed", None, None, loopback=True)
    with pytest.raises(Unauthorized):
        auth.authenticate(f"Bearer {auth.owner_token}", None, "../etc", loopback=True)
    assert Authenticator(KeyStore(tmp_path / "keys.json"), JWTConfig()).owner_token != auth.owner_token


def test_the_record_names_the_holder_and_what_it_announced_and_only_while_it_holds(tmp_path: Path):
    database = tmp_path / "m.db"
    assert ownership.owner_of(database) is None  # no record at all
    held = ownership.DatabaseOwnership(database)
    held.acquire()
    try:
        ownership.announce(url="http://127.0.0.1:1", token="rlo_x")
        record = json.loads((tmp_path / "m.db.owner").read_text())
        assert record["pid"] == os.getpid() and record["url"] == "http://127.0.0.1:1"
        assert (tmp_path / "m.db.owner").stat().st_mode & 0o777 == 0o600
        seen = subprocess.run(
            [
                sys.executable,
                "-c",
                "import json, sys; from pathlib import Path; from ragline.stores.ownership import owner_of; "
                "print(json.dumps(owner_of(Path(sys.argv[1]))))",
                str(database),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(seen.stdout)["url"] == "http://127.0.0.1:1", seen.stderr
        with pytest.raises(ConfigurationError, match=f"process {os.getpid()} .*serving http://127.0.0.1:1"):
            ownership.DatabaseOwnership(database).acquire()
    finally:
        held.release()
        ownership._announced.clear()
    assert ownership.owner_of(database) is None  # released: the stale record means nothing
