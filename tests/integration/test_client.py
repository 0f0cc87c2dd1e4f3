"""ragline.client against a live `ragline serve` (authentication on, an API key)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ragline import Answer
from ragline.client import AsyncClient, Client
from ragline.core.errors import DependencyUnavailable, InvalidInput, NotFound, Unauthorized
from tests.conftest import free_port, serve_env, wait_until


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(url, admin API key) of a server on Milvus Lite with the hashing embedder."""
    tmp = tmp_path_factory.mktemp("client")
    port = free_port()
    env = serve_env(tmp, port, RAGLINE_RATE_LIMIT_RPS="0")
    process = subprocess.Popen(
        [sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), timeout_s=60, interval_s=0.2)
        yield url, (tmp / "first-admin-key").read_text().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_documents_search_and_answers(server, tmp_path: Path):
    url, key = server
    with Client(url, key) as rag:
        written = rag.add(
            [
                {"id": "c/bees.md", "text": "Honeybees dance to tell the distance to flowers.", "metadata": {"k": 1}},
                {"id": "c/tea.md", "text": "Assam tea grows in the Brahmaputra valley."},
                {
                    "id": "c/salt.md",
                    "text": "Sea salt is made by evaporating seawater in shallow ponds.",
                    "metadata": {"topic": "kitchen"},
                },
            ],
            wait=True,
        )
        assert written.status == "searchable" and written.report is not None and written.report.documents == 3

        first = rag.list_documents(prefix="c/", limit=2)
        assert [d.id for d in first.documents] == ["c/bees.md", "c/salt.md"] and first.next is not None
        assert [d.id for d in rag.list_documents(prefix="c/", after=first.next, limit=2).documents] == ["c/tea.md"]
        assert [d.id for d in rag.documents(prefix="c/", page_size=1)] == ["c/bees.md", "c/salt.md", "c/tea.md"]
        assert [d.id for d in rag.documents(where={"topic": "kitchen"})] == ["c/salt.md"]
        assert [d.id for d in rag.documents(where={"k": "1"})] == []  # metadata values compare by type
        assert [d.id for d in rag.list_documents(where={"k": "x"}).documents] == []

        doc = rag.get("c/bees.md")
        assert doc.metadata["k"] == 1 and "dance" in doc.chunks[0].text
        assert rag.search("honeybees dance distance flowers").hits[0].document_id == "c/bees.md"
        answer = rag.ask("How do honeybees tell the distance to flowers?")
        assert isinstance(answer, Answer) and "c/bees.md" in {c.document_id for c in answer.citations}
        pieces = list(rag.stream("How do honeybees tell the distance to flowers?"))
        assert isinstance(pieces[-1], Answer) and all(isinstance(p, str) for p in pieces[:-1])
        assert "".join(pieces[:-1]).strip() == pieces[-1].text.strip()
        assert rag.stats()["chunks"] >= 3

        (tmp_path / "notes.txt").write_text("The lighthouse keeper logs the weather every four hours.")
        [uploaded] = rag.upload([tmp_path / "notes.txt"], wait=True)
        assert uploaded.ids == ["notes.txt"] and rag.get("notes.txt").chunks

        queued = rag.add([{"id": "c/later.md", "text": "Granite is an igneous rock."}])
        assert queued.status == "accepted" and queued.job_id
        job = wait_until(lambda: _finished(rag.ingestion(queued.job_id)), timeout_s=30)
        assert job.status == "searchable" and job.documents[0].status == "searchable"
        assert job.progress is not None and (job.progress.chunks_written, job.progress.eta_s) == (1, 0.0)

        assert rag.delete("c/tea.md").deleted_chunks == 1
        with pytest.raises(NotFound) as missing:
            rag.get("c/tea.md")
        assert missing.value.status == 404 and "c/tea.md" in str(missing.value)  # type: ignore[attr-defined]
        with pytest.raises(InvalidInput) as invalid:
            rag.search("x", top_k=0)
        assert invalid.value.status == 422 and "top_k" in str(invalid.value)  # type: ignore[attr-defined]


def _serve(env: dict[str, str], url: str) -> subprocess.Popen:
    """`ragline serve` in a child process, once it is ready (it can be killed and started again)."""
    process = subprocess.Popen([sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL)
    wait_until(lambda: _ready(url), timeout_s=60, interval_s=0.2)
    return process


def _finished(job):
    return job if job.status not in ("queued", "running") else None


def test_errors_are_typed(server):
    url, _ = server
    with Client(url, "rl_nope_nope") as rag, pytest.raises(Unauthorized):
        rag.search("anything")
    with Client(f"http://127.0.0.1:{free_port()}", timeout=2) as rag, pytest.raises(DependencyUnavailable):
        rag.search("anything")


async def test_the_async_client(server):
    url, key = server
    async with AsyncClient(url, key) as rag:
        await rag.add([{"id": "a/granite.md", "text": "Granite is an igneous rock rich in quartz."}], wait=True)
        assert [d.id async for d in rag.documents(prefix="a/")] == ["a/granite.md"]
        assert (await rag.search("granite quartz rock")).hits[0].document_id == "a/granite.md"
        pieces = [p async for p in rag.stream("What is granite rich in?")]
        assert isinstance(pieces[-1], Answer) and "a/granite.md" in {c.document_id for c in pieces[-1].citations}
        assert (await rag.delete("a/granite.md")).deleted_chunks == 1
        with pytest.raises(NotFound):
            await rag.get("a/granite.md")


def test_the_sample_corpus_is_never_written_into_an_api_keys_own_tenant(server):
    url, key = server
    with Client(url, key) as rag:
        before = rag.stats()["chunks"]
        cli = subprocess.run(
            [sys.executable, "-m", "ragline.cli", "ingest", "--sample", "--url", url, "--api-key", key],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        assert cli.returncode == 2 and "would go into the tenant 'default'" in " ".join(cli.stderr.split())
        assert rag.stats()["chunks"] == before


REAL = Path(__file__).resolve().parents[1] / "data" / "real"


def test_ingesting_through_a_server_follows_its_jobs_keeps_pages_and_writes_nothing_twice(server, tmp_path: Path):
    from ragline.seam.remote_ingest import RemoteIngest

    url, key = server
    folder = tmp_path / "real"
    folder.mkdir()
    for name in ("libreoffice-7-report.pdf", "powerpoint-mac-2011-tables.pptx", "libreoffice-7-regions.xlsx"):
        (folder / name).write_bytes((REAL / name).read_bytes())
    events: list[tuple[str, int]] = []
    with Client(url, key) as rag:
        first = RemoteIngest(rag, 20_000_000, progress=lambda kind, n: events.append((kind, n))).run(
            [folder], id_prefix="real/"
        )
        assert first.documents == 3 and first.chunks_written > 0 and not first.errors
        assert sum(n for kind, n in events if kind == "written") == first.chunks_written  # the bar matches the report
        report = rag.get("real/libreoffice-7-report.pdf")
        assert {c.metadata.get("page") for c in report.chunks} >= {1, 3, 5}  # pages, as an HTTP upload has them
        hit = rag.search("detector 3B did not sound within the required ten seconds", top_k=1).hits[0]
        assert hit.document_id == "real/libreoffice-7-report.pdf" and hit.metadata["page"] == 3
        again = RemoteIngest(rag, 20_000_000).run([folder], id_prefix="real/")
        assert again.chunks_written == 0 and again.chunks_unchanged == first.chunks_written


def test_a_server_that_stops_mid_ingest_is_a_clear_message_and_a_rerun_finishes(tmp_path: Path):
    from ragline.seam.remote_ingest import RemoteIngest, ServerStopped

    port = free_port()
    env = serve_env(tmp_path, port, RAGLINE_RATE_LIMIT_RPS="0")
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(40):  # two batches: the server is killed while it writes the first
        (folder / f"note-{n:02d}.txt").write_text(f"Note {n}: " + "the tide tables of the northern harbour. " * 400)
    url = f"http://127.0.0.1:{port}"
    start = functools.partial(_serve, env, url)
    process = start()
    key = (tmp_path / "first-admin-key").read_text().strip()
    with Client(url, key) as rag:
        remote = RemoteIngest(rag, 20_000_000, patience_s=2.0)
        remote.progress = lambda kind, n: process.kill() if kind == "written" else None
        with pytest.raises(ServerStopped) as stopped:
            remote.run([folder])
        process.wait(timeout=10)
        message = str(stopped.value)
        assert "job " in message and "Run the same command again" in message
        process = start()
        try:
            finished = RemoteIngest(rag, 20_000_000).run([folder])
            assert finished.documents == 40 and not finished.errors
            assert len(rag.list_documents(limit=100).documents) == 40
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_documents_accepted_with_202_are_written_after_a_kill_9(tmp_path: Path):
    port = free_port()
    env = serve_env(tmp_path, port, RAGLINE_RATE_LIMIT_RPS="0")
    url = f"http://127.0.0.1:{port}"
    start = functools.partial(_serve, env, url)
    process = start()
    key = (tmp_path / "first-admin-key").read_text().strip()
    docs = [{"id": f"n{n}", "text": f"Note {n}: " + "the harbour's tide tables. " * 300} for n in range(60)]
    with Client(url, key) as rag:
        accepted = rag.add(docs)
        process.send_signal(signal.SIGKILL)  # at once: the job has barely started, if at all
        process.wait(timeout=10)
        assert accepted.status == "accepted"
        process = start()
        try:
            job = wait_until(lambda: _finished(rag.ingestion(accepted.job_id)), timeout_s=60)
            assert job.status == "searchable"
            assert len(rag.list_documents(limit=100).documents) == 60
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
