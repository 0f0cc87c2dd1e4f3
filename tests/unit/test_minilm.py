"""The onnxruntime MiniLM must give sentence-transformers' vectors.

tests/data/minilm_reference.npz holds the vectors sentence-transformers itself made
for every sample-corpus document and chunk and a few queries
(scripts/make_reference_vectors.py).
"""

from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).parents[1] / "data" / "minilm_reference.npz"


async def test_vectors_match_sentence_transformers_on_the_sample_corpus(minilm):
    reference = np.load(REFERENCE)
    ours = await minilm.embed(list(reference["texts"]))
    cosines = (ours * reference["vectors"]).sum(axis=1)
    assert len(cosines) >= 20
    assert cosines.min() >= 0.99, f"worst text: {reference['texts'][cosines.argmin()][:80]!r}"


async def test_vectors_are_384_dimensional_and_normalized(minilm):
    vectors = await minilm.embed(["a", "a much longer sentence about honeybees"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_tokenizer_truncates_at_256_not_the_shipped_128(minilm):
    assert len(minilm.tokenizer.encode("word " * 1000).ids) == 256


async def test_batching_does_not_change_vectors(minilm):
    texts = ["short", "a somewhat longer text " * 20, "medium length text here"]
    together = await minilm.embed(texts)
    alone = np.vstack([await minilm.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


async def test_related_texts_are_closer_than_unrelated(minilm):
    q, near, far = await minilm.embed(
        [
            "How do bees find flowers?",
            "Honeybee foragers dance to show where nectar is.",
            "Volcanic eruptions can cool the climate.",
        ]
    )
    assert q @ near > q @ far


async def test_a_question_embeds_on_its_own_int8_lane_close_to_the_float32_vector(minilm):
    question = "How do honeybees tell each other where the flowers are?"
    alone = await minilm.embed_query(question)
    batched = (await minilm.embed([question, "an unrelated longer passage about tea and its oxidation"]))[0]
    assert minilm.query_precision == "int8"
    assert alone.shape == (384,) and abs(np.linalg.norm(alone) - 1) < 1e-5
    assert 0.98 <= float(alone @ batched) < 0.99999  # int8, not the float32 graph again
    # what an extractive answer ranks (sentences and their question) stays float32
    ranked = await minilm.embed([question, "an unrelated longer passage about tea"], interactive=True)
    assert np.allclose(ranked[0], batched, atol=1e-5)


async def test_int8_questions_stay_close_to_sentence_transformers_vectors(minilm):
    reference = np.load(REFERENCE)
    texts = list(reference["texts"])
    ours = np.stack([await minilm.embed_query(t, "reference") for t in texts])
    cosines = (ours * reference["vectors"]).sum(axis=1)
    assert cosines.min() >= 0.98, f"worst text: {texts[cosines.argmin()][:80]!r}"


async def test_float32_questions_are_the_documents_vectors():
    from ragline.adapters.embedders.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder(threads=1, query_precision="float32")
    try:
        question = "How do honeybees tell each other where the flowers are?"
        alone = await embedder.embed_query(question)
        batched = (await embedder.embed([question, "an unrelated longer passage about tea"]))[0]
        assert embedder.query_precision == "float32" and np.allclose(alone, batched, atol=1e-5)
    finally:
        await embedder.close()


def test_the_int8_copy_is_made_once_and_reused(tmp_path):
    from ragline.adapters.embedders.minilm import model_path
    from ragline.adapters.embedders.quantized import int8_model

    first = int8_model(model_path(), tmp_path)
    mtime = first.stat().st_mtime_ns
    assert int8_model(model_path(), tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [first.name]  # no leftovers


QUESTIONS = [f"question {i}: how do honeybees tell {'where ' * (i % 5)}the flowers are?" for i in range(32)]


async def test_a_lone_question_is_embedded_at_once_alone(minilm):
    sizes: list[int] = []
    minilm.on_query_batch = sizes.append
    try:
        for text in QUESTIONS[:3]:  # one at a time: each goes alone, nothing waits for company
            await minilm.embed_query(text)
    finally:
        minilm.on_query_batch = None
    assert sizes == [1, 1, 1]


async def test_concurrent_questions_are_embedded_together_with_the_same_vectors(minilm):
    import asyncio

    alone = [minilm._embed_batch([q], minilm._query_session, minilm._query_tokenizer)[0] for q in QUESTIONS]
    sizes: list[int] = []
    minilm.on_query_batch = sizes.append
    try:
        together = await asyncio.gather(*(minilm.embed_query(q, "concurrent") for q in QUESTIONS))
    finally:
        minilm.on_query_batch = None
    assert sum(sizes) == 32 and max(sizes) > 1, sizes
    assert np.allclose(np.stack(together), np.stack(alone), atol=1e-5)


async def test_a_question_asked_again_by_the_same_tenant_is_not_embedded_again(minilm):
    sizes: list[int] = []
    observe, minilm.on_query_batch = minilm.on_query_batch, sizes.append
    try:
        first = await minilm.embed_query("Why do leaves look green? (memo test)", "t")
        again = await minilm.embed_query("Why do leaves look green? (memo test)", "t")
        other = await minilm.embed_query("Why do leaves look green? (memo test)", "u")
    finally:
        minilm.on_query_batch = observe
    assert again is first and not first.flags.writeable  # kept, and nobody can change it
    assert sizes == [1, 1]  # the other tenant's is computed: no timing tells it what "t" asked
    assert np.allclose(other, first, atol=1e-6)


async def test_an_exact_question_vector_is_the_float32_one_and_kept_apart_from_the_int8_one(minilm):
    question = "Which eruption cooled the planet? (exact test)"
    approximate = await minilm.embed_query(question, "t")
    exact = await minilm.embed_query(question, "t", exact=True)
    model = (await minilm.embed([question]))[0]
    assert np.allclose(exact, model, atol=1e-5) and not np.allclose(approximate, model, atol=1e-4)
    assert await minilm.embed_query(question, "t", exact=True) is exact  # kept, each under its own key
    assert await minilm.embed_query(question, "t") is approximate


async def test_the_embedding_cache_never_serves_an_int8_question_vector_as_the_models_own(minilm):
    from ragline.adapters.caches.embedding_cache import CachedEmbedder
    from ragline.adapters.caches.memory import MemoryCache

    cached = CachedEmbedder(minilm, MemoryCache())
    question = "Why does sealed honey keep for years? (cache test)"
    approximate = await cached.embed_query(question, "t")  # cached first
    exact = await cached.embed_query(question, "t", exact=True)
    as_text = (await cached.embed([question], "t"))[0]  # a chunk with the question's text
    model = (await minilm.embed([question]))[0]
    assert np.allclose(exact, model, atol=1e-5) and np.allclose(as_text, model, atol=1e-5)
    assert np.allclose(await cached.embed_query(question, "t"), approximate, atol=1e-6)
