import math

import pytest

from ragline.core.models import Hit
from ragline.ops.evaluation import documents_ranked, score


def test_metrics_on_a_hand_made_run_match_their_definitions():
    qrels = {"q1": {"d1": 1}, "q2": {"d3": 1, "d4": 1}}
    run = {"q1": {"d2": 3.0, "d1": 2.0}, "q2": {"d3": 5.0, "d9": 4.0}}
    result = score(qrels, run)
    # q1: the relevant doc at rank 2 -> nDCG 1/log2(3), RR 1/2; q2: one of two at rank 1
    ndcg_q1 = 1 / math.log2(3)
    ndcg_q2 = 1 / (1 + 1 / math.log2(3))
    assert result["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert result["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert result["recall@10"] == pytest.approx((1.0 + 0.5) / 2)
    assert result["recall@100"] == pytest.approx(0.75)


def hit(doc: str, n: int) -> Hit:
    return Hit(chunk_id=f"{doc}-{n}", document_id=doc, number=n, text="", score=1.0, content_hash="h")


def test_chunk_hits_aggregate_to_documents_ranked_by_their_best_chunk():
    ranked = documents_ranked([hit("a", 0), hit("b", 0), hit("a", 1), hit("c", 0)], limit=10)
    assert list(ranked) == ["a", "b", "c"]
    assert ranked["a"] > ranked["b"] > ranked["c"]
    assert list(documents_ranked([hit("a", 0), hit("b", 0), hit("c", 0)], limit=2)) == ["a", "b"]
