"""Repetition loops: small models (SmolLM2-135M) repeat a sentence until max_tokens.

``LoopGuard`` watches text as it streams and says when it has started to repeat
itself: a sentence of 12 characters or more that was already said, or the same
8-word run three times. The generator then ends the stream there and keeps the text
before the repetition.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDS = re.compile(r"\w+")
_RUN = 8


class LoopGuard:
    def __init__(self) -> None:
        self.text = ""

    def feed(self, piece: str) -> bool:
        """Add ``piece``; True once the text repeats itself (stop generating)."""
        self.text += piece
        return self.looping()

    def looping(self) -> bool:
        sentences = [s.strip().lower() for s in _SENTENCE_END.split(self.text)]
        done = [s for s in sentences[:-1] if len(s) >= 12]  # the last one may be unfinished
        if any(s in earlier for i, s in enumerate(done) for earlier in done[:i]):
            return True
        words = _WORDS.findall(self.text.lower())
        runs = [" ".join(words[i : i + _RUN]) for i in range(len(words) - _RUN + 1)]
        return any(runs.count(run) >= 3 for run in set(runs[-_RUN:]))

    def kept(self) -> str:
        """The text up to the first repeated sentence."""
        seen: set[str] = set()
        kept: list[str] = []
        for sentence in _SENTENCE_END.split(self.text):
            key = sentence.strip().lower()
            if len(key) >= 12 and any(key in earlier for earlier in seen):
                break
            seen.add(key)
            kept.append(sentence)
        return " ".join(kept).strip()
