"""A public question set we did not write: CLAP NQ's dev data, split once into a part to
tune on and a part that is only ever reported.

Source: CLAP NQ (Rosenthal, Sil, Florian, Roukos 2024, "CLAPNQ: Cohesive Long-form
Answers from Passages in Natural Questions for RAG systems"), github.com/primeqa/clapnq
at eb26840d, files ``annotated_data/dev/clapnq_dev_{answerable,unanswerable}.jsonl``;
Apache License 2.0 (bench/data/clapnq/LICENSE). 300 answerable questions (real search
queries from Natural Questions with a Wikipedia passage and a written answer made of
the passage's sentences) and 300 unanswerable ones (real queries whose Wikipedia
article does not answer them, each with a passage of that article: near misses by
construction). See bench/data/clapnq/README.md.

The split: a question is in ``test`` when the first byte of sha256(its NQ id) is even,
else in ``tune``. Thresholds and rules are chosen on ``tune`` only; ``test`` is
reported beside them and never looked at while tuning.

The corpus is every passage of both parts (about 600 Wikipedia passages, the title as
the first line), so a question's retrieval competes with every other question's
passages, and an unanswerable question meets its own article's passage.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "clapnq"
SPLITS = ("tune", "test")


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answerable: bool
    answer: str  # the annotators' written answer ("" when unanswerable)
    evidence: tuple[str, ...]  # the passage sentences the answer was made of
    document_id: str  # the passage the question came with


def split_of(qid: str) -> str:
    return "test" if hashlib.sha256(qid.encode()).digest()[0] % 2 == 0 else "tune"


def detokenize(text: str) -> str:
    """NQ's tokenised text ("the capital 's bourgeoisie , who") back to prose."""
    text = re.sub(r"\s+([.,;:!?%)\]'])", r"\1", text)
    text = re.sub(r"([(\[$])\s+", r"\1", text)
    text = re.sub(r"\s+(n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)
    text = text.replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    text = re.sub(r"\s+-\s+", "-", text)
    return " ".join(text.split())


def _document_id(title: str, text: str) -> str:
    return "nq-" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:16]


def load() -> tuple[dict[str, str], dict[str, list[Question]]]:
    """(documents by id, questions by split)."""
    documents: dict[str, str] = {}
    splits: dict[str, list[Question]] = {name: [] for name in SPLITS}
    for kind in ("answerable", "unanswerable"):
        for line in (DATA / f"clapnq_dev_{kind}.jsonl").read_text().splitlines():
            row = json.loads(line)
            passage = row["passages"][0]
            title, text = passage["title"], detokenize(passage["text"])
            doc_id = _document_id(title, text)
            documents[doc_id] = f"{title}\n\n{text}"
            out = row["output"][0]
            question = Question(
                id=row["id"], question=row["input"], answerable=kind == "answerable",
                answer=out["answer"] if kind == "answerable" else "",
                evidence=tuple(detokenize(s) for s in out["selected_sentences"]), document_id=doc_id,
            )  # fmt: skip
            splits[split_of(row["id"])].append(question)
    return documents, splits


def _tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return [w for w in text.split() if w not in ("a", "an", "the")]


def f1(prediction: str, gold: str) -> float:
    predicted, wanted = _tokens(prediction), _tokens(gold)
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def holds_evidence(answer: str, question: Question, share: float = 0.6) -> bool:
    """Whether the answer states one of the sentences the annotators built their answer
    from: ``share`` of that sentence's words (normalised) are in the answer."""
    said = set(_tokens(answer))
    for sentence in question.evidence:
        words = set(_tokens(sentence))
        if words and len(words & said) / len(words) >= share:
            return True
    return False
