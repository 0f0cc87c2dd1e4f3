"""The extractive generator: no LLM. The answer is the context's best-matching sentences.

It is the configured generator where no LLM is wanted, and the automatic fallback
when the LLM fails; either way every sentence it returns carries its citation.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable

import numpy as np

from ..models import Prompt
from ..ports import Embedder
from ..prompting import NOT_IN_SOURCES
from ..text import content_words, split_sentences

# Questions whose answer is a quantity, a time or a date: the chosen sentence must
# state one, or the passages do not answer them ("How many parking spaces..." vs a
# sentence about the garage that gives none).
_WANTS_NUMBER = re.compile(
    r"^\s*(how (many|much|long|often|fast|heavy|tall|big|old)|when\b|until when|"
    r"(until|at|by) what time|what time|which year|in which year|what (year|date|percentage|share)|"
    r"within how)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twice|once|"
                     r"daily|weekly|monthly|yearly|annually|every)\b", re.IGNORECASE)  # fmt: skip
_WANTS_NAME = re.compile(r"^\s*who\b", re.IGNORECASE)
_FULL_NAME = re.compile(r"(?<!^)\b[A-Z][\w-]+ [A-Z][\w-]+")


class ExtractiveGenerator:
    """Answers with the passages' own sentences, each cited.

    With an embedder (the default engine passes MiniLM) a sentence is chosen by its
    cosine similarity to the question, which finds paraphrases ("bike" / "bicycles");
    without one, by the idf-weighted share of the question's words it holds. The
    answer is "not in the sources" when the best sentence is below ``min_similarity``
    (or ``min_overlap``), or when the question asks for a quantity or a time (a name)
    and the sentence states none. A second sentence is added when it is nearly as close
    to the question (questions that ask two things). Figures: README, answer benchmark.
    """

    name = "extractive"

    def __init__(
        self,
        max_sentences: int = 2,
        min_overlap: float = 0.3,
        embedder: Embedder | None = None,
        min_similarity: float = 0.5,
        second_within: float = 0.08,
    ) -> None:
        self.max_sentences = max_sentences
        self.min_overlap = min_overlap
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.second_within = second_within

    def observe_batches(self, observe: Callable[[int], None]) -> None:
        return None  # answers one prompt at a time

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def generate(self, prompt: Prompt, max_tokens: int) -> str:
        return await self.answer(prompt)

    async def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]:
        yield await self.answer(prompt)

    async def supported(self, prompt: Prompt) -> bool:
        """Whether some sentence of the passages answers the question."""
        return bool(await self._chosen(prompt))

    async def answer(self, prompt: Prompt) -> str:
        chosen = await self._chosen(prompt)
        if not chosen:
            return NOT_IN_SOURCES
        return " ".join(f"{sentence} [{number}]" for _, _, number, sentence in sorted(chosen, key=lambda s: s[1]))

    async def _chosen(self, prompt: Prompt) -> list[tuple[float, int, int, str]]:
        """The sentences that answer: the best for the question, or for each part of a
        question that asks two things ("How long ..., and how long ...?")."""
        sentences = _distinct([(p.number, s) for p in prompt.passages for s in split_sentences(p.hit.text)])
        if not sentences:
            return []
        parts = _parts(prompt.question) if self.embedder is not None else [prompt.question]
        vectors = None
        asked: dict[str, np.ndarray] = {}
        if self.embedder is not None:
            # Float32 vectors (the model's own) for sentences and questions: the thresholds
            # below were set on their cosines. The int8 question vectors searches use
            # moved two of bench/answers.py's 70 answers, with int8 or float32 sentences.
            # The question's exact vector is the one its retrieval used (kept: no second run).
            earlier = prompt.earlier
            questions = dict.fromkeys(q for p in parts for q in ((p, earlier, f"{earlier} {p}") if earlier else (p,)))
            vectors = await self.embedder.embed([s for _, s in sentences], prompt.tenant, interactive=True)
            asked = {q: await self.embedder.embed_query(q, prompt.tenant, exact=True) for q in questions}
        chosen: dict[int, tuple[float, int, int, str]] = {}
        for part in parts:
            scored, threshold = self._scored(part, sentences, vectors, asked, prompt.earlier)
            if not scored or scored[0][0] < threshold or not _right_kind(part, scored[0][3]):
                return []  # a part the passages do not answer: do not answer half
            best = scored[0][0]
            margin = self.second_within if len(parts) == 1 and self.embedder is not None else 0.0
            for s in [s for s in scored if s[0] >= max(threshold, best - margin)][: self.max_sentences]:
                chosen.setdefault(s[1], s)
        return sorted(chosen.values(), key=lambda s: (-s[0], s[1]))[: self.max_sentences * len(parts)]

    def _scored(
        self,
        question: str,
        sentences: list[tuple[int, str]],
        vectors: np.ndarray | None,
        asked: dict[str, np.ndarray],
        earlier: str = "",
    ) -> tuple[list[tuple[float, int, int, str]], float]:
        """(score, position, passage number, sentence), best first, and the threshold.

        For a follow-up (``earlier``: the question it continues) a sentence scores by the
        follow-up, plus a fifth of its score for the earlier question (which says what "it"
        is), and passes the threshold by the follow-up or by both questions together."""
        scores, threshold = self._scores(question, sentences, vectors, asked)
        if earlier:
            back, _ = self._scores(earlier, sentences, vectors, asked)
            both, _ = self._scores(f"{earlier} {question}", sentences, vectors, asked)
            ranked = [q + 0.2 * b for q, b in zip(scores, back)]
            best = max(range(len(ranked)), key=lambda i: ranked[i])
            if max(scores[best], both[best]) >= threshold:
                ranked = [r + max(0.0, threshold - scores[best]) for r in ranked]  # the best passes
            scores = ranked
        scored = [(score, i, number, sentence) for i, ((number, sentence), score) in enumerate(zip(sentences, scores))]
        return sorted(scored, key=lambda s: (-s[0], s[1])), threshold

    def _scores(
        self, question: str, sentences: list[tuple[int, str]], vectors: np.ndarray | None, asked: dict[str, np.ndarray]
    ) -> tuple[list[float], float]:
        lexical = _lexical_scores(question, [s for _, s in sentences])
        if self.embedder is None or vectors is None:
            return lexical, self.min_overlap
        wanted = asked[question]
        # cosine first; a little lexical overlap breaks near-ties toward the exact words
        return [float(v @ wanted) + 0.05 * lex for v, lex in zip(vectors, lexical)], self.min_similarity


_SECOND_QUESTION = re.compile(
    r",?\s+and\s+(?=(what|how|when|where|which|who|whom|at what|in which|is|are|does|do|can)\b)", re.IGNORECASE
)


def _parts(question: str) -> list[str]:
    """A question that asks two things, as two questions (each of two content words or
    more: "... and when?" stays one question)."""
    parts = [p.strip() for p in _SECOND_QUESTION.split(question)[::2] if p.strip()]
    if len(parts) < 2 or any(len(content_words(p)) < 2 for p in parts):
        return [question]
    return parts


def _lexical_scores(question: str, sentences: list[str]) -> list[float]:
    """The idf-weighted share of the question's words each sentence holds."""
    docs = [set(content_words(s)) for s in sentences]
    wanted = set(content_words(question))
    df = Counter(w for d in docs for w in d & wanted)
    idf = {w: math.log(1 + len(docs) / (1 + df[w])) for w in wanted}
    total = sum(idf.values()) or 1.0
    return [sum(idf[w] for w in wanted & d) / total for d in docs]


def _right_kind(question: str, sentence: str) -> bool:
    """A quantity or time for how-many/when questions, a full name for who questions."""
    if _WANTS_NUMBER.search(question) and not _NUMBER.search(sentence):
        return False
    return not (_WANTS_NAME.search(question) and not _FULL_NAME.search(sentence))


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
