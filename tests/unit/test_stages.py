"""The stages over ports alone: the in-memory store, the hashing embedder, the extractive answerer."""

from __future__ import annotations

import pytest

from ragline.adapters.embedders.hashing import HashingEmbedder
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.memory import MemoryStore
from ragline.core import generation, stages
from ragline.core.chunking import Chunker, regex_token_spans
from ragline.core.models import Document, new_query
from ragline.core.prompting import NOT_ANSWERED

BEES = "Honeybees perform the waggle dance. The dance tells nest mates how far away the flowers are."
TEA = "Black tea is fully oxidised. Green tea is steamed soon after picking."


@pytest.fixture
def parts():
    embedder = HashingEmbedder()
    return {
        "chunker": Chunker(regex_token_spans, size=16, overlap=4),
        "embedder": embedder,
        "store": MemoryStore(embedder.dimension),
    }


async def test_reingesting_a_document_keeps_one_copy_of_each_chunk_and_embeds_nothing(parts):
    first = await stages.ingest([Document(id="bees", text=BEES)], **parts)
    again = await stages.ingest([Document(id="bees", text=BEES)], **parts)
    assert first.chunks_written > 0 and again.chunks_written == 0 and again.unchanged_documents == 1
    assert await parts["store"].count("default") == first.chunks_written


async def test_a_shorter_new_version_removes_the_chunks_it_no_longer_has(parts):
    await stages.ingest([Document(id="d", text=BEES + " " + TEA)], **parts)
    report = await stages.ingest([Document(id="d", text=TEA)], **parts)
    assert report.chunks_deleted > 0
    chunks = await parts["store"].document_chunks("default", "d")
    assert " ".join(h.text for h in chunks) == TEA


async def test_retrieval_stays_in_the_callers_tenant(parts):
    await stages.ingest([Document(tenant="a", id="bees", text=BEES), Document(tenant="b", id="tea", text=TEA)], **parts)
    context = await stages.retrieve(
        new_query(text="waggle dance flowers", tenant="b", top_k=5), embedder=parts["embedder"], store=parts["store"]
    )
    assert {h.document_id for h in context.hits} == {"tea"}


async def test_an_answer_cites_the_passage_it_comes_from_or_says_it_does_not_know(parts):
    await stages.ingest([Document(id="bees", text=BEES), Document(id="tea", text=TEA)], **parts)
    answering = generation.Answering(ExtractiveGenerator(), ExtractiveGenerator(), min_relevance=0.0)

    async def ask(question: str):
        context = await stages.retrieve(
            new_query(text=question, top_k=3), embedder=parts["embedder"], store=parts["store"]
        )
        return await generation.generate(context, answering=answering)

    answer = await ask("How far away are the flowers, says the dance?")
    assert "flowers" in answer.text and answer.citations[0].document_id == "bees"
    refused = await ask("Who won the 1966 football world cup?")
    assert refused.text == NOT_ANSWERED and refused.refusal == "not_answered" and refused.citations == []
    assert refused.related and refused.related[0].text  # the passages it read, to read on


class Scripted:
    """Replies with a fixed text (the rewrite's validation is what is tested here)."""

    name = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list = []

    async def generate(self, prompt, max_tokens: int) -> str:
        self.prompts.append(prompt)
        return self.reply


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("Which port does Milvus listen on?", True),
        ('"Which port does Milvus listen on?"\nIt is a database.', True),
        ("Which port does it listen on?", False),  # nothing resolved
        ("Milvus is a vector database.", False),  # not the question asked
        ("", False),
    ],
)
async def test_an_llm_rewrite_of_a_follow_up_is_kept_only_when_it_resolves_the_reference(reply, kept):
    from ragline.core.generation import standalone
    from ragline.core.models import Query

    query = Query(text="and which port does it listen on?", follows="Which database stores the vectors? Milvus")
    generator = Scripted(reply)
    rewritten = await standalone(query, generator, timeout_s=1)
    assert "Follow-up: and which port" in generator.prompts[0].user_message()
    if kept:
        assert rewritten.text == "Which port does Milvus listen on?" and rewritten.follows is None
    else:
        assert rewritten == query
