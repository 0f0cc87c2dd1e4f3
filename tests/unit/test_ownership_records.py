"""The owner record of an embedded database, and the owner's token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ragline.adapters.stores import ownership
from ragline.core.errors import ConfigurationError, Unauthorized
from ragline.service.api.auth import Authenticator, JWTConfig, KeyStore


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
                "import json, sys; from pathlib import Path; from ragline.adapters.stores.ownership import owner_of; "
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


def test_the_owner_record_is_created_private_even_with_an_open_umask(tmp_path):
    from ragline.adapters.stores.ownership import DatabaseOwnership, trusted

    previous = os.umask(0)
    try:
        owned = DatabaseOwnership(tmp_path / "data" / "m.db")
        owned.acquire()
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(owned.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(owned.path.parent.stat().st_mode) == 0o700
        assert trusted(tmp_path / "data" / "m.db") is None
    finally:
        owned.release()


def test_a_record_others_can_read_or_plant_is_not_trusted(tmp_path):
    from ragline.adapters.stores.ownership import trusted

    database = tmp_path / "m.db"
    record = tmp_path / "m.db.owner"
    record.write_text('{"pid": 1, "command": "x", "url": "http://127.0.0.1:1", "token": "t"}')
    record.chmod(0o644)
    assert "mode 644" in trusted(database)
    record.chmod(0o600)
    tmp_path.chmod(0o777)
    assert "can be written by other users" in trusted(database)
    tmp_path.chmod(0o700)
    os.chown(record, 4321, os.getgid())
    assert "belongs to another user" in trusted(database)


def test_a_record_owned_by_another_user_is_never_written_to(tmp_path):
    from ragline.adapters.stores.ownership import DatabaseOwnership
    from ragline.core.errors import ConfigurationError

    record = tmp_path / "m.db.owner"
    record.write_text("")
    os.chown(record, 4321, os.getgid())
    with pytest.raises(ConfigurationError, match="belongs to another user"):
        DatabaseOwnership(tmp_path / "m.db").acquire()
    assert record.read_text() == ""


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.9.9.9:1", True),
        ("http://[::1]:8080", True),
        ("http://localhost:8080", True),
        ("http://10.0.0.5:8080", False),
        ("http://attacker.example:80", False),
        ("http://127.0.0.1.nip.io:80", False),
    ],
)
def test_only_loopback_owner_urls_are_followed(url, local):
    from ragline.adapters.stores.ownership import loopback

    assert loopback(url) is local
