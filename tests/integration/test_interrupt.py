"""Ctrl-C and SIGTERM during a 300-file `ragline ingest`: it stops within 2 s, keeps what
it wrote, and a re-run finishes the rest with nothing written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_ingest_stops_at_once_and_a_rerun_finishes_it(tmp_path: Path, sig: signal.Signals):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(300):
        (corpus / f"note-{n:03d}.md").write_text(f"# Note {n}\n\nField note number {n}: the hive was calm today.")
    env = {
        **os.environ,
        "RAGLINE_MILVUS_URI": str(tmp_path / "m.db"),
        "HF_HUB_OFFLINE": "1",
        "RAGLINE_EMBED_THREADS": "1",
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus)]
    process, progress, reader = _ingest_until_a_group_is_written(command, env)
    sent = time.monotonic()
    process.send_signal(sig)
    process.wait(timeout=30)
    stopped_s = time.monotonic() - sent
    reader.join(timeout=5)
    assert process.returncode == (143 if sig == signal.SIGTERM else 130), "".join(progress)[-2000:]
    assert stopped_s < 2.0, stopped_s
    said = " ".join("".join(progress).split())
    kept = int(said.split("interrupted (")[1].split("): ")[1].split(" documents")[0])
    assert 0 < kept < 300, said

    rerun = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(rerun.stdout)
    assert report["documents"] == 300 and report["unchanged_documents"] == kept, rerun.stderr[-1000:]
    listed = subprocess.run(
        [sys.executable, "-m", "ragline.cli", "ls", "--json", "--limit", "1000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    documents = json.loads(listed.stdout)
    assert len(documents) == 300 and all(d["chunks"] == 1 for d in documents)  # nothing twice


def test_an_ingest_through_a_server_interrupted_says_what_the_server_goes_on_with(tmp_path: Path):
    """The same command through the server that owns the database (the seam's RemoteService):
    Ctrl-C leaves within 2 s, saying what was written and which jobs the server finishes;
    nothing is cancelled, and a re-run writes nothing twice."""

    from tests.conftest import free_port, serve_env, wait_until

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(200):
        (corpus / f"note-{n:03d}.md").write_text(f"# Note {n}\n\n" + f"Field note {n}: the hive was calm. " * 300)
    port = free_port()
    env = {**serve_env(tmp_path, port, RAGLINE_RATE_LIMIT_RPS="0"), "COLUMNS": "200"}
    server = subprocess.Popen(
        [sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _status(f"{url}/readyz") == 200, timeout_s=60, interval_s=0.2)
        wait_until(lambda: (tmp_path / "m.db.owner").exists() and "url" in (tmp_path / "m.db.owner").read_text())
        command = [sys.executable, "-m", "ragline.cli", "ingest", str(corpus)]
        process, progress, reader = _ingest_until_a_group_is_written(command, env)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        stopped_s = time.monotonic() - sent
        reader.join(timeout=5)
        said = " ".join("".join(progress).split())
        assert process.returncode == 130 and stopped_s < 2.0, (stopped_s, said[-2000:])
        assert "interrupted (SIGINT): " in said and "through the server that owns" in said, said[-2000:]
        assert "the server goes on with its jobs, not cancelled" in said or "run the same command again" in said

        rerun = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
        assert json.loads(rerun.stdout)["documents"] == 200, rerun.stderr[-1000:]
        listed = json.loads(
            subprocess.run(
                [sys.executable, "-m", "ragline.cli", "ls", "--json", "--limit", "1000"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout
        )
        assert len(listed) == 200
        counts = {d["id"]: d["chunks"] for d in listed}
        assert len(set(counts.values())) == 1  # every note the same size: none written twice
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _ingest_until_a_group_is_written(
    command: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """`ragline ingest` started, once its first group is written (a progress line per group
    without a terminal); its stderr lines keep arriving in the list the thread fills."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress: list[str] = []
    first_group = threading.Event()

    def read_progress() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            progress.append(line)
            if line.startswith("ingest: "):
                first_group.set()

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    assert first_group.wait(timeout=120), "".join(progress)[-2000:]
    return process, progress, reader


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code
    except httpx.HTTPError:
        return 0
