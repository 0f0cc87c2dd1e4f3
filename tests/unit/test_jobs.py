"""Ingestion jobs: written a group at a time, with progress and per-document outcomes."""

from __future__ import annotations

import asyncio

from ragline.core.errors import DependencyUnavailable
from ragline.core.models import Document, IngestReport
from ragline.service.api.jobs import Jobs


async def until(condition, timeout_s: float = 10.0) -> None:
    """Wait for ``condition`` (the job's runner is another task), failing after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not reached within the deadline"
        await asyncio.sleep(0.01)


def documents(n: int) -> list[Document]:
    return [Document(tenant="t", id=f"d{i:03d}", text=f"document {i} " * 20) for i in range(n)]


async def test_a_job_is_written_a_group_at_a_time_and_shows_its_progress():
    groups: list[list[str]] = []
    release = asyncio.Event()

    async def write(group, progress):
        groups.append([d.id for d in group])
        progress("planned", len(group))
        progress("unchanged", 0)
        progress("embedded", len(group))
        if len(groups) == 2:
            await release.wait()  # hold the second group: the job is half done
        progress("written", len(group))
        return IngestReport(documents=len(group), chunks_written=len(group), chunks_embedded=len(group))

    jobs = Jobs(None)
    job = jobs.start("t", documents(150), [], write)
    await until(lambda: len(groups) == 2)
    halfway = job.view()
    assert halfway["status"] == "running" and len(groups[0]) == 64
    assert halfway["progress"]["documents_done"] == 64 and halfway["progress"]["chunks_written"] == 64
    assert [d["status"] for d in halfway["documents"]].count("searchable") == 64
    assert 140 <= halfway["progress"]["chunks_estimated"] <= 160 and halfway["progress"]["eta_s"] is not None
    release.set()
    await until(lambda: job.finished is not None)
    done = job.view()
    assert done["status"] == "searchable" and sum(map(len, groups)) == 150
    assert done["report"]["chunks_written"] == 150 and done["progress"]["eta_s"] == 0.0
    await jobs.close(grace_s=1)


async def test_a_failed_group_fails_its_documents_and_the_rest_and_keeps_the_earlier_ones():
    calls = 0

    async def write(group, progress):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise DependencyUnavailable("Milvus is down")
        progress("written", len(group))
        return IngestReport(documents=len(group), chunks_written=len(group))

    jobs = Jobs(None)
    job = jobs.start("t", documents(150), [], write)
    await until(lambda: job.finished is not None)
    view = job.view()
    statuses = [d["status"] for d in view["documents"]]
    assert view["status"] == "failed" and "Milvus is down" in view["error"]
    assert statuses[:64] == ["searchable"] * 64 and set(statuses[64:]) == {"failed"}
    await jobs.close(grace_s=1)
