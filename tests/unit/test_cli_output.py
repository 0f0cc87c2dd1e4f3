"""What the command line prints: a replaced answer is said, piped lines stay whole."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from ragline import cli
from ragline.core.models import Answer


class StreamingService:
    """What the seam's stream yields when an LLM answer is replaced as ungrounded: the
    LLM's pieces first, then the Answer the checks settled on."""

    generator_name = "extractive"

    def __init__(self, pieces: list[str], final: str) -> None:
        self.pieces, self.final = pieces, final

    async def stream(self, query):
        for piece in self.pieces:
            yield piece
        yield Answer(request_id="r", tenant=query.tenant, text=self.final, model="test")


def ask_with(monkeypatch, service: StreamingService):
    monkeypatch.setattr(
        cli.answers, "_serve", lambda config, url, key, tenant, work, **kw: asyncio.run(work(service, "default"))
    )
    return CliRunner().invoke(cli.app, ["ask", "How far are the flowers?", "--generator", "extractive"])


def test_a_replaced_answer_is_printed_after_the_text_that_streamed(monkeypatch):
    result = ask_with(monkeypatch, StreamingService(["The budget was ", "$3.4 billion."], "Bees dance."))
    assert result.exit_code == 0, result.output
    assert "replaced:" in result.output
    assert result.output.rstrip().index("Bees dance.") > result.output.index("$3.4 billion.")


def test_an_answer_that_streamed_whole_is_printed_once(monkeypatch):
    result = ask_with(monkeypatch, StreamingService(["Bees ", "dance."], "Bees dance."))
    assert result.exit_code == 0, result.output
    assert "replaced:" not in result.output and result.output.count("Bees dance.") == 1


def test_piped_listings_keep_each_document_on_one_line(monkeypatch):
    meta = {"source": "handbooks/engineering/onboarding/" + "very-long-file-name-" * 4 + ".md", "team": "platform"}
    docs = [{"id": "doc-1", "chunks": 3, "content_hash": "ab" * 32, "updated_at": None, "metadata": meta}]
    monkeypatch.setattr(cli.documents, "_serve", lambda config, url, key, tenant, work, **kw: docs)
    result = CliRunner().invoke(cli.app, ["ls"])  # not a terminal: 80 columns
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("doc-1"))
    assert line.endswith('"team": "platform"}') and len(line) > 80


def test_help_shows_value_types_but_no_bool_beside_flags_and_no_list_beside_paths():
    import re

    result = CliRunner().invoke(cli.app, ["ingest", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.output)
    assert "<bool>" not in plain and "<list[" not in plain
    assert re.search(r"--tenant\s+-t\s+<str>", plain) and re.search(r"paths\.\.\.\s+<path>", plain)
