"""`ragline eval`: retrieval quality on BEIR-format datasets, through ragline's own search.

The corpus (title and text joined, as BEIR does) is ingested into a fresh collection;
each query runs through the same retrieval code as /v1/search; chunk hits are
aggregated to documents (a document scores its best chunk's rank), and ir-measures
(trec_eval's implementations) computes nDCG@10, Recall@10, Recall@100 and MRR@10.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ragline.core.errors import InvalidInput
from ragline.core.models import Document, Hit
from ragline.service.engine import Engine

TENANT = "eval"
MEASURES = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "RR@10"}


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(root: Path, split: str = "test") -> Dataset:
    """corpus.jsonl, queries.jsonl and qrels/<split>.tsv; only judged queries are kept."""
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise InvalidInput(f"not a BEIR dataset, missing: {', '.join(missing)}")
    qrels: dict[str, dict[str, int]] = {}
    with files["qrels"].open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    for line in files["queries"].open():
        item = json.loads(line)
        if item["_id"] in qrels:
            queries[item["_id"]] = item["text"]
    return Dataset(root.name, files["corpus"], queries, qrels)


def iter_corpus(path: Path, batch: int = 256) -> Iterator[list[Document]]:
    docs: list[Document] = []
    for line in path.open():
        item = json.loads(line)
        text = f"{item.get('title', '')} {item.get('text', '')}".strip()
        if text:
            docs.append(Document(tenant=TENANT, id=item["_id"], text=text, metadata={"title": item.get("title", "")}))
        if len(docs) == batch:
            yield docs
            docs = []
    if docs:
        yield docs


def documents_ranked(hits: list[Hit], limit: int) -> dict[str, float]:
    """Chunk hits (best first) -> documents, each ranked by its best chunk."""
    ranked: dict[str, float] = {}
    for rank, hit in enumerate(hits):
        if hit.document_id not in ranked:
            ranked[hit.document_id] = float(len(hits) - rank)
            if len(ranked) == limit:
                break
    return ranked


def score(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    import ir_measures

    measures = {key: ir_measures.parse_measure(name) for key, name in MEASURES.items()}
    aggregated = ir_measures.calc_aggregate(list(measures.values()), qrels, run)
    return {key: float(aggregated[m]) for key, m in measures.items()}


async def ingest(engine: Engine, dataset: Dataset, on_batch: Callable[[int], None] | None = None) -> int:
    chunks = 0
    for docs in iter_corpus(dataset.corpus):
        report = await engine.ingest_documents(docs)
        chunks += report.chunks_written + report.chunks_unchanged
        if on_batch:
            on_batch(len(docs))
    return chunks


async def run_queries(
    engine: Engine, dataset: Dataset, mode: str, depth: int = 100, chunks_per_query: int = 300
) -> tuple[dict[str, dict[str, float]], list[float]]:
    run, latencies = {}, []
    for qid, text in dataset.queries.items():
        started = time.perf_counter()
        context = await engine.search(text, TENANT, chunks_per_query, mode=mode)
        latencies.append((time.perf_counter() - started) * 1000)
        run[qid] = documents_ranked(context.hits, depth)
    return run, latencies
