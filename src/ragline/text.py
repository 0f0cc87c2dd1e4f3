"""Text utilities shared by retrieval-free answering and groundedness: sentences and
content words (lower-cased, lightly stemmed, without stop words)."""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "after",
        "before",
        "than",
        "tell",
        "each",
        "other",
        "far",
        "away",
        "much",
        "many",
    ]
)


def _stem(word: str) -> str:
    """A light suffix strip, so cooled / cooling / cools all meet at cool."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """Lower-cased, lightly stemmed words minus stop words."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]


def split_sentences(text: str) -> list[str]:
    """Sentences and lines of four words or more (headings and fragments drop out)."""
    sentences = (s.strip().lstrip("#").strip() for s in _SENTENCE.split(text))
    return [s for s in sentences if len(s.split()) >= 4]


def overlap(question: str, text: str) -> float:
    """The share of the question's content words that appear in ``text``."""
    wanted = set(content_words(question))
    return len(wanted & set(content_words(text))) / len(wanted) if wanted else 0.0
