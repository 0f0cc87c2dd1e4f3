"""The ingest worker's batches: one bad document fails alone, an outage fails them all
(to be waited out), and a document's versions and deletes keep their order."""

from __future__ import annotations

import asyncio

from ragline.core.errors import DependencyUnavailable, InvalidInput
from ragline.core.models import Document, DocumentRef
from ragline.core.ports import Delivery
from ragline.service.protocol import DELETE, KIND
from ragline.service.workers.handlers import _runs, ingest_handler


class Recording:
    """The two engine calls the handler makes, recorded (the real engine is exercised
    by tests/integration/test_workers.py; this checks the batching rules alone)."""

    def __init__(self, down: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.down = down

    async def ingest_documents(self, documents: list[Document]) -> None:
        self.calls.append([d.id for d in documents])
        await asyncio.sleep(0.01)
        if self.down:
            raise DependencyUnavailable("store is down")
        if any(d.id == "bad" for d in documents):
            raise InvalidInput("a document the store refuses")

    async def delete_document(self, document_id: str, tenant: str) -> int:
        self.calls.append([f"-{document_id}"])
        return 1


def _write(doc_id: str, offset: int) -> Delivery:
    value = Document(id=doc_id, text=f"text of {doc_id}").model_dump_json().encode()
    return Delivery(topic="docs", partition=0, offset=offset, key=None, value=value, headers={})


def _delete(doc_id: str, offset: int) -> Delivery:
    value = DocumentRef(tenant="default", id=doc_id).model_dump_json().encode()
    return Delivery(topic="docs", partition=0, offset=offset, key=None, value=value, headers={KIND: DELETE})


async def test_one_bad_document_fails_alone_and_the_others_are_written():
    engine = Recording()
    handle = ingest_handler(engine)
    ids = ["a", "b", "bad", "c"]
    results = await asyncio.gather(*(handle(_write(i, n)) for n, i in enumerate(ids)), return_exceptions=True)
    assert [isinstance(r, InvalidInput) for r in results] == [False, False, True, False]
    assert ["a", "b", "bad", "c"] in engine.calls  # tried together first, then one by one
    assert {"a", "b", "c"} <= {c[0] for c in engine.calls if len(c) == 1}


async def test_an_outage_fails_every_document_of_the_batch_without_writing_them_one_by_one():
    engine = Recording(down=True)
    handle = ingest_handler(engine)
    results = await asyncio.gather(*(handle(_write(i, n)) for n, i in enumerate("abcd")), return_exceptions=True)
    assert all(isinstance(r, DependencyUnavailable) for r in results)
    assert engine.calls == [["a", "b", "c", "d"]]  # one call, not four more while the store is down


def test_runs_keep_order_split_at_deletes_and_at_a_second_version():
    items = [
        Document(id="a", text="1"),
        Document(id="b", text="1"),
        Document(id="a", text="2"),
        DocumentRef(tenant="default", id="b"),
        Document(id="c", text="1"),
        Document(id="c", text="1", tenant="other"),
    ]
    runs = _runs(items)
    assert [[(type(i).__name__, i.id) for i in run] for run in runs] == [
        [("Document", "a"), ("Document", "b")],
        [("Document", "a")],
        [("DocumentRef", "b")],
        [("Document", "c"), ("Document", "c")],  # another tenant's document of the same id
    ]


async def test_a_delete_taken_with_writes_runs_in_its_place():
    engine = Recording()
    handle = ingest_handler(engine)
    deliveries = [_write("x", 0), _write("y", 1), _delete("x", 2), _write("x", 3)]
    await asyncio.gather(*(handle(d) for d in deliveries))
    assert engine.calls == [["x", "y"], ["-x"], ["x"]]
