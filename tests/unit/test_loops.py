"""A small model's repetition loop ends the stream instead of running to max_tokens."""

from ragline.adapters.generators.loops import LoopGuard

LOOP = "The data is stored in a hot storage, which is a cloud storage service. "


def test_a_repeated_sentence_is_a_loop_and_the_text_before_it_is_kept():
    guard = LoopGuard()
    fed = [guard.feed(word + " ") for word in ("Answer: " + LOOP * 4).split()]
    assert True in fed and fed.index(True) < len(fed) - 5  # caught early, not at the end
    assert guard.kept() == "Answer: " + LOOP.strip()


def test_ordinary_text_is_not_a_loop():
    guard = LoopGuard()
    text = "Bees dance to show where flowers are. The angle gives the direction. The length gives the distance."
    assert not any(guard.feed(word + " ") for word in text.split())
