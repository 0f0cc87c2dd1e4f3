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
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress: list[str] = []
    first_group = threading.Event()

    def read_progress() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            progress.append(line)
            if line.startswith("ingest: "):  # a group is written (a line per group without a terminal)
                first_group.set()

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    assert first_group.wait(timeout=120), "".join(progress)[-2000:]
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
