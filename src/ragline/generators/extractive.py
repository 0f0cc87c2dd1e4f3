"""The extractive generator: no LLM. The answer is the context's best-matching sentences.

It is the configured generator where no LLM is wanted, and the automatic fallback
when the LLM fails; either way every sentence it returns carries its citation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator

from ..models import Prompt
from ..text import content_words, split_sentences
from .prompts import NOT_IN_SOURCES


class ExtractiveGenerator:
    name = "extractive"

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def __init__(self, max_sentences: int = 2, min_overlap: float = 0.3) -> None:
        self.max_sentences = max_sentences
        self.min_overlap = min_overlap

    async def generate(self, prompt: Prompt, max_tokens: int) -> str:
        return self.answer(prompt)

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]:
        yield self.answer(prompt)

    def supported(self, prompt: Prompt) -> bool:
        """Whether some sentence of the context holds enough of the question's words."""
        scored = self._scored_sentences(prompt)
        return bool(scored) and scored[0][0] >= self.min_overlap

    def answer(self, prompt: Prompt) -> str:
        scored = self._scored_sentences(prompt)
        best = [s for s in scored if s[0] >= self.min_overlap][: self.max_sentences]
        if not best:
            return NOT_IN_SOURCES
        return " ".join(f"{sentence} [{number}]" for _, _, number, sentence in sorted(best, key=lambda s: s[1]))

    def _scored_sentences(self, prompt: Prompt) -> list[tuple[float, int, int, str]]:
        """(score, position, passage number, sentence), best first.

        The score is the idf-weighted share of the question's words a sentence holds,
        so rare words (names, terms) count more than common ones.
        """
        sentences = _distinct([(p.number, s) for p in prompt.passages for s in split_sentences(p.hit.text)])
        docs = [set(content_words(s)) for _, s in sentences]
        question = set(content_words(prompt.question))
        df = Counter(w for d in docs for w in d & question)
        idf = {w: math.log(1 + len(docs) / (1 + df[w])) for w in question}
        total = sum(idf.values()) or 1.0
        scored = [
            (sum(idf[w] for w in question & d) / total, i, number, sentence)
            for i, ((number, sentence), d) in enumerate(zip(sentences, docs))
        ]
        return sorted(scored, key=lambda s: (-s[0], s[1]))


def _distinct(sentences: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Overlapping chunks repeat sentences, some cut at a chunk's edge: keep each once, whole."""
    texts = [s for _, s in sentences]
    kept, seen = [], set()
    for number, sentence in sentences:
        if sentence in seen or any(sentence != other and sentence in other for other in texts):
            continue
        seen.add(sentence)
        kept.append((number, sentence))
    return kept
