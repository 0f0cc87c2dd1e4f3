"""Office files (.docx, .pptx, .xlsx): checked as packages, then converted, bounded.

An office file is a ZIP package. Before anything parses it: it must open as a ZIP,
hold at most ``MAX_ENTRIES`` members, expand to at most ``ZIP_EXPANSION`` times the
document limit, and contain its main part (``word/document.xml``, ...), so a ZIP named
.docx is refused instead of handed to a generic archive converter that would expand
the archives inside it. Each format then goes to its own converter, never through a
dispatcher that tries the others:

- Word: MarkItDown's converter (its pre-processing keeps equations as LaTeX); when it
  fails on a valid file (lxml 6.2.0 broke its pre-processing for every real Word file),
  mammoth alone, without the pre-processing. ``metadata["converter"]`` says which.
- PowerPoint: MarkItDown's converter; each slide is a page.
- Excel: openpyxl in read-only mode, row by row, at most ``MAX_SHEET_CELLS`` filled
  cells, the text checked against the limit as it grows; rows rendered with their
  headers (tables.py), no pandas ``Unnamed: 1`` or ``NaN``.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from ragline.core.errors import DocumentError
from ragline.ingest.tables import cell_text, render, rewrite_markdown_tables

ZIP_EXPANSION = 10  # an office file may expand to this many times the document limit
MAX_ENTRIES = 5_000  # members of one package (real files have tens to a few hundred)
MAX_SHEET_CELLS = 100_000  # filled cells of one workbook
MAIN_PARTS = {".docx": "word/document.xml", ".pptx": "ppt/presentation.xml", ".xlsx": "xl/workbook.xml"}
_KINDS = {".docx": "Word document", ".pptx": "PowerPoint presentation", ".xlsx": "Excel workbook"}
_OFFICE_DOCUMENT = re.compile(
    rb'Type="[^"]*/officeDocument"[^>]*Target="/?([^"]+)"|Target="/?([^"]+)"[^>]*Type="[^"]*/officeDocument"'
)


def check_package(path: Path, data: bytes, suffix: str, max_bytes: int) -> None:
    """Refuse, with the reason, an office file that is not a sound package of its kind."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            if len(infos) > MAX_ENTRIES:
                raise DocumentError(str(path), f"a package of {len(infos)} parts, past the {MAX_ENTRIES} allowed")
            expanded = sum(info.file_size for info in infos)
            names = {info.filename for info in infos}
            main = _main_part(archive, names) or MAIN_PARTS[suffix]
    except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
        raise DocumentError(str(path), f"not a readable {suffix} file (not a ZIP archive: {exc})") from exc
    if expanded > ZIP_EXPANSION * max_bytes:
        raise DocumentError(
            str(path), f"it expands to {expanded / 1e6:.0f} MB, past {ZIP_EXPANSION}x the document limit"
        )
    if main not in names or not main.startswith(MAIN_PARTS[suffix].split("/")[0] + "/"):
        raise DocumentError(
            str(path), f"not a {_KINDS[suffix]}: the package has no {MAIN_PARTS[suffix]} (a ZIP archive renamed?)"
        )


def _main_part(archive: zipfile.ZipFile, names: set[str]) -> str | None:
    if "_rels/.rels" not in names or archive.getinfo("_rels/.rels").file_size > 1_000_000:
        return None
    match = _OFFICE_DOCUMENT.search(archive.read("_rels/.rels"))
    return (match.group(1) or match.group(2)).decode("utf-8", "replace") if match else None


def docx(path: Path, data: bytes) -> tuple[str, str | None, str]:
    """(Markdown, title, converter) of a Word file: MarkItDown, else mammoth alone."""
    from markitdown import StreamInfo
    from markitdown.converters import DocxConverter

    try:
        result = DocxConverter().convert(io.BytesIO(data), StreamInfo(extension=".docx"))
        return rewrite_markdown_tables(result.markdown or ""), result.title, "markitdown"
    except Exception as exc:
        first = f"{type(exc).__name__}: {str(exc)[:150]}"
    try:
        return rewrite_markdown_tables(_mammoth_markdown(data)), None, "mammoth"
    except Exception as exc:
        raise DocumentError(
            str(path),
            f"not a readable .docx file (MarkItDown: {first}; mammoth: {type(exc).__name__}: {str(exc)[:150]})",
        ) from exc


def _mammoth_markdown(data: bytes) -> str:
    import mammoth
    import mammoth.images
    from markitdown.converters import HtmlConverter

    no_images = mammoth.images.img_element(lambda image: {"alt": image.alt_text or ""})
    html = mammoth.convert_to_html(io.BytesIO(data), convert_image=no_images).value
    return HtmlConverter().convert_string(html).markdown or ""


def pptx(path: Path, data: bytes) -> tuple[str, str | None]:
    from markitdown import StreamInfo
    from markitdown.converters import PptxConverter

    try:
        result = PptxConverter().convert(io.BytesIO(data), StreamInfo(extension=".pptx"))
    except Exception as exc:
        raise DocumentError(str(path), f"not a readable .pptx file ({type(exc).__name__}: {str(exc)[:200]})") from exc
    markdown = (result.markdown or "").replace("Rotated text discovered. Output will be incomplete.", "")
    return rewrite_markdown_tables(markdown), result.title


def xlsx(path: Path, data: bytes, max_chars: int) -> str:
    """Each sheet as ``## name`` and its rows with their headers, bounded while it is read."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        raise DocumentError(str(path), f"not a readable .xlsx file ({type(exc).__name__}: {str(exc)[:200]})") from exc
    parts: list[str] = []
    budget = _CellBudget(path, max_chars)
    try:
        for sheet in book.worksheets:
            rows: list[list[str]] = []
            for values in sheet.iter_rows(values_only=True):
                row = [cell_text(v) for v in values]
                if budget.spend(row):
                    rows.append(row)
            lines = render(rows)
            if lines:
                parts.append(f"## {sheet.title}\n\n" + "\n".join(lines))
    except DocumentError:
        raise
    except Exception as exc:
        raise DocumentError(str(path), f"not a readable .xlsx file ({type(exc).__name__}: {str(exc)[:200]})") from exc
    finally:
        book.close()
    return "\n\n".join(parts)


def csv_text(path: Path, text: str, max_chars: int) -> str:
    """A CSV file's rows with their headers (the dialect sniffed: commas, semicolons, tabs)."""
    import csv

    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows: list[list[str]] = []
    budget = _CellBudget(path, max_chars)
    try:
        for row in csv.reader(io.StringIO(text), dialect):
            cells = [cell_text(c) for c in row]
            budget.spend(cells)
            rows.append(cells)
    except csv.Error as exc:
        raise DocumentError(str(path), f"not a readable CSV file ({exc})") from exc
    return "\n".join(render(rows))


class _CellBudget:
    """What a spreadsheet or CSV file may produce: ``MAX_SHEET_CELLS`` filled cells and
    ``max_chars`` of text, counted row by row as the file is read (refused mid-read)."""

    def __init__(self, path: Path, max_chars: int) -> None:
        self.path, self.max_chars = path, max_chars
        self.cells = self.chars = 0

    def spend(self, row: list[str]) -> int:
        """Count a row's filled cells (returned) against the budget, or raise DocumentError."""
        filled = [c for c in row if c]
        self.cells += len(filled)
        self.chars += sum(len(c) + 2 for c in filled)
        if self.cells > MAX_SHEET_CELLS:
            raise DocumentError(str(self.path), f"more than {MAX_SHEET_CELLS:,} filled cells: index a part of it")
        if self.chars > self.max_chars:
            raise DocumentError(
                str(self.path), f"its text expands past the {self.max_chars / 1e6:.1f} MB document limit"
            )
        return len(filled)
