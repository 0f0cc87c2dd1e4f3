from ragline.core.chunking import Chunker, regex_token_spans, tokenizer_token_spans


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def test_short_text_is_one_chunk():
    assert Chunker(regex_token_spans, size=10, overlap=2).split("a b c") == ["a b c"]


def test_blank_text_has_no_chunks():
    assert Chunker(regex_token_spans, size=10, overlap=2).split(" \n\t ") == []


def test_chunks_hold_at_most_size_tokens_and_overlap_by_overlap():
    chunks = Chunker(regex_token_spans, size=10, overlap=3).split(words(25))
    assert [len(c.split()) for c in chunks] == [10, 10, 10, 4]  # starts at 0, 7, 14, 21
    assert chunks[0].split()[-3:] == chunks[1].split()[:3]


def test_every_token_lands_in_some_chunk():
    text = words(1000)
    chunks = Chunker(regex_token_spans, size=50, overlap=10).split(text)
    assert set(" ".join(chunks).split()) == set(text.split())


def test_chunking_is_deterministic():
    chunker = Chunker(regex_token_spans, size=20, overlap=5)
    assert chunker.split(words(300)) == chunker.split(words(300))


def test_a_text_larger_than_one_block_chunks_seamlessly():
    text = words(40_000)  # about 280 KB: several tokenization blocks
    chunks = Chunker(regex_token_spans, size=100, overlap=0).split(text)
    assert " ".join(chunks) == text


def test_minilm_chunks_fit_the_models_window(minilm):
    chunker = Chunker(tokenizer_token_spans(minilm.tokenizer), size=200, overlap=40)
    text = "Honeybees communicate the distance to flowers by dancing. " * 200
    for chunk in chunker.split(text):
        # +2 for [CLS] and [SEP]; the model's window is 256
        assert len(minilm.tokenizer.encode(chunk).ids) <= 256
        assert not chunk.startswith(("##", "ees"))


def test_overlap_must_be_smaller_than_size():
    import pytest

    with pytest.raises(ValueError):
        Chunker(regex_token_spans, size=10, overlap=10)


def test_chunking_many_texts_at_once_gives_what_each_gives_alone(minilm):
    chunker = Chunker(tokenizer_token_spans(minilm.tokenizer), size=50, overlap=10)
    words = "Honeybees dance to tell nest mates where the flowers are, and how far. "
    texts = ["", "   ", "one short line", words * 20, words * 1200, "naïve café résumé " * 40]
    assert len(texts[4]) > 64_000  # one text larger than a block: tokenised block by block
    assert chunker.split_many(texts) == [chunker.split(t) for t in texts]
    regex = Chunker(regex_token_spans, size=50, overlap=10)  # no batch tokenizer: the same
    assert regex.split_many(texts) == [regex.split(t) for t in texts]


def test_windows_by_token_index_are_the_block_loops_windows():
    """split_many's fast path (a text's tokens at hand: windows by index) yields what the
    block-by-block loop yields, for every size/overlap and length, on seeded random text."""
    import random

    rng = random.Random(3)
    words = ["alpha", "beta", "gamma,", "delta.", "e", "x-ray", "1.5"]
    for _ in range(1500):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 700)))
        size = rng.randint(2, 60)
        chunker = Chunker(regex_token_spans, size, rng.randint(0, size - 1))
        assert list(chunker._windows(text, regex_token_spans(text))) == list(chunker._windows(text)), (size, text[:80])
