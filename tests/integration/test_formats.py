"""Each supported office / data / mail format ingests and answers a question about its
content (real MiniLM, Milvus Lite, extractive answers); PDF citations carry pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from ragline import Settings
from ragline.adapters.generators.extractive import ExtractiveGenerator
from ragline.adapters.stores.milvus import MilvusStore
from ragline.service.engine import Engine
from tests.unit.test_converters import docx, pdf, text_at

pytestmark = pytest.mark.integration

# file -> (question, a fact the answer must contain)
QUESTIONS = {
    "retention.docx": ("How long is customer data kept after account closure?", "90 days"),
    "q3.pptx": ("How much did revenue grow in the third quarter?", "12 percent"),
    "prices.xlsx": ("What is the price of a mango?", "3.2"),
    "cities.csv": ("What is the population of Bergen?", "291000"),
    "warranty.json": ("How long is the warranty of the Widget?", "two years"),
    "offsite.eml": ("Where is the company offsite held?", "Lisbon"),
    "manual.pdf": ("How often must the lighthouse lamp be cleaned?", "every morning"),
}


def write_corpus(root: Path) -> None:
    import openpyxl
    from pptx import Presentation

    (root / "retention.docx").write_bytes(
        docx(
            ["Customer data is kept for 90 days after account closure, then erased."],
            [["record", "retention"], ["invoices", "ten years"]],
        )
    )
    deck = Presentation()
    for title, body in (
        ("Agenda", "Welcome and the plan for the meeting."),
        ("Third quarter", "Revenue grew by 12 percent in the third quarter."),
    ):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text, slide.placeholders[1].text = title, body
    deck.save(root / "q3.pptx")
    book = openpyxl.Workbook()
    book.active.title = "Fruit prices"
    for row in (["fruit", "price"], ["mango", "3.20"], ["apple", "0.80"]):
        book.active.append(row)
    book.save(root / "prices.xlsx")
    (root / "cities.csv").write_text("city,population\nOslo,709000\nBergen,291000\n")
    (root / "warranty.json").write_text(json.dumps({"product": "Widget", "warranty": "two years from purchase"}))
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = "Company offsite", "ceo@example.org", "all@example.org"
    mail.set_content("The company offsite is held in Lisbon on 12 March.")
    (root / "offsite.eml").write_bytes(bytes(mail))
    (root / "manual.pdf").write_bytes(
        pdf(
            [
                text_at(72, 720, "The lighthouse keeper logs the weather every four hours."),
                text_at(72, 720, "The lighthouse lamp must be cleaned every morning at dawn."),
            ]
        )
    )


@pytest.fixture(scope="module")
async def formats_engine(tmp_path_factory, minilm) -> AsyncIterator[Engine]:
    root = tmp_path_factory.mktemp("formats")
    (root / "docs").mkdir()
    write_corpus(root / "docs")
    settings = Settings.load(milvus_uri=str(root / "m.db"))
    engine = Engine(settings, minilm, MilvusStore.of(settings.store, minilm.dimension), generator=ExtractiveGenerator())
    report = await engine.ingest_paths([root / "docs"])
    assert report.documents == len(QUESTIONS) and not report.errors, report.errors
    yield engine
    await engine.close()


@pytest.mark.parametrize("name", sorted(QUESTIONS))
async def test_each_format_answers_a_question_about_its_content(formats_engine, name):
    question, fact = QUESTIONS[name]
    answer = await formats_engine.ask(question)
    assert fact in answer.text, answer.text
    assert answer.citations and answer.citations[0].document_id == name


async def test_pdf_citations_carry_their_page(formats_engine):
    answer = await formats_engine.ask(QUESTIONS["manual.pdf"][0])
    [cited] = [c for c in answer.citations if c.document_id == "manual.pdf"][:1]
    assert cited.page == 2
