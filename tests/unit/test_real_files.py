"""Files written by real producers (Word, PowerPoint, Excel, LibreOffice, Google Docs,
LaTeX; tests/data/real) all load, with their sentences, table cells and pages."""

from __future__ import annotations

import bisect
import json
import re
from pathlib import Path

import pytest

from ragline.ingest import office
from ragline.ingest.loaders import load_file

REAL = Path(__file__).resolve().parents[1] / "data" / "real"
MANIFEST = json.loads((REAL / "manifest.json").read_text())["files"]
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def plain(text: str) -> str:
    """Markdown links as their text, whitespace collapsed: what a reader sees."""
    return " ".join(_LINK.sub(r"\1", text).split())


def load(name: str):
    return load_file(REAL / name, "t", 20_000_000, document_id=name)


def test_the_manifest_lists_every_file_in_the_corpus():
    listed = {entry["file"] for entry in MANIFEST}
    on_disk = {p.name for p in REAL.iterdir() if p.suffix in {".docx", ".pptx", ".xlsx", ".pdf"}}
    assert listed == on_disk and len(listed) >= 20


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_a_real_file_keeps_its_sentence_and_its_table_cell(entry):
    doc = load(entry["file"])
    assert plain(entry["sentence"]) in plain(doc.text)
    if "cell" in entry:
        assert plain(entry["cell"]) in plain(doc.text)


@pytest.mark.parametrize("entry", [e for e in MANIFEST if "page" in e], ids=lambda e: e["file"])
def test_pdf_pages_and_slides_are_found_where_they_are(entry):
    doc = load(entry["file"])
    anchor = entry.get("cell", entry["sentence"])
    found = re.search(r"\s+".join(map(re.escape, anchor.split())), doc.text)
    assert found and doc.pages is not None and bisect.bisect_right(doc.pages, found.start()) == entry["page"]


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["file"].endswith(".docx")], ids=lambda e: e["file"])
def test_a_word_file_the_first_converter_fails_on_is_read_by_the_fallback(entry, monkeypatch):
    from markitdown.converters import DocxConverter

    def broken(self, *args, **kwargs):  # what lxml 6.2.0 did to MarkItDown 0.1.9 on every real file
        raise ValueError("Could not find the body element: are you sure this is a docx file?")

    monkeypatch.setattr(DocxConverter, "convert", broken)
    doc = load(entry["file"])
    assert doc.metadata["converter"] == "mammoth"
    assert plain(entry["sentence"]) in plain(doc.text)


def test_a_spreadsheet_reads_as_rows_with_their_headers_without_converter_artefacts():
    text = load("libreoffice-7-regions.xlsx").text
    assert "Region: North; Revenue: 4.2 million; Employees: 120; Manager: Ingrid Solberg" in text.splitlines()
    assert "Unnamed" not in text and "NaN" not in text and "nan" not in text.split()


def test_a_zip_archive_named_docx_is_refused_for_what_it_is(tmp_path):
    import zipfile

    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("a.txt", "x" * 1000)
    with zipfile.ZipFile(tmp_path / "nested.docx", "w") as z:
        z.write(inner, "inner.zip")
    with pytest.raises(office.DocumentError, match=r"not a Word document: the package has no word/document.xml"):
        load_file(tmp_path / "nested.docx", "t", 1_000_000, document_id="nested.docx")
