"""The extractive answerer: no LLM. The answer is the passages' best sentences, cited,
with the short answer (a name, a date, a quantity) when the question asks for one.

It is the configured generator where no LLM is wanted, the automatic fallback when the
LLM fails, and the gate before any LLM: ``read`` decides, once per prompt, whether the
passages answer the question (its ``Reading`` is what every path uses).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable

import numpy as np

from ragline.core import entities, sentences
from ragline.core.models import Prompt, Reading, Scored
from ragline.core.ports import Embedder
from ragline.core.prompting import NOT_ANSWERED, NOTHING_RELEVANT
from ragline.core.text import content_words

# The calibrated confidence that the best sentence answers the question: a logistic
# model of the features below, fitted on CLAP NQ's tune part and our own set, each
# weighing the same (bench/calibrate.py prints these numbers; CLAP NQ's test part was
# never read). Feature order: FEATURES. Chosen among the reading's features on the tune
# part: the best passage's similarity to the question (relevance) and the best
# sentence's, how much of the question its passage and all passages hold, how much of
# what the question names (people, places, numbers) its passage holds, and how far the
# best sentence stands above the next.
FEATURES = ("bias", "similarity", "named_found", "relevance", "passage_overlap", "context_overlap", "gap")
WEIGHTS = (-6.074, 5.586, 0.527, 3.681, 2.525, -1.751, 0.962)
MIN_CONFIDENCE = 0.40  # the tune part's most right decisions with at most 10 % of its answerable ones refused
# Questions asking for a quantity or a time are not answered by a sentence stating none
# (CLAP NQ tune: 21 such readings, 2 of them right; 16 were unanswerable questions).
# Who/where questions are not held to this: names are often untagged (1 in 3 right).
_MUST_STATE = ("quantity", "duration", "time")


def text_of(reading: Reading) -> str:
    """The answer text: the evidence sentences in document order, each cited."""
    if not reading.answers:
        return NOT_ANSWERED if reading.evidence else NOTHING_RELEVANT
    return " ".join(f"{s.sentence} [{s.number}]" for s in sorted(reading.evidence, key=lambda s: s.position))


class ExtractiveGenerator:
    """Answers with the passages' own sentences, each cited.

    With an embedder (the default engine passes MiniLM) a sentence is scored by its
    cosine similarity to the question (plus a little idf-weighted word overlap), which
    finds paraphrases; without one, by the overlap alone. The best sentence answers
    when the calibrated confidence (``WEIGHTS``) is at least ``min_confidence``: it
    rises with the similarity and overlap, with the question's named things (people,
    places, numbers) being found in the passage, and with a thing of the asked kind
    (who: a person or group; when: a date or event; how many: a quantity) that the
    question does not already name; it falls when the asked kind is missing. A second
    sentence (and a third) is added when it is nearly as close: what a question asks is
    often said over two or three sentences (CLAP NQ's annotators' answers: 52 words).
    Figures: README, bench/answers.py (own set and CLAP NQ held out).
    """

    name = "extractive"

    def __init__(
        self,
        max_sentences: int = 3,
        min_overlap: float = 0.3,
        embedder: Embedder | None = None,
        min_confidence: float = MIN_CONFIDENCE,
        second_within: float = 0.25,
    ) -> None:
        self.max_sentences = max_sentences
        self.min_overlap = min_overlap
        self.embedder = embedder
        self.min_confidence = min_confidence
        self.second_within = second_within
        # One reading per prompt: the gate and the answer share it (scored once).
        self._readings: OrderedDict[int, tuple[Prompt, Reading]] = OrderedDict()

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
        return (await self.read(prompt)).answers

    async def answer(self, prompt: Prompt) -> str:
        return text_of(await self.read(prompt))

    async def read(self, prompt: Prompt) -> Reading:
        """The reading of this prompt (computed once, then remembered for it)."""
        kept = self._readings.get(id(prompt))
        if kept is not None and kept[0] is prompt:
            return kept[1]
        reading = await self._read(prompt)
        self._readings[id(prompt)] = (prompt, reading)
        while len(self._readings) > 256:
            self._readings.popitem(last=False)
        return reading

    async def _read(self, prompt: Prompt) -> Reading:
        found = candidates(prompt, self.embedder.dimension if self.embedder is not None else None)
        if not found:
            return Reading()
        sentences_ = [(number, text) for number, text, _ in found]
        parts = _parts(prompt.question) if self.embedder is not None else [prompt.question]
        vectors = None
        asked: dict[str, np.ndarray] = {}
        if self.embedder is not None:
            # Sentence vectors stored at ingestion (int8, unit length) or, for chunks
            # stored without them, the model's float32 ones made now; float32 questions.
            # The question's exact vector is the one its retrieval used (kept: no second run).
            earlier = prompt.earlier
            questions = dict.fromkeys(q for p in parts for q in ((p, earlier, f"{earlier} {p}") if earlier else (p,)))
            missing = [i for i, (_, _, v) in enumerate(found) if v is None]
            made_at: dict[int, np.ndarray] = {}
            if missing:
                made = await self.embedder.embed([found[i][1] for i in missing], prompt.tenant, interactive=True)
                made_at = dict(zip(missing, made))
            vectors = np.stack([v if v is not None else made_at[i] for i, (_, _, v) in enumerate(found)])
            asked = {q: await self.embedder.embed_query(q, prompt.tenant, exact=True) for q in questions}
        chosen: dict[int, Scored] = {}
        best_of_parts: list[tuple[str, list[Scored]]] = []
        for part in parts:
            scored = self._scored(part, sentences_, vectors, asked, prompt.earlier)
            best_of_parts.append((part, scored))
            best = scored[0].score
            margin = self.second_within if len(parts) == 1 and self.embedder is not None else 0.0
            for s in [s for s in scored if s.score >= best - margin][: self.max_sentences]:
                chosen.setdefault(s.position, s)
        evidence = tuple(
            sorted(chosen.values(), key=lambda s: (-s.score, s.position))[: self.max_sentences * len(parts)]
        )
        if self.embedder is None:  # the lexical answerer: overlap alone decides
            confidence = min(scored[0].score for _, scored in best_of_parts)
            return Reading(evidence, confidence, confidence >= self.min_overlap)
        relevance = max((p.hit.similarity if p.hit.similarity is not None else p.hit.score) for p in prompt.passages)
        texts = {p.number: p.hit.text for p in prompt.passages}
        # The tagger reads only the best sentence of a question asking for a kind of thing
        # (4-5 ms a text on this CPU); what a question names is found by its form.
        kinds = [entities.asked_kind(part) for part, _ in best_of_parts]
        typed = [scored[0].sentence for (_, scored), kind in zip(best_of_parts, kinds) if kind is not None]
        tagged = iter(await asyncio.to_thread(entities.named, typed) if typed else [])
        confidences, short, kind, features = [], None, None, {}
        for (part, scored), kind in zip(best_of_parts, kinds):
            in_question = entities.question_names(part)
            in_sentence = next(tagged) if kind is not None else []
            answer = _short_answer(kind, part, scored[0].sentence, in_question, in_sentence)
            features = {
                "bias": 1.0,
                "similarity": scored[0].score,
                "overlap": _lexical_scores(part, [scored[0].sentence])[0],
                "named_found": _named_found(in_question, texts[scored[0].number]),
                "kind_found": float(answer is not None),
                "kind_missing": float(kind is not None and answer is None),
                "relevance": relevance,
                "passage_overlap": _share(part, texts[scored[0].number]),
                "context_overlap": _share(part, " ".join(texts.values())),
                "gap": scored[0].score - (scored[1].score if len(scored) > 1 else 0.0),
                "question_words": float(len(set(content_words(part)))),
            }
            features["blocked"] = float(kind in _MUST_STATE and answer is None)
            confidences.append(0.0 if features["blocked"] else confidence_of(features))
            short = answer if len(best_of_parts) == 1 else None
        confidence = min(confidences)
        return Reading(evidence, confidence, confidence >= self.min_confidence, short, kind, features)

    def _scored(
        self,
        question: str,
        sentences: list[tuple[int, str]],
        vectors: np.ndarray | None,
        asked: dict[str, np.ndarray],
        earlier: str = "",
    ) -> list[Scored]:
        """Every sentence scored for the question, best first.

        For a follow-up (``earlier``: the question it continues) a sentence scores by the
        follow-up, plus a fifth of its score for the earlier question (which says what
        "it" is); the best sentence scores at least what it scores for both together."""
        scores = self._scores(question, sentences, vectors, asked)
        if earlier:
            back = self._scores(earlier, sentences, vectors, asked)
            both = self._scores(f"{earlier} {question}", sentences, vectors, asked)
            ranked = [q + 0.2 * b for q, b in zip(scores, back)]
            best = max(range(len(ranked)), key=lambda i: ranked[i])
            lift = max(0.0, max(scores[best], both[best]) - ranked[best])
            scores = [r + lift for r in ranked]
        scored = [
            Scored(score, i, number, sentence) for i, ((number, sentence), score) in enumerate(zip(sentences, scores))
        ]
        return sorted(scored, key=lambda s: (-s.score, s.position))

    def _scores(
        self, question: str, sentences: list[tuple[int, str]], vectors: np.ndarray | None, asked: dict[str, np.ndarray]
    ) -> list[float]:
        lexical = _lexical_scores(question, [s for _, s in sentences])
        if self.embedder is None or vectors is None:
            return lexical
        wanted = asked[question]
        # cosine first; a little lexical overlap breaks near-ties toward the exact words
        return [float(v @ wanted) + 0.05 * lex for v, lex in zip(vectors, lexical)]


def confidence_of(features: dict[str, float]) -> float:
    """The calibrated probability that the evidence answers the question."""
    z = sum(w * features[name] for name, w in zip(FEATURES, WEIGHTS))
    return 1.0 / (1.0 + math.exp(-z))


def candidates(prompt: Prompt, dimension: int | None = None) -> list[tuple[int, str, np.ndarray | None]]:
    """The passages' sentences (passage number, sentence, vector if stored), once each:
    those stored with the chunk at ingestion (whole, vectors made then) where there are,
    else the passage's own (``sentences.passage_sentences``, the one splitter)."""
    found: list[tuple[int, str, np.ndarray | None]] = []
    for passage in prompt.passages:
        stored = sentences.decode(prompt.sentences.get(passage.hit.chunk_id), dimension) if dimension else None
        if stored is not None:
            found += [(passage.number, text, vector) for text, vector in zip(*stored)]
        else:
            found += [
                (passage.number, t, None)
                for t in sentences.passage_sentences(passage.hit.text, passage.hit.number == 0)
            ]
    return _distinct(found)


def _short_answer(
    kind: str | None,
    question: str,
    sentence: str,
    in_question: list[entities.Named],
    in_sentence: list[entities.Named],
) -> str | None:
    """The first thing of the asked kind in the sentence that the question does not name,
    trimmed of the question's own words at its edges."""
    if kind is None:
        return None
    labels = entities.KINDS[kind]
    asked_words = {w.lower() for w in re.findall(r"\w+", question)}
    named_in_question = {n.text.lower() for n in in_question}
    for strict in (True, False):  # tagged entities first, then untagged proper nouns
        for thing in in_sentence:
            if (thing.label in labels) if strict else (thing.label == "PROPN" and kind in ("person", "place")):
                words = thing.text.split()
                while words and words[-1].lower().strip(".,") in asked_words:
                    words.pop()
                while words and words[0].lower().strip(".,") in asked_words:
                    words.pop(0)
                text = " ".join(words).strip(" ,;")
                if text and text.lower() not in named_in_question and text.lower() not in question.lower():
                    return text
    if kind == "time":  # when: an event or a period the text names by a clause ("until the empire fell")
        clause = _TIME_CLAUSE.search(sentence)
        if clause and clause.group(0).lower() not in question.lower():
            return clause.group(0).strip()
    return None


_TIME_CLAUSE = re.compile(r"\b(until|after|before|during|since|following)\s+[^,.;:()]{3,80}", re.IGNORECASE)


def _share(question: str, text: str) -> float:
    """The share of the question's content words that ``text`` holds."""
    wanted = set(content_words(question))
    return len(wanted & set(content_words(text))) / len(wanted) if wanted else 1.0


def _named_found(in_question: list[entities.Named], passage: str) -> float:
    """The share of the question's named things (people, places, numbers, proper nouns)
    that its best passage holds; 1.0 when it names none."""
    if not in_question:
        return 1.0
    text = passage.lower()
    return sum(n.text.lower() in text for n in in_question) / len(in_question)


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


def _distinct(found: list[tuple[int, str, np.ndarray | None]]) -> list[tuple[int, str, np.ndarray | None]]:
    """Overlapping chunks repeat sentences, some cut at a chunk's edge: keep each once, whole."""
    texts = [s for _, s, _ in found]
    kept, seen = [], set()
    for number, sentence, vector in found:
        if sentence in seen or any(sentence != other and sentence in other for other in texts):
            continue
        seen.add(sentence)
        kept.append((number, sentence, vector))
    return kept
