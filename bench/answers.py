"""Answer quality on the sample corpus: the share of answers holding the expected fact
and citing the right document, for the local model and the extractive generator.

The questions and facts (bench/data/sample_questions.json) were written by us over
ragline's own sample corpus. Last line: {"questions", "correct", "cited_right_doc", ...}
with the local model's figures at the top level and each generator's under its name.

    python bench/answers.py [--generators local,extractive]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from _common import ROOT, report

from ragline import Settings
from ragline.cli import sample_corpus_dir
from ragline.engine import Engine
from ragline.generators import build_generator

QUESTIONS = json.loads((ROOT / "bench" / "data" / "sample_questions.json").read_text())


async def score(engine: Engine) -> dict:
    correct = cited = 0
    for item in QUESTIONS:
        answer = await engine.ask(item["question"])
        correct += any(f.lower() in answer.text.lower() for f in item["facts"])
        cited += any(c.document_id.endswith(item["document"]) for c in answer.citations)
    n = len(QUESTIONS)
    return {"correct": correct / n, "cited_right_doc": cited / n}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generators", default="local,extractive")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.load(milvus_uri=str(Path(tmp) / "answers.db"), llm_timeout_s=120)
        engine = Engine.from_settings(settings)
        await engine.ingest_paths([sample_corpus_dir()])
        for name in args.generators.split(","):
            engine._generator = build_generator(settings.model_copy(update={"generator": name}))
            results[name] = await score(engine)
        await engine.close()
    first = results[args.generators.split(",")[0]]
    report({"questions": len(QUESTIONS), **first, **{k: v for k, v in results.items()}})


if __name__ == "__main__":
    asyncio.run(main())
