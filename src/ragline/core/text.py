"""Text utilities shared by retrieval-free answering and groundedness: sentences and
content words (lower-cased, lightly stemmed, without stop words)."""

from __future__ import annotations

import re
from collections.abc import Iterator

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
    """Sentences of four words or more (headings and fragments drop out), found by a real
    segmenter (sentencex: abbreviations, decimals and initials do not end a sentence)
    within paragraphs whose hard line wraps are joined first. A Markdown heading or list
    item stays a unit of its own; a table row becomes one sentence, its cells named by
    the header row (``fruit: mango; price: 3.2``)."""
    from sentencex import segment

    sentences: list[str] = []
    header: list[str] | None = None
    for paragraph in _paragraphs(text):
        if _ROW.search(paragraph):
            cells = [c.strip() for c in paragraph.strip().strip("|").split("|")]
            if header is None:
                header, pieces = cells, ["; ".join(c for c in cells if c)]
            elif len(cells) == len(header) and any(header):
                pieces = ["; ".join(f"{h}: {c}" if h else c for h, c in zip(header, cells) if c)]
            else:
                pieces = ["; ".join(c for c in cells if c)]
        else:
            header = None
            if _HEADED_ROW.match(paragraph):
                pieces = [paragraph]
            elif _STRUCTURAL.match(paragraph):
                pieces = [_STRUCTURAL.sub("", paragraph).strip()]
            else:
                pieces = [s.strip() for s in segment("en", paragraph)]
        sentences += [p for p in pieces if len(p.split()) >= 4]
    return sentences


_STRUCTURAL = re.compile(r"^(#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s)")
_ROW = re.compile(r"^\||\s\|\s")  # a Markdown table row, or cells a PDF's layout kept apart
# a table row written with its headers by ingest/tables.py: ``Region: North; Revenue: 4.2``
_HEADED_ROW = re.compile(r"^[^:;\n]{1,80}: [^;\n]*(?:; [^:;\n]{1,80}: [^;\n]*)+$")
_TABLE_RULE = re.compile(r"^\|?[\s:|-]*-[\s:|-]*\|?$")  # | --- | --- |
_COMMENT = re.compile(r"^<!--.*-->$")


def _paragraphs(text: str) -> Iterator[str]:
    """Blank-line separated paragraphs with their line wraps joined; structural lines
    (headings, list items, table rows) are paragraphs of their own."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _STRUCTURAL.match(line) or _ROW.search(line) or _HEADED_ROW.match(line) or _COMMENT.match(line):
            if lines:
                yield " ".join(lines)
                lines = []
            if line and not _TABLE_RULE.match(line) and not _COMMENT.match(line):
                yield line
        else:
            lines.append(line)
    if lines:
        yield " ".join(lines)
