"""Office files, CSV, JSON, e-mail, HTML tables and PDF pages: what the converters keep."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from ragline import DocumentError
from ragline.core.chunking import Chunker, regex_token_spans
from ragline.core.stages import chunk_documents
from ragline.core.text import split_sentences
from ragline.ingest.loaders import load_file

MB = 1_000_000


def load(path: Path):
    return load_file(path, "t", 20 * MB, document_id=path.name)


def docx(paragraphs: list[str], table: list[list[str]]) -> bytes:
    """A minimal Word file, by hand (python-docx is not a dependency)."""
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    rows = "".join(
        "<w:tr>" + "".join(f"<w:tc><w:p><w:r><w:t>{c}</w:t></w:r></w:p></w:tc>" for c in row) + "</w:tr>"
        for row in table
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        z.writestr(
            "_rels/.rels",
            '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="word/document.xml"/></Relationships>',
        )
        z.writestr("word/document.xml", f"<w:document {w}><w:body>{body}<w:tbl>{rows}</w:tbl></w:body></w:document>")
    return out.getvalue()


def pdf(pages: list[str]) -> bytes:
    """A PDF whose pages hold the given content streams (Helvetica as F1), by hand."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for content in pages:
        stream = content.encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % len(objects)
        )
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def text_at(x: int, y: int, text: str) -> str:
    return f"BT /F1 11 Tf {x} {y} Td ({text}) Tj ET\n"


def test_a_word_file_keeps_its_paragraphs_and_its_table_cells_apart(tmp_path):
    (tmp_path / "policy.docx").write_bytes(
        docx(["Customer data is kept for 90 days."], [["account closure", "deleted within 14 days"]])
    )
    doc = load(tmp_path / "policy.docx")
    assert "Customer data is kept for 90 days." in doc.text
    assert "| account closure | deleted within 14 days |" in doc.text and doc.metadata["type"] == "docx"


def test_a_presentation_has_its_slides_as_pages(tmp_path):
    from pptx import Presentation

    deck = Presentation()
    for title, body in (("Results", "Revenue grew 12 percent in Q3."), ("Hiring", "We hired forty engineers.")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    deck.save(tmp_path / "q3.pptx")
    doc = load(tmp_path / "q3.pptx")
    assert "Slide number" not in doc.text and doc.pages is not None and len(doc.pages) == 2
    assert doc.text[doc.pages[1] :].startswith("# Hiring")
    [chunks] = chunk_documents([doc], Chunker(regex_token_spans, size=4, overlap=0))
    assert [c.metadata["page"] for c in chunks if "forty" in c.text] == [2]


def test_a_spreadsheet_and_a_csv_become_tables_whose_rows_read_as_sentences(tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Prices"
    book.active.append(["fruit", "price"])
    book.active.append(["mango", "3.20"])
    book.save(tmp_path / "prices.xlsx")
    (tmp_path / "cities.csv").write_text("city,population\nOslo,709000\nBergen,291000\n")
    sheet, table = load(tmp_path / "prices.xlsx"), load(tmp_path / "cities.csv")
    assert "## Prices" in sheet.text and "fruit: mango; price: 3.20" in sheet.text.splitlines()
    assert split_sentences(table.text) == ["city: Oslo; population: 709000", "city: Bergen; population: 291000"]


def test_json_and_email(tmp_path):
    (tmp_path / "w.json").write_text(json.dumps({"product": "Widget", "warranty": "two years"}))
    assert '"warranty": "two years"' in load(tmp_path / "w.json").text
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "Offsite dates", "a@example.org", "b@example.org"
    message.set_content("The offsite is on 12 March in Lisbon.")
    message.add_alternative("<p>The offsite is on <b>12 March</b> in Lisbon.</p>", subtype="html")
    (tmp_path / "offsite.eml").write_bytes(bytes(message))
    mail = load(tmp_path / "offsite.eml")
    assert mail.metadata["title"] == "Offsite dates" and "Subject: Offsite dates" in mail.text
    assert mail.text.endswith("The offsite is on 12 March in Lisbon.")  # the text part, not raw MIME


def test_an_html_table_reads_as_rows_with_their_headers(tmp_path):
    (tmp_path / "t.html").write_text(
        "<table><tr><th>event</th><th>action</th></tr><tr><td>account closure</td><td>deleted within 14 days</td>"
        "</tr></table>"
    )
    doc = load(tmp_path / "t.html")
    assert (
        "account closuredeleted" not in doc.text
        and "event: account closure; action: deleted within 14 days" in doc.text
    )
    assert split_sentences(doc.text) == ["event: account closure; action: deleted within 14 days"]


def test_a_pdf_table_keeps_its_cells_apart_and_chunks_know_their_page(tmp_path):
    first = text_at(72, 720, "Deletion schedule") + "".join(
        text_at(x, y, cell)
        for y, row in ((690, ("event", "action")), (670, ("account closure", "deleted within 14 days")))
        for x, cell in zip((72, 300), row)
    )
    second = text_at(72, 720, "Backups are kept for thirty days in a second region.")
    (tmp_path / "schedule.pdf").write_bytes(pdf([first, second]))
    doc = load(tmp_path / "schedule.pdf")
    assert "account closure | deleted within 14 days" in doc.text and doc.pages == [0, doc.text.index("Backups")]
    [chunks] = chunk_documents([doc], Chunker(regex_token_spans, size=10, overlap=0))
    pages = [c.metadata["page"] for c in chunks]
    assert pages == sorted(pages) and pages[0] == 1 and pages[-1] == 2
    assert all(c.metadata["page"] == 2 for c in chunks if "Backups" in c.text or "region" in c.text)
    assert not any("14" in c.text and "Backups" in c.text for c in chunks)  # no chunk straddles the pages


@pytest.mark.parametrize("name", ["broken.docx", "broken.xlsx", "broken.pptx"])
def test_a_broken_office_file_is_a_clear_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DocumentError, match="not a readable"):
        load(tmp_path / name)


def test_an_office_file_that_would_expand_past_the_limit_is_refused_before_parsing(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"<" + b"a" * (2 * MB) + b">")
    (tmp_path / "bomb.docx").write_bytes(out.getvalue())
    with pytest.raises(DocumentError, match="expands to"):
        load_file(tmp_path / "bomb.docx", "t", 100_000, document_id="bomb.docx")


def test_a_named_file_of_an_unknown_type_is_read_as_text_or_refused_with_the_supported_list(tmp_path):
    (tmp_path / "NOTES").write_text("Plain words without a suffix.")
    assert load(tmp_path / "NOTES").text == "Plain words without a suffix."
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(DocumentError, match=r"unsupported file type \.png; supported: .*\.docx"):
        load(tmp_path / "photo.png")


def test_sentences_come_from_a_segmenter_not_from_line_wraps():
    text = "Dr. Smith measured the\nwaggle dance at 3.5 m/s on\nJan. 5. Bees followed it.\n\n- a list item stays apart"
    assert split_sentences(text) == [
        "Dr. Smith measured the waggle dance at 3.5 m/s on Jan. 5.",
        "a list item stays apart",
    ]
