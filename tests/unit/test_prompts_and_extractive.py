from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.generators.templates import render
from ragline.core.models import Hit
from ragline.core.prompting import (
    NOT_ANSWERED,
    NOT_IN_SOURCES,
    build_prompt,
    citations_for,
    cited_numbers,
    says_it_does_not_know,
)


def hit(n: int, text: str, doc: str | None = None) -> Hit:
    return Hit(chunk_id=f"c{n}", document_id=doc or f"d{n}", number=0, text=text, score=0.9, content_hash="h")


BEES = hit(1, "Foragers perform the waggle dance. The duration of the waggle run encodes the distance to the food.")
TEA = hit(2, "Black tea is fully oxidised. Green tea is steamed soon after picking.")


def test_passages_are_numbered_in_rank_order_inside_the_prompt():
    prompt = build_prompt("How far?", [BEES, TEA], budget_tokens=1000)
    message = prompt.user_message()
    assert message.index("[1] Foragers") < message.index("[2] Black tea") < message.index("Question: How far?")
    assert "I don't know" in prompt.system and "[1]" in prompt.system


def test_the_token_budget_drops_passages_that_do_not_fit_but_keeps_the_first():
    long_hits = [hit(i, "word " * 400) for i in range(5)]
    prompt = build_prompt("q", long_hits, budget_tokens=700)
    assert 1 <= len(prompt.passages) < 5
    tiny = build_prompt("q", long_hits, budget_tokens=50)
    assert len(tiny.passages) == 1 and len(tiny.passages[0].hit.text) < 2000


def test_citations_are_parsed_and_mapped_to_chunks_and_documents():
    prompt = build_prompt("q", [BEES, TEA], 1000)
    assert cited_numbers("A [2], B [1, 2] and C [9].") == [2, 1, 9]
    citations = citations_for("A [2], B [1, 2] and C [9].", prompt)
    assert [(c.number, c.chunk_id, c.document_id) for c in citations] == [(2, "c2", "d2"), (1, "c1", "d1")]


def test_chatml_rendering_ends_by_opening_the_assistant_turn():
    text = render(build_prompt("q", [BEES], 1000), "chatml")
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")


def test_i_dont_know_is_recognised():
    assert says_it_does_not_know("I don't know.") and says_it_does_not_know(NOT_IN_SOURCES)
    assert not says_it_does_not_know("The distance is encoded by the waggle run [1].")


async def test_extractive_answers_with_the_best_sentence_and_cites_it():
    answer = await ExtractiveGenerator().answer(build_prompt("What encodes the distance to food?", [TEA, BEES], 1000))
    assert answer == "The duration of the waggle run encodes the distance to the food. [2]"


async def test_extractive_says_not_in_sources_when_no_sentence_matches():
    prompt = build_prompt("Who won the 2018 FIFA World Cup?", [BEES, TEA], 1000)
    assert await ExtractiveGenerator().answer(prompt) == NOT_ANSWERED  # read, but nothing answers it
    assert not await ExtractiveGenerator().supported(prompt)


async def test_with_an_embedder_a_paraphrase_finds_its_sentence_and_a_missing_quantity_is_refused(minilm):
    bikes = "Staff park in the underground garage. Bicycles go in the racks by the north entrance."
    parking = Hit(chunk_id="p", document_id="parking", number=0, text=bikes, score=1, content_hash="h")
    answerer = ExtractiveGenerator(embedder=minilm)
    assert "north entrance" in await answerer.answer(build_prompt("Where should I leave my bike?", [parking], 1000))
    spaces = build_prompt("How many parking spaces does the garage have?", [parking], 1000)
    assert await answerer.answer(spaces) == NOT_ANSWERED  # the garage sentence states no number
