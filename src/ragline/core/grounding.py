"""Groundedness: which passage supports each sentence of an answer, and how strongly.

The score is lexical and cheap (no model): the share of a sentence's content words
(lower-cased, lightly stemmed, stop words dropped; numbers kept) that appear in the
passage, with every number of the sentence required to appear there too (a changed
figure is the commonest invention). A sentence is supported when its best passage
scores at least ``threshold`` (0.6 by default). An extractive sentence, copied from a
passage, scores 1.0; a sentence with no content words (a connective) is left out.

Measured on the answer benchmark (bench/answers.py, planted unsupported sentences):
see the README for precision and recall.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragline.core.models import Citation, Passage, Support
from ragline.core.text import content_words

THRESHOLD = 0.6
_CITATION = re.compile(r"\s*\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def ground(text: str, passages: Sequence[Passage], threshold: float = THRESHOLD) -> list[Support]:
    """Each sentence of ``text`` with its best supporting passage and score."""
    found = []
    words_of = [(p, set(content_words(p.hit.text)), set(_NUMBER.findall(p.hit.text))) for p in passages]
    for sentence in _sentences(text):
        words = set(content_words(sentence))
        if not words:
            continue
        numbers = set(_NUMBER.findall(sentence))
        best, score = None, 0.0
        for passage, passage_words, passage_numbers in words_of:
            share = len(words & passage_words) / len(words)
            if numbers - passage_numbers:
                share = min(share, 0.5 * share)  # a figure the passage does not state
            if share > score:
                best, score = passage, share
        found.append(Support(
            sentence=sentence, score=round(score, 3), supported=score >= threshold,
            number=best.number if best else None, chunk_id=best.hit.chunk_id if best else None,
            document_id=best.hit.document_id if best else None,
        ))  # fmt: skip
    return found


def citations_from(supports: Sequence[Support]) -> list[Citation]:
    """The passages that support the answer's supported sentences, in order, once each."""
    seen: dict[int, Citation] = {}
    for s in supports:
        if s.supported and s.number is not None and s.number not in seen and s.chunk_id and s.document_id:
            seen[s.number] = Citation(number=s.number, chunk_id=s.chunk_id, document_id=s.document_id)
    return list(seen.values())


def _sentences(text: str) -> list[str]:
    """Every sentence, short ones included; line wraps are not sentence ends."""
    clean = " ".join(_CITATION.sub("", text).split())
    return [s for s in _SENTENCE_END.split(clean) if s]
