"""`ragline watch`: a folder's creations, edits, renames and deletions reach the index."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ragline.seam.local import LocalService
from ragline.service.watching import ServiceSink, Watcher
from tests.conftest import free_port, serve_env, wait_until

pytestmark = pytest.mark.integration


async def _until(condition, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not (result := await condition()):
        assert time.monotonic() < deadline, "not in step within the deadline"
        await asyncio.sleep(0.02)
    return result


async def test_the_watcher_keeps_the_index_in_step_with_the_folder(engine, tmp_path: Path):
    folder = tmp_path / "notes"
    (folder / "old").mkdir(parents=True)
    (folder / "kept.md").write_text("Kept since before the watcher started.")
    (folder / "old" / "gone.md").write_text("Indexed, then deleted while nobody watched.")
    await engine.ingest_paths([folder])
    (folder / "old" / "gone.md").unlink()
    seen: list[tuple[str, str, float | None]] = []
    watcher = Watcher(
        ServiceSink(LocalService(engine), "default"), [folder], "default", 10**7, report=lambda *e: seen.append(e)
    )
    assert await watcher.sync() == (1, 1)  # kept.md in step (unchanged), old/gone.md removed

    async def ids() -> set[str]:
        return {d["id"] for d in (await engine.list_documents(None, "", "", 100))[0]}

    assert await ids() == {"kept.md"}
    ready = asyncio.Event()
    task = asyncio.create_task(watcher.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        (folder / "new.md").write_text("A note about tea grown in Assam.")
        await _until(lambda: _has(engine, "new.md", "Assam"))
        (folder / "new.md").write_text("A note about tea grown in Darjeeling.")
        await _until(lambda: _has(engine, "new.md", "Darjeeling"))
        (folder / "new.md").rename(folder / "renamed.md")
        await _until(lambda: _ids_are(engine, {"kept.md", "renamed.md"}))
        (folder / "sub").mkdir()
        (folder / "sub" / "deep.txt").write_text("Deep in a subfolder.")
        (folder / ".draft.md.swp").write_text("an editor's swap file")
        await _until(lambda: _ids_are(engine, {"kept.md", "renamed.md", "sub/deep.txt"}))
        (folder / "sub" / "deep.txt").unlink()
        (folder / "sub").rmdir()
        (folder / "kept.md").unlink()
        await _until(lambda: _ids_are(engine, {"renamed.md"}))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    updates = [seconds for what, _, seconds in seen if what == "updated"]
    assert updates and all(s is not None and s >= 0 for s in updates)
    assert engine.metrics.freshness._sum.get() > 0  # change -> searchable, into the freshness metric


@pytest.mark.parametrize("case", ["new link to a file", "new link to a folder", "file replaced by a link"])
async def test_links_out_of_the_watched_folder_made_while_it_watches_are_skipped(engine, tmp_path: Path, case):
    folder, outside = tmp_path / "notes", tmp_path / "outside"
    folder.mkdir()
    (outside / "deep").mkdir(parents=True)
    (outside / "secret.md").write_text("The vault code is 7311.")
    (outside / "deep" / "more.md").write_text("The second vault code is 9920.")
    (folder / "plain.md").write_text("An ordinary note about tea.")
    seen: list[tuple[str, str, float | None]] = []
    watcher = Watcher(
        ServiceSink(LocalService(engine), "default"), [folder], "default", 10**7, report=lambda *e: seen.append(e)
    )
    await watcher.sync()
    ready = asyncio.Event()
    task = asyncio.create_task(watcher.run(ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 30)
        if case == "new link to a file":
            (folder / "link.md").symlink_to(outside / "secret.md")
        elif case == "new link to a folder":
            (folder / "linked").symlink_to(outside / "deep")
        else:
            (folder / "plain.md").unlink()
            (folder / "plain.md").symlink_to(outside / "secret.md")
        await _until(lambda: _said(seen, "symbolic link out of the watched folder"))
        (folder / "after.md").write_text("Written after the link, so the link's event came first.")
        await _until(lambda: _has(engine, "after.md", "after"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    texts = [c.text for d in ("link.md", "linked/more.md", "plain.md") for c in await _chunks(engine, d)]
    assert not [t for t in texts if "vault" in t]


async def _said(seen, words: str) -> bool:
    return any(words in str(name) for _, name, _ in seen)


async def _chunks(engine, document_id: str):
    return await engine.store.document_chunks("default", document_id)


async def _has(engine, document_id: str, word: str) -> bool:
    chunks = await engine.store.document_chunks("default", document_id)
    return bool(chunks) and word in chunks[0].text


async def _ids_are(engine, wanted: set[str]) -> bool:
    return {d["id"] for d in (await engine.list_documents(None, "", "", 100))[0]} == wanted


def test_ragline_watch_goes_through_the_server_that_owns_the_database(tmp_path: Path):
    port = free_port()
    env = serve_env(tmp_path, port)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "first.md").write_text("There from the start.")
    server = subprocess.Popen(
        [sys.executable, "-m", "ragline.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    watcher = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{url}/readyz") == 200, timeout_s=60, interval_s=0.2)
        key = (tmp_path / "first-admin-key").read_text().strip()
        watcher = subprocess.Popen(
            [sys.executable, "-m", "ragline.cli", "watch", str(folder)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stderr is not None
        for line in watcher.stderr:  # "watching ...": synchronised, and the watcher armed
            if line.startswith("watching"):
                break
        headers = {"Authorization": f"Bearer {key}"}
        wait_until(lambda: _get(f"{url}/v1/documents/first.md", headers) == 200, timeout_s=10)
        (folder / "second.md").write_text("Written while watched.")
        wait_until(lambda: _get(f"{url}/v1/documents/second.md", headers) == 200, timeout_s=10)
        (folder / "first.md").unlink()
        wait_until(lambda: _get(f"{url}/v1/documents/first.md", headers) == 404, timeout_s=10)
        listed = httpx.get(f"{url}/v1/documents", headers=headers).json()
        assert [d["id"] for d in listed["documents"]] == ["second.md"], json.dumps(listed)
    finally:
        if watcher is not None:
            watcher.send_signal(signal.SIGINT)
            watcher.wait(timeout=30)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        return httpx.get(url, headers=headers, timeout=2).status_code
    except httpx.HTTPError:
        return 0
