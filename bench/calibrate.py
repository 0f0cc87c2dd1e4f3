"""Fit the extractive answerer's confidence on CLAP NQ's tune part (never the test part).

For every tune question: retrieve as the service does, read the passages
(ExtractiveGenerator.read), and label the reading 1 when the question is answerable and
its evidence states one of the annotators' sentences (bench/heldout.py), else 0. A
logistic model of the reading's features is fitted to those labels (L2, gradient
descent, standardised features), and the default threshold is the one that makes the
most right decisions on the tune part (answer when right, refuse when not) while
refusing at most 10 % of its answerable questions. Prints the
weights to paste into generators/extractive.py (WEIGHTS, MIN_CONFIDENCE) and the tune
figures at that threshold.

    python bench/calibrate.py [--features FILE]   # FILE: a saved feature dump to refit
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import tempfile
from pathlib import Path

import heldout
import numpy as np
from _common import report

from ragline import Settings
from ragline.adapters.generators.extractive import FEATURES, Reading
from ragline.core.models import Document
from ragline.core.prompting import build_prompt
from ragline.service.engine import Engine


async def own_features(settings: Settings) -> list[dict]:
    """The same for our own set (bench/data/answer_bench.json): a label is 1 when the
    question is answerable and the evidence holds its expected facts."""
    from answers import BENCH

    rows = []
    async with Engine.from_settings(settings) as engine:
        await engine.ingest_documents([Document(id=d["id"], text=d["text"]) for d in BENCH["documents"]])
        for item in BENCH["questions"]:
            answerable = item["kind"] != "unanswerable"
            reading = await _read(engine, settings, item["question"])
            said = " ".join(s.sentence for s in reading.evidence).lower() if reading else ""
            facts = item.get("facts_all") or item.get("facts") or []
            right = all if "facts_all" in item else any
            label = int(answerable and bool(facts) and right(f.lower() in said for f in facts))
            rows.append({"id": item["question"], "answerable": answerable, "label": label, "source": "own",
                         "features": reading.features if reading else None})  # fmt: skip
    return rows


async def _read(engine: Engine, settings: Settings, question: str) -> Reading | None:
    """The reading the service makes: the hits above the relevance floor, then the answerer."""
    context = await engine.search(question, top_k=settings.answer_top_k, purpose="answer")
    relevant = [h for h in context.hits if (h.similarity or h.score) >= settings.min_relevance]
    if not relevant:
        return None
    prompt = build_prompt(question, relevant, settings.llm_context_tokens - settings.llm_max_tokens - 64)
    return await engine.fallback.read(dataclasses.replace(prompt, sentences=context.sentences))


async def features(settings: Settings) -> list[dict]:
    documents, splits = heldout.load()
    rows = []
    async with Engine.from_settings(settings) as engine:
        await engine.ingest_documents([Document(id=k, text=v) for k, v in documents.items()])
        for item in splits["tune"]:
            reading = await _read(engine, settings, item.question)
            if reading is None:
                rows.append({"id": item.id, "answerable": item.answerable, "label": 0, "features": None})
                continue
            said = " ".join(s.sentence for s in reading.evidence)
            label = int(item.answerable and heldout.holds_evidence(said, item))
            rows.append(
                {"id": item.id, "answerable": item.answerable, "label": label, "source": "nq",
                 "features": reading.features, "short": reading.short, "kind": reading.kind}
            )  # fmt: skip
    return rows


def fit(
    rows: list[dict], names: tuple[str, ...] = FEATURES, l2: float = 1.0, steps: int = 3000, max_refused: float = 0.1
) -> tuple[list[float], float, dict]:
    """Weights for ``names`` (raw features), the threshold, and each source's figures at it.
    Each source (CLAP NQ tune, our own set) weighs the same in the fit and the choice."""
    used = [r for r in rows if r["features"] is not None]
    sources = sorted({r.get("source", "nq") for r in rows})
    size = {s: sum(r.get("source", "nq") == s for r in rows) for s in sources}
    weight = np.array([len(rows) / len(sources) / size[r.get("source", "nq")] for r in used])
    x = np.array([[r["features"][f] for f in names] for r in used], dtype=float)
    y = np.array([r["label"] for r in used], dtype=float)
    mean, std = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0) + 1e-9
    z = np.hstack([x[:, :1], (x[:, 1:] - mean) / std])
    w = np.zeros(z.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-z @ w))
        grad = z.T @ (weight * (p - y)) / weight.sum() + l2 * np.r_[0, w[1:]] / len(y)
        w -= 0.5 * grad
    raw = np.r_[w[0] - np.sum(w[1:] * mean / std), w[1:] / std]  # back to raw features
    p = 1 / (1 + np.exp(-x @ raw)) * np.array([1 - r["features"].get("blocked", 0.0) for r in used])
    best, best_t, figures = -1.0, 0.5, {}
    for t in np.arange(0.05, 0.95, 0.01):
        at = {
            s: _figures([r for r in rows if r.get("source", "nq") == s], dict(zip(map(id, used), p >= t)))
            for s in sources
        }
        score = sum(f["answerable_correct"] + f["unanswerable_refused"] for f in at.values())
        if at.get("nq", at[sources[0]])["answerable_refused"] <= max_refused and score > best:
            best, best_t, figures = score, float(t), at
    return [round(float(v), 3) for v in raw], round(best_t, 2), figures


def _figures(rows: list[dict], answered: dict[int, bool]) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    said = [answered.get(id(r), False) for r in rows]
    return {
        "answerable_correct": round(sum(a and r["label"] for a, r in zip(said, rows)) / len(answerable), 3),
        "answerable_refused": round(sum(not a for a, r in zip(said, rows) if r["answerable"]) / len(answerable), 3),
        "unanswerable_refused": round(
            sum(not a for a, r in zip(said, rows) if not r["answerable"]) / max(len(unanswerable), 1), 3
        ),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", default=None, help="refit from this dump instead of reading again")
    parser.add_argument("--save", default=None, help="write the feature dump here")
    args = parser.parse_args()
    if args.features:
        rows = json.loads(Path(args.features).read_text())  # noqa: ASYNC240 (a script)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = await features(Settings.load(cache_url="none", milvus_uri=str(Path(tmp) / "nq.db")))
            rows += await own_features(Settings.load(cache_url="none", milvus_uri=str(Path(tmp) / "own.db")))
    if args.save:
        Path(args.save).write_text(json.dumps(rows))  # noqa: ASYNC240
    weights, threshold, figures = fit(rows)
    report({"features": FEATURES, "weights": weights, "min_confidence": threshold, "tune": figures,
            "n": len(rows), "labelled_right": sum(r["label"] for r in rows)})  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
