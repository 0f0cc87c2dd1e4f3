"""Sentences and their vectors made at ingestion (sentences.py, stages.ingest)."""

from __future__ import annotations

import numpy as np

from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.memory import MemoryStore
from ragline.core import generation, sentences, stages
from ragline.core.chunking import Chunker, regex_token_spans
from ragline.core.models import Context, Document, new_query


def test_vectors_survive_encoding_within_a_hundredth_of_a_cosine():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(5, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts, decoded = sentences.decode(sentences.encode([f"s{i}" for i in range(5)], vectors), 384)
    assert texts == [f"s{i}" for i in range(5)]
    assert np.all(np.abs(np.sum(decoded * vectors, axis=1) - 1.0) < 0.01)


def test_damaged_or_foreign_encodings_are_ignored_not_fatal():
    blob = sentences.encode(["one two three four."], np.ones((1, 8), dtype=np.float32))
    assert sentences.decode(blob, 16) is None  # another model's dimension
    assert sentences.decode(blob[:-5], 8) is None
    assert sentences.decode("not json", 8) is None and sentences.decode(None, 8) is None


def test_a_sentence_cut_at_a_chunks_edge_is_taken_whole_from_the_document():
    document = "The first sentence is short. The second sentence runs across the edge of the chunk. Third."
    start = document.index("runs")
    end = document.index("edge") + len("edge")
    assert sentences.whole_edges(document, start, end) == ("The second sentence runs across the edge of the chunk.")
    assert sentences.whole_edges(document, 0, len(document)) == document


class Counting:
    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, 0
        self.semantic, self.dimension, self.tokenizer = inner.semantic, inner.dimension, None

    async def embed(self, texts, tenant="", *, interactive=False):
        self.texts += len(texts)
        return await self.inner.embed(texts, tenant, interactive=interactive)

    async def embed_query(self, text, tenant="", *, exact=False):
        return await self.inner.embed_query(text, tenant, exact=exact)


LIGHTHOUSE = (
    "The lighthouse stands on the northern cape and was built of granite blocks. Its keeper lived in the small "
    "house beside the tower for forty years, and he recorded every passing ship in a leather logbook. The lamp "
    "was first lit in 1852 and burned whale oil until the harbour board replaced it with an electric lamp."
)


async def test_answering_embeds_only_the_question_when_sentences_were_stored_at_ingestion(minilm):
    counting = Counting(minilm)
    store = MemoryStore(minilm.dimension)
    chunker = Chunker(regex_token_spans, size=24, overlap=4)  # chunks that cut sentences
    await stages.ingest(
        [Document(id="light", text=LIGHTHOUSE)], chunker=chunker, embedder=counting, store=store, sentence_vectors=True
    )
    question = "When was the lamp first lit?"
    context = await stages.retrieve(
        new_query(text=question, top_k=3, purpose="answer"), embedder=counting, store=store, exact=True
    )
    assert context.sentences  # the hits' sentences came with them
    answerer = ExtractiveGenerator(embedder=counting)
    before = counting.texts
    answer = await generation.generate(context, answering=generation.Answering(answerer, answerer, min_relevance=0.1))
    assert counting.texts == before  # no sentence embedded to answer
    assert "1852" in answer.text and answer.short_answer == "1852"
    # the evidence is the whole sentence, though the chunks cut it
    assert any(e.sentence.startswith("The lamp was first lit in 1852") for e in answer.evidence), answer.evidence
    assert answer.citations and answer.citations[0].document_id == "light"


async def test_without_stored_sentences_the_answer_embeds_them_and_reads_the_same(minilm):
    store = MemoryStore(minilm.dimension)
    chunker = Chunker(regex_token_spans, size=200, overlap=20)
    await stages.ingest([Document(id="light", text=LIGHTHOUSE)], chunker=chunker, embedder=minilm, store=store)
    context = await stages.retrieve(
        new_query(text="When was the lamp first lit?", top_k=3, purpose="answer"), embedder=minilm, store=store
    )
    assert context.sentences == {}
    answerer = ExtractiveGenerator(embedder=minilm)
    answer = await generation.generate(context, answering=generation.Answering(answerer, answerer, min_relevance=0.1))
    assert answer.short_answer == "1852"


def context_of(question: str, hits) -> Context:
    return Context(query=new_query(text=question), hits=hits)
