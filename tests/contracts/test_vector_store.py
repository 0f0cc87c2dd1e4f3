"""The VectorStore contract, run against the in-memory store, Milvus Lite and a real Milvus server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import numpy as np
import pytest

from ragline import Chunk, InvalidInput, Settings
from ragline.adapters.stores import build_store
from ragline.adapters.stores.milvus import MilvusStore
from ragline.core.ids import chunk_id, content_hash
from ragline.core.ports import VectorStore

DIM = 8


@pytest.fixture(params=["memory", "lite", pytest.param("server", marks=pytest.mark.integration)])
async def store(request, tmp_path) -> AsyncIterator[VectorStore]:
    if request.param == "memory":
        yield build_store(Settings.load(milvus_uri="memory://").store, DIM)
        return
    if request.param == "lite":
        settings = Settings.load(milvus_uri=str(tmp_path / "contract.db"))
    else:
        uri = request.getfixturevalue("milvus_server_uri")
        settings = Settings.load(milvus_uri=uri, collection=f"c_{uuid.uuid4().hex[:12]}")
    s = MilvusStore.of(settings.store, DIM)
    yield s
    await s.close()


def unit(i: int) -> list[float]:
    v = np.zeros(DIM, dtype=np.float32)
    v[i % DIM] = 1.0
    return v.tolist()


def chunk(tenant: str, doc: str, n: int, text: str = "", axis: int | None = None, **meta) -> Chunk:
    text = text or f"{doc} chunk {n}"
    return Chunk(
        id=chunk_id(tenant, doc, n),
        tenant=tenant,
        document_id=doc,
        number=n,
        text=text,
        content_hash=content_hash(text),
        metadata=meta,
        vector=unit(n if axis is None else axis),
    )


async def test_a_search_sees_chunks_upserted_just_before(store):
    await store.upsert([chunk("t", "d", 0), chunk("t", "d", 1)])
    hits = await store.search("t", np.array(unit(1)), top_k=1)
    assert [h.chunk_id for h in hits] == [chunk_id("t", "d", 1)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


async def test_upserting_the_same_chunk_twice_keeps_one_copy(store):
    await store.upsert([chunk("t", "d", 0, "first")])
    await store.upsert([chunk("t", "d", 0, "second")])
    assert await store.count("t") == 1
    hits = await store.search("t", np.array(unit(0)), top_k=5)
    assert [h.text for h in hits] == ["second"]


async def test_search_never_returns_another_tenants_chunks(store):
    await store.upsert([chunk("a", "d", 0), chunk("b", "d", 0)])
    hits = await store.search("b", np.array(unit(0)), top_k=10)
    assert {h.chunk_id for h in hits} == {chunk_id("b", "d", 0)}


async def test_delete_document_removes_only_that_documents_chunks(store):
    await store.upsert([chunk("t", "d1", 0), chunk("t", "d1", 1), chunk("t", "d2", 0), chunk("u", "d1", 0)])
    assert await store.delete_document("t", "d1") == 2
    assert await store.count("t") == 1
    assert await store.count("u") == 1


async def test_delete_chunks_removes_exactly_those(store):
    await store.upsert([chunk("t", "d", n) for n in range(3)])
    await store.delete_chunks("t", [chunk_id("t", "d", 1)])
    stored = await store.stored_chunks("t", ["d"])
    assert sorted(c.number for c in stored["d"]) == [0, 2]


async def test_stored_chunks_reports_ids_and_content_hashes(store):
    await store.upsert([chunk("t", "d", 0, "hello")])
    stored = await store.stored_chunks("t", ["d", "missing"])
    assert stored["missing"] == []
    assert [(c.id, c.content_hash) for c in stored["d"]] == [(chunk_id("t", "d", 0), content_hash("hello"))]


async def test_metadata_filters_narrow_the_search(store):
    await store.upsert([chunk("t", "en", 0, axis=0, lang="en"), chunk("t", "fr", 0, axis=0, lang="fr")])
    hits = await store.search("t", np.array(unit(0)), top_k=5, filters={"lang": "fr"})
    assert [h.document_id for h in hits] == ["fr"]
    hits = await store.search("t", np.array(unit(0)), top_k=5, filters={"lang": ["en", "fr"]})
    assert {h.document_id for h in hits} == {"en", "fr"}


async def test_a_filter_value_cannot_inject_an_expression(store):
    await store.upsert([chunk("t", "d", 0, lang="en")])
    hits = await store.search("t", np.array(unit(0)), top_k=5, filters={"lang": 'x" or tenant != "'})
    assert hits == []


async def test_a_malformed_filter_key_is_invalid_input(store):
    with pytest.raises(InvalidInput):
        await store.search("t", np.array(unit(0)), top_k=5, filters={"lang) or (1": "x"})


async def test_hits_carry_text_metadata_and_hash(store):
    await store.upsert([chunk("t", "d", 0, "some text", title="T")])
    [hit] = await store.search("t", np.array(unit(0)), top_k=1)
    assert (hit.text, hit.metadata, hit.content_hash) == ("some text", {"title": "T"}, content_hash("some text"))


async def test_count_is_per_tenant(store):
    await store.upsert([chunk("a", "d", n) for n in range(3)] + [chunk("b", "d", 0)])
    assert (await store.count("a"), await store.count("b"), await store.count("c")) == (3, 1, 0)


async def test_document_chunks_come_back_in_order_within_the_tenant(store):
    await store.upsert([chunk("t", "d", 2, "c"), chunk("t", "d", 0, "a"), chunk("t", "d", 1, "b"), chunk("u", "d", 0)])
    assert [h.text for h in await store.document_chunks("t", "d")] == ["a", "b", "c"]
    assert await store.document_chunks("t", "other") == []


async def test_bm25_and_hybrid_find_by_words_where_full_text_search_exists(store):
    await store.upsert(
        [
            chunk("t", "volcano", 0, "Pinatubo erupted in 1991", axis=0),
            chunk("t", "bees", 0, "Honeybees dance", axis=1),
            chunk("u", "x", 0, "Pinatubo again", axis=0),
        ]
    )
    for mode in ("bm25", "hybrid"):
        hits = await store.search("t", np.array(unit(1)), top_k=5, text="Pinatubo", mode=mode)
        if store.full_text:
            assert hits[0].document_id == "volcano" and {h.document_id for h in hits} <= {"volcano", "bees"}
            assert hits[0].similarity == pytest.approx(0.0, abs=1e-4)  # cosine, not the fused score
        else:  # Milvus < 2.5: dense only, so the bee chunk (same vector) comes first
            assert hits[0].document_id == "bees"


async def test_concurrent_searches_get_what_each_would_get_alone(store):
    """Milvus coalesces concurrent searches into one request per mode, filter and k:
    each caller still gets its own hits, never another tenant's or another query's."""
    import asyncio

    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    await store.upsert([chunk(t, f"d{n}", n, f"{t} {words[n]} text", axis=n) for t in ("t", "u") for n in range(DIM)])
    asks = [(t, n, mode) for t in ("t", "u") for n in range(DIM) for mode in ("dense", "hybrid")]

    async def one(tenant: str, n: int, mode: str) -> list[tuple[str, str]]:
        hits = await store.search(tenant, np.array(unit(n)), top_k=3, text=words[n], mode=mode)
        return [(h.chunk_id, h.text) for h in hits]

    alone = [await one(*ask) for ask in asks]
    sizes: list[int] = []
    if isinstance(store, MilvusStore):
        store._searches.on_batch = sizes.append
    together = await asyncio.gather(*(one(*ask) for ask in asks))
    assert together == alone
    if isinstance(store, MilvusStore):
        assert max(sizes) > 1 and sum(sizes) == len(asks)  # they did share requests
    for (tenant, n, _), hits in zip(asks, together):
        assert hits[0] == (chunk_id(tenant, f"d{n}", n), f"{tenant} {words[n]} text")
        assert all(text.startswith(tenant + " ") for _, text in hits)


async def test_documents_are_listed_in_id_order_by_prefix_and_cursor_within_the_tenant(store):
    await store.upsert(
        [chunk("t", d, n, kind=d[0]) for d in ("b-2", "a-1", "b-1", "a_3", "c") for n in range(2)]
        + [chunk("u", "a-9", 0)]
    )
    everything = await store.documents("t")
    assert [r.id for r in everything] == ["a-1", "a_3", "b-1", "b-2", "c"]  # one row per document
    assert everything[0].metadata == {"kind": "a"}
    assert [r.id for r in await store.documents("t", prefix="a")] == ["a-1", "a_3"]  # "_" is no wildcard
    assert [r.id for r in await store.documents("t", prefix="b", after="b-1")] == ["b-2"]
    assert [r.id for r in await store.documents("t", after="a_3", limit=2)] == ["b-1", "b-2"]
    assert await store.documents("t", prefix="z") == []
    assert [r.id for r in await store.documents("u")] == ["a-9"]
    assert [r.id for r in await store.documents("t", filters={"kind": "b"})] == ["b-1", "b-2"]
    assert [r.id for r in await store.documents("t", prefix="b", after="b-1", filters={"kind": "b"})] == ["b-2"]
    assert [r.id for r in await store.documents("t", filters={"kind": ["a", "c"]})] == ["a-1", "a_3", "c"]
    assert await store.documents("u", filters={"kind": "b"}) == []


async def test_sentences_stored_with_a_chunk_come_back_with_it_when_a_search_asks(store):
    from ragline.core import sentences

    vectors = np.eye(DIM, dtype=np.float32)[:2]
    blob = sentences.encode(["First sentence here.", "Second one here."], vectors)
    with_sentences = chunk("t", "d", 0).model_copy(update={"sentences": blob})
    await store.upsert([with_sentences, chunk("t", "d", 1)])
    hits = await store.search("t", np.array(unit(0)), top_k=2, with_sentences=True)
    by_id = {h.chunk_id: h.sentences for h in hits}
    assert by_id[chunk_id("t", "d", 1)] is None  # a chunk stored without them
    texts, decoded = sentences.decode(by_id[chunk_id("t", "d", 0)], DIM)
    assert texts == ["First sentence here.", "Second one here."]
    assert np.allclose(decoded, vectors, atol=0.01)
    plain = await store.search("t", np.array(unit(0)), top_k=2)
    assert all(h.sentences is None for h in plain)  # only when asked
    assert "sentences" not in plain[0].model_dump()  # never on the wire or in the API
