"""One owner per embedded database: a CLI next to a running server fails at once, naming it."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, serve_env, wait_until


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    return serve_env(tmp_path, port)


def _cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragline.cli", *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_every_cli_command_works_through_the_server_that_owns_the_database(tmp_path: Path):
    """While `ragline serve` owns the Milvus Lite file, the README's commands go to it over
    HTTP (found through its owner record, authenticated by the owner's token); a second
    server fails at once naming the first; the owner's lock is intact afterwards. The
    same folder ingested from two working directories stays one set of documents."""
    port = free_port()
    env = _env(tmp_path, port)
    docs = tmp_path / "kb"
    (docs / "guide").mkdir(parents=True)
    (docs / "bees.md").write_text("# Bees\n\nHoneybees dance to tell the distance to flowers.")
    (docs / "guide" / "tea.txt").write_text("Assam tea grows in the Brahmaputra valley.")
    server = subprocess.Popen(
        [sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout_s=60, interval_s=0.2)
        owner = wait_until(lambda: _owner_with_url(tmp_path / "m.db.owner"), timeout_s=10)
        assert owner["pid"] == server.pid and owner["url"] == f"http://127.0.0.1:{port}"

        first = json.loads(_cli(env, "ingest", str(docs), "--json").stdout)
        assert (first["documents"], first["chunks_written"]) == (2, 2)
        again = _cli(env, "ingest", ".", "--json", cwd=docs)  # another working directory, the same folder
        assert json.loads(again.stdout)["unchanged_documents"] == 2, again.stderr
        listed = json.loads(_cli(env, "ls", "--json").stdout)
        assert [d["id"] for d in listed] == ["bees.md", "guide/tea.txt"]
        assert [d["id"] for d in json.loads(_cli(env, "ls", "guide/", "--json").stdout)] == ["guide/tea.txt"]

        found = _cli(env, "search", "honeybees dance", "--json")
        assert found.returncode == 0 and json.loads(found.stdout)["hits"][0]["document_id"] == "bees.md"
        answer = _cli(env, "ask", "How do honeybees tell the distance to flowers?", "--json")
        assert answer.returncode == 0, answer.stderr
        assert "bees.md" in {c["document_id"] for c in json.loads(answer.stdout)["citations"]}
        stats = json.loads(_cli(env, "stats", "--json").stdout)
        assert stats["chunks"] == 2 and stats["server"] == owner["url"]

        assert "deleted guide/tea.txt: 1 chunks" in _cli(env, "delete", "guide/tea.txt").stdout
        gone = _cli(env, "delete", "guide/tea.txt")
        assert gone.returncode == 1 and "no document" in gone.stderr

        sample = _cli(env, "ingest", "--sample", "--json")
        assert json.loads(sample.stdout)["documents"] == 6, sample.stderr
        assert [d["id"] for d in json.loads(_cli(env, "ls", "--json").stdout)] == ["bees.md"]  # not mixed in
        assert len(json.loads(_cli(env, "ls", "--tenant", "sample", "--json").stdout)) == 6

        started = time.monotonic()
        second = _cli(env, "serve", "--port", str(free_port()))
        assert time.monotonic() - started < 10  # the interpreter's start included; it used to wait ~28 s
        assert second.returncode == 2 and f"in use by process {server.pid}" in " ".join(second.stderr.split())

        assert json.loads((tmp_path / "m.db.owner").read_text()) == owner  # nobody touched the owner's lock
        assert _ready(f"http://127.0.0.1:{port}/readyz")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    alone = _cli(env, "stats", "--json")
    assert alone.returncode == 0 and "server" not in json.loads(alone.stdout), alone.stderr  # the file is free


def test_a_cli_command_next_to_a_process_that_is_not_a_server_fails_at_once_naming_it(tmp_path: Path):
    """The owner is a CLI run (no URL to send the command to): fail at once, naming it."""
    env = _env(tmp_path, free_port())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from ragline.adapters.stores.ownership import DatabaseOwnership\n"
            "DatabaseOwnership(Path(sys.argv[1])).acquire()\n"
            "print('held', flush=True)\n"
            "time.sleep(120)\n",
            str(tmp_path / "m.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        cli = _cli(env, "search", "bees")
        assert time.monotonic() - started < 10  # the interpreter's start included
        assert cli.returncode == 2 and f"in use by process {holder.pid}" in " ".join(cli.stderr.split())
        assert json.loads((tmp_path / "m.db.owner").read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def _owner_with_url(path: Path) -> dict | None:
    record = json.loads(path.read_text())
    return record if record.get("url") else None


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_closed_store_lets_another_process_open_the_file(tmp_path: Path):
    """Closing a Milvus Lite store stops its embedded server: before, the file stayed
    open until the process exited ("opened by another program" for the next one)."""
    from ragline import Settings
    from ragline.adapters.stores.milvus import MilvusStore

    database = tmp_path / "shared.db"
    store = MilvusStore.of(Settings.load(milvus_uri=str(database)).store, 8)
    await store.count("t")
    await store.close()
    script = (
        "import asyncio, sys\n"
        "from ragline import Settings\n"
        "from ragline.adapters.stores.milvus import MilvusStore\n"
        "async def main():\n"
        "    s = MilvusStore.of(Settings.load(milvus_uri=sys.argv[1]).store, 8)\n"
        "    print(await s.count('t'))\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    command = [sys.executable, "-c", script, str(database)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]


def test_a_planted_owner_record_is_reported_and_nothing_is_sent_to_it(tmp_path: Path):
    """Another user's record (not 0600, theirs), its lock held, naming a local URL: the
    CLI refuses, and neither the files nor the user's API key reach that URL."""
    import os
    import socket

    port = free_port()
    env = {**_env(tmp_path, port), "RAGLINE_API_KEY": "rl_users_own_secret"}
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.5)
    record = tmp_path / "m.db.owner"
    record.write_text(json.dumps({"pid": 1, "command": "x", "url": f"http://127.0.0.1:{port}", "token": "t"}))
    record.chmod(0o644)
    os.chown(record, 4321, os.getgid())
    hold = f"import fcntl, sys; f = open({str(record)!r}); fcntl.flock(f, fcntl.LOCK_EX); sys.stdin.read()"
    holder = subprocess.Popen([sys.executable, "-c", hold], stdin=subprocess.PIPE)  # holds it until killed
    try:
        from ragline.adapters.stores import ownership

        wait_until(lambda: ownership.owner_of(tmp_path / "m.db") is not None, timeout_s=10)
        (tmp_path / "secret.md").write_text("Private notes that must stay here.")
        refused = _cli(env, "ingest", str(tmp_path / "secret.md"))
        assert refused.returncode == 2 and "belongs to another user" in " ".join(refused.stderr.split())
        try:
            connection, _ = listener.accept()
            connection.close()
            raise AssertionError("the CLI connected to the URL of a planted owner record")
        except TimeoutError:
            pass
    finally:
        holder.kill()
        listener.close()
