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

Held out (bench/heldout.py): CLAP NQ's public dev questions (real search queries,
Wikipedia passages, Apache-2.0), split once by id hash into ``tune`` (the only part
looked at while choosing thresholds and rules) and ``test`` (only ever reported), 300
each, half of them unanswerable near misses. For each part:

- answerable_correct: answered, and the answer states one of the passage sentences the
  annotators made their answer from (60 % of its words);
- answer_f1: SQuAD token F1 of the answer (citation markers removed) against the
  annotators' written answer, a refusal scoring 0;
- answer_words_mean: words per answer given; answerable_refused, unanswerable_refused;
- cited_right_doc: answerable ones answered and citing the passage the question came with.

Last line: {"generator", "own": {...}, "heldout": {...test...}, "tune": {...},
"ttft_ms_p50", "answer_ms_p50", "answer_ms_p50_c4", "answer_ms_p50_longest"}.

    python bench/answers.py [--generator extractive|local|openai] [--llm-url URL]
                            [--only own|heldout] [--dump-tune FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import heldout
from _common import ROOT, median, report

from ragline import Settings
from ragline.core.grounding import ground
from ragline.core.models import Answer, Document, Passage
from ragline.core.prompting import says_it_does_not_know
from ragline.service.engine import Engine

_MARKER = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")

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


def _heldout_figures(items: list[heldout.Question], answers: dict[str, Answer]) -> dict:
    answerable = [q for q in items if q.answerable]
    unanswerable = [q for q in items if not q.answerable]
    given = [_MARKER.sub("", answers[q.id].text) for q in items if not says_it_does_not_know(answers[q.id].text)]

    def refused(q: heldout.Question) -> bool:
        return says_it_does_not_know(answers[q.id].text)

    def said(q: heldout.Question) -> str:
        return "" if refused(q) else _MARKER.sub("", answers[q.id].text)

    return {
        "answerable_correct": sum(not refused(q) and heldout.holds_evidence(said(q), q) for q in answerable)
        / len(answerable),
        "answer_f1": sum(heldout.f1(said(q), q.answer) for q in answerable) / len(answerable),
        "answer_words_mean": sum(len(t.split()) for t in given) / max(len(given), 1),
        "answerable_refused": sum(refused(q) for q in answerable) / len(answerable),
        "unanswerable_refused": sum(refused(q) for q in unanswerable) / len(unanswerable),
        "cited_right_doc": sum(
            not refused(q) and any(c.document_id == q.document_id for c in answers[q.id].citations) for q in answerable
        )
        / len(answerable),
        "n_answerable": len(answerable),
        "n_unanswerable": len(unanswerable),
    }


async def run_heldout(settings: Settings, dump: str | None) -> dict:
    documents, splits = heldout.load()
    figures: dict = {}
    async with Engine.from_settings(settings) as engine:
        await engine.ingest_documents([Document(id=k, text=v) for k, v in documents.items()])
        await timed_answer(engine, "warm-up question about a river")
        longest = sorted(documents, key=lambda k: -len(documents[k]))[:20]
        longest_ms = []
        for split in ("tune", "test"):
            answers: dict[str, Answer] = {}
            for item in splits[split]:
                answer, _, all_ms = await timed_answer(engine, item.question)
                answers[item.id] = answer
                if item.document_id in longest:
                    longest_ms.append(all_ms)
            figures[split] = _heldout_figures(splits[split], answers)
            if dump and split == "tune":  # the tuning part only: the test part is not read
                rows = [
                    {"id": q.id, "question": q.question, "answerable": q.answerable, "gold": q.answer,
                     "evidence": q.evidence, "answer": answers[q.id].text,
                     "correct": heldout.holds_evidence(answers[q.id].text, q),
                     "f1": heldout.f1(answers[q.id].text, q.answer)}
                    for q in splits[split]
                ]  # fmt: skip
                with open(dump, "w") as out:
                    json.dump(rows, out, indent=1)
        figures["answer_ms_p50_longest"] = median(longest_ms) if longest_ms else None
    return figures


async def run_own(settings: Settings) -> dict:
    questions = BENCH["questions"]
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
    return {
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
        # short answers: how many answerable questions got one, and how many of those hold the fact
        "short_answers": sum(answers[q["question"]].short_answer is not None for q in answerable),
        "short_answers_right": sum(
            (s := answers[q["question"]].short_answer) is not None
            and any(f.lower() in s.lower() or s.lower() in f.lower() for f in q.get("facts_all") or q["facts"])
            for q in answerable
        ),
        # with an LLM: how many answers it gave, and why the others are extractive
        "answered_by": dict(Counter(a.model if a.model in ("extractive", "none") else "llm" for a in answers.values())),
        "degraded_reasons": dict(Counter((a.degraded_reason or "")[:40] for a in answers.values() if a.degraded)),
        "wrong": [q["question"] for q in questions if not correct(q, answers[q["question"]])],
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", default=None, help="default: the deployment's (extractive)")
    parser.add_argument("--llm-url", default=None)
    parser.add_argument("--only", choices=("own", "heldout"), default=None)
    parser.add_argument("--dump-tune", default=None, help="write the tune part's answers to this file")
    args = parser.parse_args()
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"cache_url": "none"}
        if args.generator:
            overrides["generator"] = args.generator
        if args.llm_url:
            overrides["llm_url"] = args.llm_url
        result["generator"] = Settings.load(**overrides).generator
        if args.only != "heldout":
            result["own"] = await run_own(Settings.load(**overrides, milvus_uri=str(Path(tmp) / "own.db")))
        if args.only != "own":
            figures = await run_heldout(Settings.load(**overrides, milvus_uri=str(Path(tmp) / "nq.db")), args.dump_tune)
            result["heldout"] = figures["test"]
            result["tune"] = figures["tune"]
            result["answer_ms_p50_longest"] = figures["answer_ms_p50_longest"]
    own = result.get("own", {})
    for key in ("ttft_ms_p50", "answer_ms_p50", "answer_ms_p50_c4"):
        if key in own:
            result[key] = own[key]
    report(result)


if __name__ == "__main__":
    asyncio.run(main())
