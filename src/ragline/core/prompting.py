"""Grounded prompting, a domain rule: numbered passages in, citations like [1] out.

The prompt asks the model to answer only from the passages, to cite them, and to
say it does not know when they lack the answer. Passages are fitted to the model's
window by a token budget; citations in the answer are mapped back to chunk and
document ids. The adapters render a ``Prompt`` for their API (generators/templates.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ragline.core.models import SYSTEM, Citation, Hit, Passage, Prompt

NOT_IN_SOURCES = "I don't know: the sources do not contain the answer to this question."
# The two refusals ragline gives itself (generation.generate decides, in one place):
NOTHING_RELEVANT = "I don't know: nothing in the sources is about this question."
NOT_ANSWERED = "I don't know: the sources have related passages (see related), but none of them answers this question."

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_IDK = re.compile(
    r"\b(i (do not|don't) know|not (mentioned|stated|provided|found) in the (passages|sources|context))\b", re.I
)
_CHARS_PER_TOKEN = 3.5  # conservative for English BPE vocabularies


def estimate_tokens(text: str) -> int:
    return int(len(text) / _CHARS_PER_TOKEN) + 1


def build_prompt(question: str, hits: Sequence[Hit], budget_tokens: int) -> Prompt:
    """Number the best hits, keeping as many whole passages as the budget allows."""
    used = estimate_tokens(SYSTEM) + estimate_tokens(question) + 32
    passages: list[Passage] = []
    for hit in hits:
        cost = estimate_tokens(hit.text) + 4
        if passages and used + cost > budget_tokens:
            break
        passages.append(Passage(len(passages) + 1, _clip(hit, budget_tokens - used)))
        used += cost
    return Prompt(question, tuple(passages))


def _clip(hit: Hit, tokens_left: int) -> Hit:
    """The first passage always goes in, cut to what fits."""
    max_chars = max(200, int(tokens_left * _CHARS_PER_TOKEN))
    return hit if len(hit.text) <= max_chars else hit.model_copy(update={"text": hit.text[:max_chars]})


def cited_numbers(text: str) -> list[int]:
    """Passage numbers cited as [n] or [n, m], in order of first appearance."""
    seen: list[int] = []
    for group in _CITATION.findall(text):
        for number in (int(n) for n in group.split(",")):
            if number not in seen:
                seen.append(number)
    return seen


def says_it_does_not_know(text: str) -> bool:
    return bool(_IDK.search(text))


def citations_for(text: str, prompt: Prompt) -> list[Citation]:
    """The passages an answer cites, as chunk and document ids; unknown numbers are dropped."""
    by_number = {p.number: p.hit for p in prompt.passages}
    return [
        Citation(number=n, chunk_id=by_number[n].chunk_id, document_id=by_number[n].document_id)
        for n in cited_numbers(text)
        if n in by_number
    ]
