"""Ingestion against a real Milvus Lite: idempotent, incremental, tenant-safe, robust."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragline import NotFound
from ragline.core.models import Document

PARAGRAPH = "Honeybees dance to show their nest mates where the flowers are. " * 12


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "bees.md").write_text("# Bees\n\n" + PARAGRAPH)
    (root / "tea.txt").write_text("Green tea is steamed or pan-fired soon after picking. " * 15)
    (root / "volcano.html").write_text("<p>" + "Pinatubo cooled the planet in 1991. " * 15 + "</p>")
    return root


async def test_ingesting_the_same_directory_twice_keeps_the_count_and_embeds_nothing(engine, corpus):
    first = await engine.ingest_paths([corpus])
    count = await engine.store.count("default")
    embedded = engine.embedder.texts_embedded
    second = await engine.ingest_paths([corpus])
    assert first.chunks_written == count > 3
    assert await engine.store.count("default") == count
    assert engine.embedder.texts_embedded == embedded
    assert (second.chunks_written, second.chunks_unchanged, second.unchanged_documents) == (0, count, 3)


async def test_editing_one_file_rewrites_only_that_files_chunks(engine, corpus):
    await engine.ingest_paths([corpus])
    before = await engine.store.stored_chunks("default", ["tea.txt", "volcano.html"])
    (corpus / "tea.txt").write_text("Black tea is fully oxidised. " * 5)
    report = await engine.ingest_paths([corpus])
    after = await engine.store.stored_chunks("default", ["tea.txt", "volcano.html"])
    assert after["volcano.html"] == before["volcano.html"]
    assert report.unchanged_documents == 2 and report.chunks_written == 1
    assert report.chunks_deleted == len(before["tea.txt"]) - 1
    [hit] = (await engine.search("oxidised black tea", top_k=1)).hits
    assert hit.document_id == "tea.txt" and "Black tea" in hit.text


async def test_a_shrunken_document_loses_the_chunks_it_no_longer_has(engine):
    await engine.ingest_documents([Document(id="d", text=PARAGRAPH * 3)])
    assert await engine.store.count("default") > 1
    await engine.ingest_documents([Document(id="d", text="Now a single short chunk.")])
    assert await engine.store.count("default") == 1


async def test_deleting_a_document_removes_its_chunks(engine, corpus):
    await engine.ingest_paths([corpus])
    total = await engine.store.count("default")
    removed = await engine.delete_document("bees.md")
    assert removed > 0 and await engine.store.count("default") == total - removed
    assert all(h.document_id != "bees.md" for h in (await engine.search("honeybees dance", top_k=20)).hits)


async def test_deleting_an_unknown_document_is_not_found(engine):
    with pytest.raises(NotFound, match="no document 'nope'"):
        await engine.delete_document("nope")


async def test_tenant_a_never_sees_tenant_b_chunks(engine, corpus):
    await engine.ingest_paths([corpus], tenant="a")
    await engine.ingest_documents([Document(tenant="b", id="bees.md", text="Tenant B's secret about bees.")])
    hits_a = (await engine.search("secret bees", tenant="a", top_k=50)).hits
    hits_b = (await engine.search("honeybees dance flowers", tenant="b", top_k=50)).hits
    assert hits_a and all("secret" not in h.text for h in hits_a)
    assert [h.text for h in hits_b] == ["Tenant B's secret about bees."]


async def test_deleting_in_one_tenant_leaves_the_other_alone(engine):
    await engine.ingest_documents(
        [Document(tenant="a", id="d", text="alpha"), Document(tenant="b", id="d", text="beta")]
    )
    await engine.delete_document("d", tenant="a")
    assert (await engine.store.count("a"), await engine.store.count("b")) == (0, 1)


async def test_bad_files_are_reported_and_the_rest_of_the_batch_still_ingests(engine, corpus):
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(b"\x00\x01\x02binary" * 50)
    (corpus / "dangling.md").symlink_to(corpus / "nowhere.md")
    with (corpus / "huge.txt").open("wb") as f:
        f.truncate(50_000_000)
    report = await engine.ingest_paths([corpus, corpus / "missing.md"])
    assert report.documents == 3
    messages = "\n".join(report.errors)
    for expected in (
        "empty.txt: empty",
        "binary.txt: binary file",
        "dangling.md: unreadable",
        "huge.txt: too large: 50.0 MB",
        "missing.md: no such file",
    ):
        assert expected in messages
    assert len(report.errors) == 5


async def test_ingesting_the_same_document_twice_in_one_batch_keeps_one_copy(engine):
    docs = [Document(id="d", text="first version"), Document(id="d", text="second version")]
    await engine.ingest_documents(docs)
    [hit] = (await engine.search("version", top_k=5)).hits
    assert hit.text == "second version"


async def test_metadata_filters_reach_the_store(engine, corpus):
    await engine.ingest_paths([corpus])
    hits = (await engine.search("anything", top_k=20, filters={"type": "html"})).hits
    assert hits and {h.document_id for h in hits} == {"volcano.html"}


async def test_a_listing_shows_when_a_document_last_changed(engine):
    text = PARAGRAPH * 3
    await engine.ingest_documents([Document(id="d", text=text), Document(id="e", text="Salt from the sea.")])
    [first, other] = (await engine.list_documents(None))[0]
    assert first["updated_at"] and "updated_at" not in first["metadata"]
    again = await engine.ingest_documents([Document(id="d", text=text)])
    assert again.chunks_written == 0 and (await engine.list_documents(None))[0][0]["updated_at"] == first["updated_at"]
    changed = await engine.ingest_documents([Document(id="d", text=text + " A last sentence about wax.")])
    assert changed.chunks_written == 2  # the changed last chunk, and chunk 0, which carries the time
    [now, untouched] = (await engine.list_documents(None))[0]
    assert now["updated_at"] > first["updated_at"] and untouched["updated_at"] == other["updated_at"]
