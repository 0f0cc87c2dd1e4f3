"""The CLI end to end, with the real MiniLM model and Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragline.cli import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGLINE_MILVUS_URI", str(tmp_path / "cli.db"))
    monkeypatch.setenv("RAGLINE_EMBED_THREADS", "1")
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result

    return run


def test_sample_corpus_answers_a_question_about_it(cli):
    cli("ingest", "--sample")
    result = cli("search", "How do bees tell each other how far away flowers are?", "--tenant", "sample", "--json")
    top = json.loads(result.stdout)["hits"][0]
    assert top["document_id"] == "honeybees.md"
    assert "waggle" in top["text"]


def test_reingesting_the_sample_reports_everything_unchanged(cli):
    cli("ingest", "--sample")
    report = json.loads(cli("ingest", "--sample", "--json").stdout)
    assert report["chunks_written"] == 0 and report["unchanged_documents"] == report["documents"] == 6


def test_delete_and_stats(cli):
    cli("ingest", "--sample")
    assert json.loads(cli("stats", "--json").stdout)["chunks"] == 0  # the sample has a tenant of its own
    before = json.loads(cli("stats", "-t", "sample", "--json").stdout)["chunks"]
    assert "deleted tea.html" in cli("delete", "tea.html", "-t", "sample").stdout
    assert json.loads(cli("stats", "-t", "sample", "--json").stdout)["chunks"] < before


def test_deleting_a_missing_document_fails_with_a_message(cli):
    result = cli("delete", "nope", code=1)
    assert "no document 'nope'" in result.output


def test_ingest_without_paths_says_what_to_do(cli):
    assert "give at least one PATH" in cli("ingest", code=2).output


def test_a_bad_setting_is_a_clear_configuration_error(cli, monkeypatch):
    monkeypatch.setenv("RAGLINE_CHUNK_OVERLAP", "999")
    assert "chunk_overlap" in cli("stats", code=2).output


def test_ls_lists_what_is_indexed(cli):
    cli("ingest", "--sample")
    listed = json.loads(cli("ls", "-t", "sample", "--json").stdout)
    assert len(listed) == 6 and [d["id"] for d in listed] == sorted(d["id"] for d in listed)
    assert all(d["chunks"] >= 1 for d in listed)
    assert [d["id"] for d in json.loads(cli("ls", "honey", "-t", "sample", "--json").stdout)] == ["honeybees.md"]
    assert "6 documents" in cli("ls", "-t", "sample").stdout
    assert "0 documents" in cli("ls").stdout
