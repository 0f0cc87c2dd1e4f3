"""Answer quality and speed of a generator over our own benchmark corpus.

bench/data/answer_bench.json (written by us, CC0): 32 documents of a fictional
company's handbook, 70 questions: single facts, numbers, paraphrases sharing few words
with the source, facts spread over two passages or two documents, and 16 questions the
documents cannot answer. Engine: MiniLM + Milvus Lite, the deployment's defaults.

- answerable_correct: share of answerable questions whose answer holds the expected
  fact (every fact, for two-fact questions);
- unanswerable_refused: share of unanswerable ones answered "I don't know";
- cited_right_doc: share of answerable ones citing one of the expected documents;
- grounded_flag_precision / _recall: on every answerable question's answer with one
  invented sentence planted in it, how many planted sentences the groundedness check
  flags (recall) and how many flagged sentences were planted ones (precision);
- ttft_ms_p50, answer_ms_p50: one asker, streamed; answer_ms_p50_c4: four at once.

Last line: {"generator", "questions", "answerable_correct", "unanswerable_refused",
"cited_right_doc", "grounded_flag_precision", "grounded_flag_recall", "ttft_ms_p50",
"answer_ms_p50", "answer_ms_p50_c4"}.

    python bench/answers.py [--generator extractive|local|openai] [--llm-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import ROOT, median, report

from ragline import Settings
from ragline.engine import Engine
from ragline.grounding import ground
from ragline.models import Answer, Document, Passage
from ragline.prompting import says_it_does_not_know

BENCH = json.loads((ROOT / "bench" / "data" / "answer_bench.json").read_text())


def correct(item: dict, answer: Answer) -> bool:
    text = answer.text.lower()
    if item["kind"] == "unanswerable":
        return says_it_does_not_know(answer.text)
    if "facts_all" in item:
        return all(f.lower() in text for f in item["facts_all"])
    return any(f.lower() in text for f in item["facts"])


async def timed_answer(engine: Engine, question: str) -> tuple[Answer, float, float]:
    started = time.perf_counter()
    first = None
    answer = None
    async for item in engine.stream(question):
        if first is None:
            first = time.perf_counter()
        if isinstance(item, Answer):
            answer = item
    assert answer is not None
    done = time.perf_counter()
    return answer, ((first or done) - started) * 1000, (done - started) * 1000


async def grounding_figures(engine: Engine, answers: dict[str, Answer]) -> tuple[float, float]:
    """Plant an invented sentence in each answerable answer; how well is it caught?"""
    planted_flagged = flagged = planted = 0
    for n, item in enumerate(q for q in BENCH["questions"] if q["kind"] != "unanswerable"):
        answer = answers[item["question"]]
        if says_it_does_not_know(answer.text):
            continue
        context = await engine.search(item["question"], top_k=engine.settings.answer_top_k)
        passages = [Passage(i + 1, h) for i, h in enumerate(context.hits)]
        invented = BENCH["planted"][n % len(BENCH["planted"])]
        supports = ground(f"{answer.text} {invented}", passages)
        planted += 1
        for support in supports:
            if not support.supported:
                flagged += 1
                planted_flagged += support.sentence == invented
    return (planted_flagged / flagged if flagged else 1.0), planted_flagged / max(planted, 1)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", default=None, help="default: the deployment's (extractive)")
    parser.add_argument("--llm-url", default=None)
    args = parser.parse_args()
    questions = BENCH["questions"]
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"milvus_uri": str(Path(tmp) / "answers.db"), "cache_url": "none"}
        if args.generator:
            overrides["generator"] = args.generator
        if args.llm_url:
            overrides["llm_url"] = args.llm_url
        settings = Settings.load(**overrides)
        async with Engine.from_settings(settings) as engine:
            docs = [Document(id=d["id"], text=d["text"]) for d in BENCH["documents"]]
            await engine.ingest_documents(docs)
            await timed_answer(engine, "warm-up question about the office")
            answers, ttft, total = {}, [], []
            for item in questions:
                answer, first_ms, all_ms = await timed_answer(engine, item["question"])
                answers[item["question"]] = answer
                ttft.append(first_ms)
                total.append(all_ms)
            concurrent: list[float] = []
            lanes = [questions[i::4] for i in range(4)]

            async def lane(items: list[dict]) -> None:
                for item in items:
                    concurrent.append((await timed_answer(engine, item["question"]))[2])

            await asyncio.gather(*(lane(items) for items in lanes))
            precision, recall = await grounding_figures(engine, answers)
    answerable = [q for q in questions if q["kind"] != "unanswerable"]
    unanswerable = [q for q in questions if q["kind"] == "unanswerable"]
    by_kind: dict[str, list[bool]] = {}
    for item in questions:
        by_kind.setdefault(item["kind"], []).append(correct(item, answers[item["question"]]))
    report({
        "generator": settings.generator,
        "documents": len(BENCH["documents"]),
        "questions": len(questions),
        "answerable_correct": sum(correct(q, answers[q["question"]]) for q in answerable) / len(answerable),
        "unanswerable_refused": sum(correct(q, answers[q["question"]]) for q in unanswerable) / len(unanswerable),
        "cited_right_doc": sum(
            any(c.document_id in q["documents"] for c in answers[q["question"]].citations) for q in answerable
        ) / len(answerable),
        "grounded_flag_precision": precision,
        "grounded_flag_recall": recall,
        "ttft_ms_p50": median(ttft),
        "answer_ms_p50": median(total),
        "answer_ms_p50_c4": median(concurrent),
        "correct_by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
        # with an LLM: how many answers it gave, and why the others are extractive
        "answered_by": dict(Counter(a.model if a.model in ("extractive", "none") else "llm" for a in answers.values())),
        "degraded_reasons": dict(Counter((a.degraded_reason or "")[:40] for a in answers.values() if a.degraded)),
        "wrong": [q["question"] for q in questions if not correct(q, answers[q["question"]])],
    })  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
