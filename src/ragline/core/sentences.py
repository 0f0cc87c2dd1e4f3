"""A chunk's sentences with their vectors, made once at ingestion (issue 28).

The extractive answerer scores every sentence of the passages it reads against the
question. It used to embed them on each answer (6x a search's cost on long
paragraphs); now ingestion splits each chunk into the answer path's sentence candidates
(``passage_sentences``: the one splitter), takes a sentence cut at the chunk's edge
whole from the document, embeds them, and stores them with the chunk
(``encode``: texts and int8 vectors, one scale each, as a compact string). Answering
then embeds only the question; a chunk stored without them (an older collection, a
store without the field) falls back to embedding at answer time.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence

import numpy as np

from ragline.core.text import split_sentences

VERSION = 1
MAX_CHARS = 60_000  # what the store's field holds; a chunk whose index is longer keeps none
_EDGE_CHARS = 600  # how far past a chunk's edge its cut sentence is looked for
# Footnote and reference markers that encyclopedia text carries: "[note 7]", "[12]", "[a]".
_MARKERS = re.compile(r"\s*\[(?:\d{1,3}|[a-z]|note \d+|citation needed|nb \d+)\]", re.I)
_HEADING = re.compile(r"^#{1,6}\s+(.*\S)\s*$")
_ENDS = re.compile(r"[.!?:;\"')\]]$")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s)|\n\s*\n")


def clean(sentence: str) -> str:
    """The sentence without footnote markers."""
    return " ".join(_MARKERS.sub("", sentence).split())


def passage_sentences(text: str, first_chunk: bool) -> list[str]:
    """The answer candidates of a passage: its sentences, without footnote markers, its
    headings or a document's title (evidence for nothing on their own)."""
    lines = text.splitlines()
    headings = {m.group(1) for line in lines if (m := _HEADING.match(line.strip()))}
    if first_chunk and len(lines) > 1 and not lines[1].strip() and not _ENDS.search(lines[0].strip()):
        headings.add(lines[0].strip())
    return [clean(s) for s in split_sentences(text) if s not in headings]


def whole_edges(document: str, start: int, end: int) -> str:
    """``document[start:end]`` (a chunk) extended to whole sentences at both edges: back
    to the end of the sentence before it, on to the end of the sentence it cuts."""
    before = document[max(0, start - _EDGE_CHARS) : start]
    if start > 0 and before.strip() and not _ends_sentence(before):
        ends = list(_SENTENCE_END.finditer(before))
        if ends:
            start = start - len(before) + ends[-1].end()
        elif start <= _EDGE_CHARS:
            start = 0
    after = document[end : end + _EDGE_CHARS]
    if end < len(document) and after.strip() and not _ends_sentence(document[start:end]):
        match = _SENTENCE_END.search(after)
        end = end + (match.end() if match else 0)
    return document[start:end].strip()


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip()
    return not stripped or bool(re.search(r"[.!?][\"')\]]?$", stripped)) or text.endswith("\n\n")


def chunk_spans(document: str, chunk_texts: Sequence[str]) -> list[tuple[int, int] | None]:
    """Where each chunk (a stripped slice of the document, in order) lies in it."""
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for text in chunk_texts:
        at = document.find(text, cursor)
        if at < 0:
            at = document.find(text)
        spans.append((at, at + len(text)) if at >= 0 else None)
        if at >= 0:
            cursor = at + 1
    return spans


def encode(sentences: Sequence[str], vectors: np.ndarray) -> str | None:
    """Sentences and their vectors as one string (int8, a scale per vector); None when
    there are none or it would not fit the store's field."""
    if not sentences:
        return None
    matrix = np.asarray(vectors, dtype=np.float32)
    scales = np.maximum(np.abs(matrix).max(axis=1), 1e-12) / 127.0
    quantised = np.clip(np.rint(matrix / scales[:, None]), -127, 127).astype(np.int8)
    blob = json.dumps(
        {
            "v": VERSION,
            "d": matrix.shape[1],
            "t": list(sentences),
            "s": [float(f"{s:.6g}") for s in scales],
            "q": base64.b64encode(quantised.tobytes()).decode(),
        },
        separators=(",", ":"),
    )
    return blob if len(blob) <= MAX_CHARS else None


def decode(blob: str | None, dimension: int) -> tuple[list[str], np.ndarray] | None:
    """``encode``'s sentences and float32 vectors (unit length); None when absent, of
    another version or dimension, or damaged."""
    if not blob:
        return None
    try:
        data = json.loads(blob)
        if data.get("v") != VERSION or data.get("d") != dimension:
            return None
        texts = [str(t) for t in data["t"]]
        quantised = np.frombuffer(base64.b64decode(data["q"]), dtype=np.int8).reshape(len(texts), dimension)
        matrix = quantised.astype(np.float32) * np.asarray(data["s"], dtype=np.float32)[:, None]
    except (ValueError, KeyError, TypeError):
        return None
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return texts, matrix / np.clip(norms, 1e-12, None)
