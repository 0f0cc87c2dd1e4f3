"""`ragline eval` end to end on a small BEIR-format dataset made here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli import app

DOCS = {
    "d1": ("Bees", "Honeybees perform the waggle dance to show where flowers are."),
    "d2": ("Tea", "Black tea leaves are fully oxidised before drying."),
    "d3": ("Volcanoes", "Mount Pinatubo erupted in 1991 and cooled the planet."),
    "d4": ("Lenses", "Augustin-Jean Fresnel presented his lens in 1822."),
}
QUERIES = {
    "q1": ("waggle dance of honeybees", "d1"),
    "q2": ("oxidised black tea", "d2"),
    "q3": ("Pinatubo 1991 eruption", "d3"),
    "q4": ("Fresnel lens 1822", "d4"),
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "mini"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in DOCS.items())
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in QUERIES.items())
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, (_, d) in QUERIES.items())
    )
    return root


def test_eval_prints_a_table_and_ends_with_the_metrics_as_json(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGLINE_EMBEDDER", "hashing")
    result = CliRunner().invoke(app, ["eval", str(dataset), "--mode", "bm25,hybrid", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(last["modes"]) == {"bm25", "hybrid"} and last["queries"] == 4 and last["documents"] == 4
    assert last["ndcg@10"] == pytest.approx(1.0) and last["mrr@10"] == pytest.approx(1.0)  # bm25 on exact words
    assert json.loads((tmp_path / "r.json").read_text()) == last


def test_eval_says_what_is_missing_from_a_dataset_dir(tmp_path):
    result = CliRunner().invoke(app, ["eval", str(tmp_path)])
    assert result.exit_code == 2 and "not a BEIR dataset, missing" in result.output
