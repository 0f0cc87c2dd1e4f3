"""The answer path's reading: short answers typed by a real tagger, one scoring per
prompt, refusals that say why, clean sentences (MiniLM and spaCy's small English model)."""

from __future__ import annotations

import pytest

from ragline.adapters.generators.extractive import ExtractiveGenerator, candidates
from ragline.core import entities, generation
from ragline.core.models import Context, Hit, new_query
from ragline.core.prompting import NOT_ANSWERED, NOTHING_RELEVANT, build_prompt

NORMANS = (
    "The Normans were descended from Norse raiders. In 911 their leader Rollo swore fealty to King Charles III "
    "of West Francia. Guy de Lusignan ruled Cyprus from 1192 until his death in 1194. "
    "The Byzantine governors held Bari until the empire fell."
)


def hit(text: str, n: int = 1, similarity: float = 0.6, number: int = 0) -> Hit:
    return Hit(chunk_id=f"c{n}", document_id=f"d{n}", number=number, text=text, score=similarity,
               similarity=similarity, content_hash="h")  # fmt: skip


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Who ruled Cyprus?", "person"),
        ("When did the empire fall?", "time"),
        ("In which year was it built?", "time"),
        ("How many ships sailed?", "quantity"),
        ("Where did Rollo settle?", "place"),
        ("What does the prime minister of France do?", None),
        ("Why do bees dance?", None),
    ],
)
def test_the_asked_kind_comes_from_the_question_word(question, kind):
    assert entities.asked_kind(question) == kind


def test_the_tagger_finds_single_names_and_groups_that_capital_letter_rules_missed():
    found = entities.named(["The treaty was signed by Oursel.", "The Welsh fought the dukes in 1282."])
    assert any("Oursel" in n.text for n in found[0])  # a single surname: a name, tagged or PROPN
    assert {n.text for n in found[1]} >= {"Welsh", "1282"}


@pytest.mark.parametrize(
    ("question", "short"),
    [
        ("Who did Rollo swear fealty to?", "Charles III"),  # not Rollo: the question names him
        ("When did Guy de Lusignan start to rule Cyprus?", "1192"),
        ("When did the Byzantine governors hold Bari?", "until the empire fell"),  # a period, no date
    ],
)
async def test_a_typed_question_gets_its_short_answer_with_the_sentence_as_evidence(minilm, question, short):
    reading = await ExtractiveGenerator(embedder=minilm).read(build_prompt(question, [hit(NORMANS)], 1000))
    assert reading.answers and reading.short is not None and short in reading.short
    assert short in reading.evidence[0].sentence and 0.0 <= reading.confidence <= 1.0


async def test_a_description_question_gets_no_short_answer(minilm):
    prompt = build_prompt("What were the Normans descended from?", [hit(NORMANS)], 1000)
    reading = await ExtractiveGenerator(embedder=minilm).read(prompt)
    assert reading.answers and reading.short is None and "Norse raiders" in reading.evidence[0].sentence


RAIDERS = "Rollo led the Norse raiders up the Seine. The raiders settled and took up the French language."


async def test_a_quantity_question_is_refused_when_no_sentence_states_one(minilm):
    prompt = build_prompt("How many raiders did Rollo lead?", [hit(RAIDERS, similarity=0.9)], 1000)
    reading = await ExtractiveGenerator(embedder=minilm).read(prompt)
    assert not reading.answers and reading.features["blocked"] == 1.0


def test_sentences_come_without_footnote_markers_or_the_documents_title():
    text = "Normans in Sicily\n\nThe Normans took Sicily in 1091.[12] Roger I ruled it as count.[note 7]"
    sentences = [s for _, s, _ in candidates(build_prompt("q", [hit(text)], 1000))]
    assert sentences == ["The Normans took Sicily in 1091.", "Roger I ruled it as count."]


class Counting:
    """The embedder, counting how many sentence batches it embeds."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, 0
        self.semantic, self.dimension = inner.semantic, inner.dimension

    async def embed(self, texts, tenant="", *, interactive=False):
        self.batches += 1
        return await self.inner.embed(texts, tenant, interactive=interactive)

    async def embed_query(self, text, tenant="", *, exact=False):
        return await self.inner.embed_query(text, tenant, exact=exact)


def context_for(question: str, hits: list[Hit]) -> Context:
    return Context(query=new_query(text=question), hits=hits)


async def test_the_default_path_reads_each_prompt_once_and_the_answer_carries_the_reading(minilm):
    counting = Counting(minilm)
    answerer = ExtractiveGenerator(embedder=counting)
    answering = generation.Answering(answerer, answerer, min_relevance=0.2)
    answer = await generation.generate(
        context_for("Who did Rollo swear fealty to?", [hit(NORMANS)]), answering=answering
    )
    assert counting.batches == 1  # the gate and the answer share one reading
    assert answer.answers_question and answer.short_answer and "Charles III" in answer.short_answer
    assert answer.evidence and answer.evidence[0].document_id == "d1" and answer.citations[0].number == 1
    assert answer.refusal is None and answer.grounded


async def test_a_refusal_says_whether_nothing_was_relevant_or_what_was_read(minilm):
    answerer = ExtractiveGenerator(embedder=minilm)
    answering = generation.Answering(answerer, answerer, min_relevance=0.3)
    far = await generation.generate(
        context_for("Who won the 1966 world cup?", [hit(NORMANS, similarity=0.1)]), answering=answering
    )
    assert far.text == NOTHING_RELEVANT and far.refusal == "nothing_relevant" and far.related == []
    near = await generation.generate(
        context_for("How many raiders did Rollo lead?", [hit(RAIDERS, similarity=0.7)]),
        answering=answering,
    )
    assert near.text == NOT_ANSWERED and near.refusal == "not_answered" and near.citations == []
    assert [r.document_id for r in near.related] == ["d1"] and near.related[0].text == RAIDERS
    assert near.answers_question is False and near.confidence is not None
