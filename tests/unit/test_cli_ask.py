"""`ragline ask` never leaves a streamed text on screen that was not the answer."""

from __future__ import annotations

import asyncio

from typer.testing import CliRunner

from ragline import cli
from ragline.models import Answer


class StreamingEngine:
    """What the engine's stream yields when an LLM answer is replaced as ungrounded: the
    LLM's pieces first, then the Answer the checks settled on."""

    def __init__(self, pieces: list[str], final: str) -> None:
        self.pieces, self.final = pieces, final

    async def stream(self, question, tenant, top_k):
        for piece in self.pieces:
            yield piece
        yield Answer(request_id="r", tenant="default", text=self.final, model="test")


def ask_with(monkeypatch, engine: StreamingEngine):
    monkeypatch.setattr(cli, "_remote", lambda *args: None)
    monkeypatch.setattr(cli, "_run", lambda config, work, **kw: asyncio.run(work(engine)))
    return CliRunner().invoke(cli.app, ["ask", "How far are the flowers?", "--generator", "extractive"])


def test_a_replaced_answer_is_printed_after_the_text_that_streamed(monkeypatch):
    result = ask_with(monkeypatch, StreamingEngine(["The budget was ", "$3.4 billion."], "Bees dance."))
    assert result.exit_code == 0, result.output
    assert "replaced:" in result.output
    assert result.output.rstrip().index("Bees dance.") > result.output.index("$3.4 billion.")


def test_an_answer_that_streamed_whole_is_printed_once(monkeypatch):
    result = ask_with(monkeypatch, StreamingEngine(["Bees ", "dance."], "Bees dance."))
    assert result.exit_code == 0, result.output
    assert "replaced:" not in result.output and result.output.count("Bees dance.") == 1
