"""The seam's contract (ragline.seam), run on its three implementations: the embedded
engine (LocalService), the gateway over a bus with the stage workers behind it
(BusService, memory bus) and a running server over HTTP (RemoteService). Each on Milvus
Lite with the hashing embedder and extractive answers. A new implementation is done when
this suite passes on it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.errors import InvalidInput, NotFound, NotImplementedInShape
from ragline.core.models import Answer, Document, Query
from ragline.seam import Receipt, Service, catalogue_of, files_of
from ragline.seam.remote import RemoteService
from ragline.settings import Settings
from tests.conftest import LiveServer, free_port

BEES = (
    "Honeybees perform the waggle dance to tell their sisters how far away the flowers are. "
    "The length of the waggle run encodes the distance to the food source."
)
TEA = "Assam tea grows in the Brahmaputra valley, where the monsoon brings heavy rain every summer."
SALT = "Sea salt is made by evaporating seawater in shallow ponds under the sun."


def _settings(tmp, name: str, **extra) -> Settings:
    return Settings.load(
        milvus_uri=str(tmp / f"{name}.db"),
        embedder="hashing",
        generator="extractive",
        chunk_tokens=64,
        chunk_overlap=8,
        min_relevance=0.0,
        keys_file=str(tmp / f"{name}-keys.json"),
        spool_dir=str(tmp / f"{name}-pending"),
        **extra,
    )


def _engine(settings: Settings):
    from ragline.service.engine import Engine

    embedder = HashingEmbedder()
    store = MilvusStore.of(settings.store, embedder.dimension)
    return Engine(settings, embedder, store, ExtractiveGenerator())


@pytest.fixture(scope="module", params=["local", "bus", "remote"])
async def service(request, tmp_path_factory) -> AsyncIterator[Service]:
    tmp = tmp_path_factory.mktemp(f"seam-{request.param}")
    if request.param == "local":
        from ragline.seam.local import LocalService

        local = LocalService(_engine(_settings(tmp, "local")))
        yield local
        await local.close()
    elif request.param == "bus":
        from ragline.adapters.buses.memory import MemoryBus
        from ragline.seam.bus import BusService
        from ragline.service.pipeline import Pipeline
        from ragline.service.workers import Topics

        settings = _settings(tmp, "bus", bus_url="memory")
        engine, bus = _engine(settings), MemoryBus()
        pipeline = await Pipeline(engine, bus, Topics.from_settings(settings), timeout_s=10).start()
        yield BusService(pipeline.gateway, "memory", "extractive")
        await pipeline.close(5)
        await bus.close()
        await engine.close()
    else:
        from ragline.service.api.app import create_app

        settings = _settings(tmp, "remote", auth_enabled=False, rate_limit_rps=0)
        server = LiveServer(create_app(settings, _engine(settings)), free_port()).__enter__()
        remote = RemoteService(server.url, timeout=30)
        try:
            yield remote
        finally:
            await remote.close()
            await asyncio.to_thread(server.__exit__, None, None, None)


@pytest.fixture
def tenant() -> str:
    """A tenant per test: the services are shared by a module's tests."""
    return f"t{uuid.uuid4().hex[:10]}"


def _docs(tenant: str, *texts_by_id: tuple[str, str]) -> list[Document]:
    return [Document(tenant=tenant, id=doc_id, text=text) for doc_id, text in texts_by_id]


async def _searchable(service: Service, receipt: Receipt, tenant: str, timeout_s: float = 20.0) -> None:
    """Wait until every document of a receipt can be read back (at once when searchable)."""
    deadline = time.monotonic() + timeout_s
    for document_id in receipt.ids:
        while not await service.document(tenant, document_id):
            assert receipt.status != "searchable", f"{document_id} not readable after a searchable receipt"
            assert time.monotonic() < deadline, f"{document_id} not searchable within {timeout_s} s"
            await asyncio.sleep(0.05)


async def _write(service: Service, docs: list[Document]) -> Receipt:
    """Written and searchable: waiting where the service can, else following the receipt."""
    try:
        receipt = await service.write(docs, wait=True)
        assert receipt.status == "searchable"
    except InvalidInput as exc:  # the contract: a service that cannot wait says so
        assert "wait" in str(exc)
        receipt = await service.write(docs, wait=False)
    await _searchable(service, receipt, docs[0].tenant)
    return receipt


async def test_a_write_returns_a_receipt_for_its_documents(service, tenant):
    docs = _docs(tenant, ("bees.md", BEES), ("tea.md", TEA))
    receipt = await service.write(docs, wait=False)
    assert receipt.status in ("searchable", "queued", "accepted")
    assert set(receipt.ids) == {"bees.md", "tea.md"}
    assert (receipt.job_id is not None) == (receipt.status == "accepted")
    await _searchable(service, receipt, tenant)


async def test_a_search_finds_what_was_written_best_first(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES), ("tea.md", TEA), ("salt.md", SALT)))
    context = await service.search(Query(tenant=tenant, text="How do honeybees tell the distance to flowers?"))
    assert context.hits and context.hits[0].document_id == "bees.md"
    assert context.query.text.startswith("How do honeybees")


async def test_a_tenant_sees_only_its_own_documents(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES)))
    other = f"{tenant}x"
    await _write(service, _docs(other, ("tea.md", TEA)))
    context = await service.search(Query(tenant=other, text="waggle dance of honeybees", top_k=5))
    assert {h.document_id for h in context.hits} == {"tea.md"}


async def test_writing_the_same_document_again_changes_nothing(service, tenant):
    docs = _docs(tenant, ("bees.md", BEES))
    await _write(service, docs)
    before = await service.document(tenant, "bees.md")
    await _write(service, docs)
    after = await service.document(tenant, "bees.md")
    assert [c.chunk_id for c in after] == [c.chunk_id for c in before] and before


async def test_a_document_reads_back_in_chunk_order_and_a_missing_one_is_empty(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES)))
    chunks = await service.document(tenant, "bees.md")
    assert chunks and " ".join(c.text for c in chunks).startswith("Honeybees perform")
    assert await service.document(tenant, "never-written.md") == []


async def test_an_answer_cites_the_document_that_holds_it(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES), ("tea.md", TEA)))
    answer = await service.ask(Query(tenant=tenant, text="What does the length of the waggle run encode?"))
    assert isinstance(answer, Answer) and answer.tenant == tenant
    assert "distance" in answer.text and answer.refusal is None
    assert answer.citations and answer.citations[0].document_id == "bees.md"


async def test_a_stream_yields_text_then_the_same_answer(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES), ("tea.md", TEA)))
    query = Query(tenant=tenant, text="Where does Assam tea grow?")
    items = [item async for item in service.stream(query)]
    assert isinstance(items[-1], Answer) and all(isinstance(i, str) for i in items[:-1])
    assert "".join(items[:-1]).strip() and "Brahmaputra" in items[-1].text
    assert items[-1].citations[0].document_id == "tea.md"


async def test_a_query_may_ask_for_the_extractive_answerer_and_nothing_the_deployment_lacks(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES)))
    asked = Query(tenant=tenant, text="What does the length of the waggle run encode?", generator="extractive")
    answer = await service.ask(asked)
    assert answer.model == "extractive" and "bees.md" in {c.document_id for c in answer.citations}
    lacking = asked.model_copy(update={"generator": "openai"})  # these deployments have no LLM
    with pytest.raises(InvalidInput, match="answers with 'extractive'; a request may ask for it or 'extractive'"):
        await service.ask(lacking)
    with pytest.raises(InvalidInput, match="not 'openai'"):
        async for _ in service.stream(lacking):
            pass


async def test_nothing_relevant_is_an_answer_that_says_so_not_an_error(service, tenant):
    answer = await service.ask(Query(tenant=tenant, text="What is the boiling point of liquid nitrogen?"))
    assert answer.refusal == "nothing_relevant" and not answer.citations


async def test_a_deleted_document_is_gone(service, tenant):
    await _write(service, _docs(tenant, ("bees.md", BEES), ("tea.md", TEA)))
    removed = await service.delete(tenant, "bees.md")
    assert removed is None or removed > 0  # None: queued, in order after the writes
    deadline = time.monotonic() + 20
    while await service.document(tenant, "bees.md"):
        assert removed is None and time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await service.document(tenant, "tea.md")
    try:
        assert await service.delete(tenant, "never-written.md") is None  # queued: nothing to say yet
    except NotFound:
        pass


async def test_the_catalogue_lists_and_counts_or_says_it_is_not_here(service, tenant):
    await _write(service, _docs(tenant, ("a/bees.md", BEES), ("a/tea.md", TEA), ("b/salt.md", SALT)))
    if service.catalogue is None:
        with pytest.raises(NotImplementedInShape, match="ragline ls"):
            catalogue_of(service)
        return
    catalogue = catalogue_of(service)
    page, cursor = await catalogue.documents(tenant, "a/", "", 1)
    assert [d["id"] for d in page] == ["a/bees.md"] and cursor is not None
    rest, end = await catalogue.documents(tenant, "a/", cursor, 10)
    assert [d["id"] for d in rest] == ["a/tea.md"] and end is None
    stats = await catalogue.stats(tenant)
    assert stats["tenant"] == tenant and stats["chunks"] >= 3
    if isinstance(service, RemoteService):
        assert stats["server"] == service.url  # the CLI's `stats` says which server answered


async def test_files_by_path_are_ingested_once_with_progress_or_the_shape_says_it_has_none(service, tenant, tmp_path):
    folder = tmp_path / "kb"
    (folder / "guide").mkdir(parents=True)
    (folder / "bees.md").write_text("# Bees\n\n" + BEES)
    (folder / "guide" / "tea.txt").write_text(TEA)
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    if service.files is None:
        with pytest.raises(NotImplementedInShape, match="by path"):
            files_of(service)
        return
    files, seen, chunks = files_of(service), [], Counter()
    report = await files.ingest_paths(
        tenant, [folder], id_prefix="kb/", on_file=seen.append, progress=lambda kind, n: chunks.update({kind: n})
    )
    assert report.documents == 2 and report.chunks_written == chunks["written"] > 0, report
    assert len(report.errors) == 1 and "photo.png" in report.errors[0] and "unsupported" in report.errors[0]
    assert any(name.endswith("tea.txt") for name in seen)
    assert [h.document_id for h in await service.document(tenant, "kb/guide/tea.txt")] == ["kb/guide/tea.txt"]
    again = await files.ingest_paths(tenant, [folder], id_prefix="kb/")
    assert again.chunks_written == 0 and again.chunks_unchanged == report.chunks_written
    assert files.interrupted("SIGINT").startswith("interrupted (SIGINT): 2 documents written")


async def test_readiness_reports_required_dependencies_ok(service):
    checks = await service.readiness()
    required = [c for c in checks.values() if c.get("required")]
    assert required and all(c["status"] == "ok" for c in required), checks


async def test_the_generator_is_named(service):
    assert isinstance(service.generator_name, str) and service.generator_name
