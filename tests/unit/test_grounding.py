"""Groundedness: every answer says which passage supports each sentence; invented ones are caught."""

from __future__ import annotations

import asyncio

from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.core import generation
from ragline.core.errors import DependencyUnavailable
from ragline.core.grounding import ground
from ragline.core.models import Context, Hit, Passage, new_query

BEES = "Honeybees perform the waggle dance. The dance tells nest mates how far away the flowers are."
PORT = "The ingestion service listens on port 8443 and stores documents for 14 days."


def hit(doc: str, text: str) -> Hit:
    return Hit(chunk_id=f"{doc}-0", document_id=doc, number=0, text=text, score=0.9, similarity=0.9, content_hash="h")


PASSAGES = (Passage(1, hit("bees", BEES)), Passage(2, hit("ops", PORT)))


def test_sentences_taken_from_a_passage_are_supported_by_it():
    [support] = ground("The dance tells nest mates how far away the flowers are [1].", PASSAGES)
    assert support.supported and support.score == 1.0 and support.document_id == "bees"


def test_a_planted_sentence_no_passage_supports_is_flagged():
    supports = ground("The ingestion service listens on port 8443. It was written by Ada Lovelace in Paris.", PASSAGES)
    assert [s.supported for s in supports] == [True, False]
    assert supports[0].document_id == "ops"


def test_a_changed_number_is_not_supported():
    [support] = ground("The ingestion service stores documents for 30 days.", PASSAGES)
    assert not support.supported


class Inventor:
    """A toy LLM that invents an unsupported sentence, or fails without a message."""

    name = "inventor"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    async def generate(self, prompt, max_tokens):
        if self.fail:
            raise DependencyUnavailable()
        return "The dance tells nest mates how far away the flowers are [1]. Bees were first kept on Mars in 1802."

    async def stream(self, prompt, max_tokens):
        yield await self.generate(prompt, max_tokens)

    def observe_batches(self, observe):
        return None

    async def ping(self):
        return None

    async def close(self):
        return None


def _context(question: str) -> Context:
    return Context(query=new_query(text=question), hits=[p.hit for p in PASSAGES])


def test_an_ungrounded_llm_answer_is_replaced_by_the_extractive_one_and_says_why():
    answering = generation.Answering(Inventor(), ExtractiveGenerator(), min_relevance=0.0)
    answer = asyncio.run(
        generation.generate(_context("How far away are the flowers, says the dance?"), answering=answering)
    )
    assert answer.model == "extractive" and answer.degraded and answer.grounded is True
    assert "not grounded" in answer.degraded_reason and "Mars" in answer.degraded_reason
    assert "Mars" not in answer.text and answer.citations[0].document_id == "bees"


def test_an_ungrounded_llm_answer_can_be_returned_flagged_instead():
    answering = generation.Answering(Inventor(), ExtractiveGenerator(), min_relevance=0.0, replace_ungrounded=False)
    answer = asyncio.run(
        generation.generate(_context("How far away are the flowers, says the dance?"), answering=answering)
    )
    assert answer.model == "inventor" and answer.grounded is False and not answer.degraded
    assert [s.supported for s in answer.grounding] == [True, False]


def test_a_failure_without_a_message_still_gives_a_reason():
    answering = generation.Answering(Inventor(fail=True), ExtractiveGenerator(), min_relevance=0.0)
    answer = asyncio.run(
        generation.generate(_context("How far away are the flowers, says the dance?"), answering=answering)
    )
    assert answer.degraded and "DependencyUnavailable: no detail given" in answer.degraded_reason
    assert generation.describe(TimeoutError(), 30) == "TimeoutError: LLM timed out after 30 s"
