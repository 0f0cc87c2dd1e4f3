"""One owner per embedded database: a CLI next to a running server fails at once, naming it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port, wait_until


def test_a_cli_command_next_to_a_running_server_fails_at_once_naming_the_owner(tmp_path: Path):
    port = free_port()
    env = {
        **os.environ,
        "RAGLINE_MILVUS_URI": str(tmp_path / "m.db"),
        "RAGLINE_EMBEDDER": "hashing",
        "RAGLINE_KEYS_FILE": str(tmp_path / "keys.json"),
        "RAGLINE_SPOOL_DIR": str(tmp_path / "pending"),
        "RAGLINE_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout_s=60, interval_s=0.2)
        started = time.monotonic()
        cli = subprocess.run(
            [sys.executable, "-m", "ragline.cli", "search", "bees"], env=env, capture_output=True, text=True, timeout=60
        )
        elapsed = time.monotonic() - started
        assert cli.returncode != 0 and f"in use by process {server.pid}" in " ".join(cli.stderr.split())
        assert elapsed < 10  # the CLI's own start-up included; it used to wait ~28 s for Milvus Lite
        owner = json.loads((tmp_path / "m.db.owner").read_text())
        assert owner["pid"] == server.pid  # the failed attempt left the owner's lock alone
        assert _ready(f"http://127.0.0.1:{port}/readyz")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    again = subprocess.run(
        [sys.executable, "-m", "ragline.cli", "stats"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr  # the owner is gone: the file is free again


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_closed_store_lets_another_process_open_the_file(tmp_path: Path):
    """Closing a Milvus Lite store stops its embedded server: before, the file stayed
    open until the process exited ("opened by another program" for the next one)."""
    from ragline import Settings
    from ragline.stores.milvus import MilvusStore

    database = tmp_path / "shared.db"
    store = MilvusStore.from_settings(Settings.load(milvus_uri=str(database)), 8)
    await store.count("t")
    await store.close()
    script = (
        "import asyncio, sys\n"
        "from ragline import Settings\n"
        "from ragline.stores.milvus import MilvusStore\n"
        "async def main():\n"
        "    s = MilvusStore.from_settings(Settings.load(milvus_uri=sys.argv[1]), 8)\n"
        "    print(await s.count('t'))\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    command = [sys.executable, "-c", script, str(database)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "0", done.stderr[-2000:]
