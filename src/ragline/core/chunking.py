"""Token-based chunking with overlap, in bounded memory.

Windows are counted in the embedding model's own tokens, so a chunk of ``size``
tokens always fits the model's window. Text is tokenized block by block and
windows are emitted as they fill, so a large document never holds all its token
offsets at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

TokenSpans = Callable[[str], list[tuple[int, int]]]

_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_BLOCK_CHARS = 64_000


def regex_token_spans(text: str) -> list[tuple[int, int]]:
    """Words and punctuation marks: a model-free stand-in for a subword tokenizer."""
    return [m.span() for m in _WORDISH.finditer(text)]


class TokenizerSpans:
    """Character spans of a Hugging Face tokenizer's tokens, without special tokens;
    ``many`` tokenises several texts in one call (in parallel, in Rust)."""

    def __init__(self, tokenizer) -> None:  # tokenizers.Tokenizer
        self.tokenizer = _without_truncation(tokenizer)

    def __call__(self, text: str) -> list[tuple[int, int]]:
        # encode_batch releases the GIL while it tokenises (encode does not): a large
        # upload being chunked on a worker thread no longer stalls the event loop.
        return list(self.tokenizer.encode_batch([text], add_special_tokens=False)[0].offsets)

    def many(self, texts: list[str]) -> list[list[tuple[int, int]]]:
        return [e.offsets for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


def tokenizer_token_spans(tokenizer) -> TokenizerSpans:
    return TokenizerSpans(tokenizer)


def _without_truncation(tokenizer):
    from tokenizers import Tokenizer

    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


class Chunker:
    def __init__(self, token_spans: TokenSpans, size: int = 200, overlap: int = 40) -> None:
        if not 0 <= overlap < size:
            raise ValueError(f"overlap ({overlap}) must be in [0, size={size})")
        self.token_spans = token_spans
        self.size = size
        self.overlap = overlap

    def split(self, text: str) -> list[str]:
        """The chunk texts of ``text``, in order; whitespace-only text has none."""
        return [piece for _, piece in self._pieces(text)]

    def split_many(self, texts: list[str]) -> list[list[str]]:
        """``split`` of each text; texts of one block are tokenised in one call when the
        token counter can (measured on SciFact: 1.3 -> 0.2 ms per abstract)."""
        many = getattr(self.token_spans, "many", None)
        short = [i for i, t in enumerate(texts) if len(t) <= _BLOCK_CHARS]
        spans: dict[int, list[tuple[int, int]]] = {}
        if many is not None and short:
            spans = dict(zip(short, many([texts[i] for i in short])))
        return [[piece for _, piece in self._pieces(text, spans.get(i))] for i, text in enumerate(texts)]

    def _pieces(self, text: str, spans: list[tuple[int, int]] | None = None) -> list[tuple[int, str]]:
        return [(start, piece) for start, end in self._windows(text, spans) if (piece := text[start:end].strip())]

    def _windows(self, text: str, spans: list[tuple[int, int]] | None = None) -> Iterator[tuple[int, int]]:
        if spans is not None:  # the whole text's tokens at hand: windows by index, nothing copied
            yield from self._indexed_windows(text, spans)
            return
        pending: list[tuple[int, int]] = []
        emitted = False
        blocks = [(0, spans)] if spans is not None else ((o, self.token_spans(b)) for o, b in _blocks(text))
        for offset, block_spans in blocks:
            pending.extend((offset + s, offset + e) for s, e in block_spans)
            while len(pending) >= self.size:
                yield _word_start(text, pending[0][0]), pending[self.size - 1][1]
                emitted = True
                pending = pending[self.size - self.overlap :]
        if pending and (not emitted or len(pending) > self.overlap):
            yield _word_start(text, pending[0][0]), pending[-1][1]

    def _indexed_windows(self, text: str, spans: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
        """What the block-by-block loop yields for one block, by token index."""
        n, step, first = len(spans), self.size - self.overlap, 0
        while n - first >= self.size:
            yield _word_start(text, spans[first][0]), spans[first + self.size - 1][1]
            first += step
        left = n - first
        if left and (first == 0 or left > self.overlap):
            yield _word_start(text, spans[first][0]), spans[-1][1]


def _blocks(text: str) -> Iterator[tuple[int, str]]:
    """Slices of about ``_BLOCK_CHARS`` that end on whitespace, so no word is cut."""
    start = 0
    while start < len(text):
        end = min(start + _BLOCK_CHARS, len(text))
        if end < len(text):
            cut = text.rfind(" ", start, end)
            cut = max(cut, text.rfind("\n", start, end))
            end = cut + 1 if cut > start else end
        yield start, text[start:end]
        start = end


def _word_start(text: str, index: int) -> int:
    """Move back to the start of the word, so an overlap never begins mid-word."""
    floor = max(0, index - 40)
    while index > floor and text[index - 1].isalnum():
        index -= 1
    return index
