"""Files -> Documents, one at a time, with clear errors.

Plain text, Markdown and JSON are read as they are. HTML goes through MarkItDown's HTML
converter (headings, lists and tables survive as Markdown); Word, PowerPoint and Excel
files through office.py (a package check first, then one converter per format, with a
fallback for Word); CSV through the standard library. Tables with a header row become
one line per row with its headers (tables.py). E-mail (.eml) is parsed by the standard
library (headers, then the text part, or the HTML part converted), at most
``MAX_EMAIL_PARTS`` parts. PDF is read page by page with pypdf in layout mode (columns
of a table stay apart, as `` | ``), and the document carries where each page starts, so
every chunk knows its page and citations show it; slides are pages too.

What parsing produces is bounded: a document's text may not pass ``max_bytes``
characters, checked as it is produced where the format allows (PDF pages, sheet rows).
Every failure, whatever the parser raised (RecursionError included), is a
``DocumentError`` naming the file and the reason, so a batch can report it and go on.
"""

from __future__ import annotations

import email
import email.policy
import io
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragline.core.errors import DocumentError
from ragline.core.models import Document
from ragline.ingest import office
from ragline.ingest.tables import rewrite_markdown_tables

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
OFFICE_SUFFIXES = {".docx", ".pptx", ".xlsx"}  # ZIP archives
DATA_SUFFIXES = {".csv", ".json"}
EMAIL_SUFFIXES = {".eml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES | HTML_SUFFIXES | OFFICE_SUFFIXES | DATA_SUFFIXES | EMAIL_SUFFIXES
MAX_EMAIL_PARTS = 200  # MIME parts of one message (a real one has a handful)

_MD_TITLE = re.compile(r"^\s*#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def iter_files(
    paths: list[Path], follow_symlinks: bool = False, id_prefix: str = ""
) -> Iterator[tuple[Path, str] | DocumentError]:
    """(file, document id) pairs under ``paths``, sorted; a missing path is reported, not raised.

    A document's id is ``id_prefix`` followed by the file's path relative to the
    directory given (``ragline ingest docs/`` makes ``docs/guide/setup.md`` the id
    ``guide/setup.md``), or by its name for a file given alone: the same file gets the
    same id from any working directory, and the same folder ingested from another place
    (a new checkout, a mounted copy) updates the documents it made before. Folders whose
    relative paths could collide take a prefix each (``--id-prefix handbook/``). Inside
    a directory, a symbolic link that leads out of it is reported and skipped unless
    ``follow_symlinks`` (a link to /etc/passwd must not be indexed by accident).
    """
    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in _walk(path):
                if file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    yield unsupported(file)
                    continue
                if not follow_symlinks and not file.resolve().is_relative_to(root):
                    yield DocumentError(
                        str(file),
                        "a symbolic link out of the ingested directory; skipped (--follow-symlinks to include it)",
                    )
                    continue
                yield file, id_prefix + file.relative_to(path).as_posix()
        elif path.exists() or path.is_symlink():
            yield path, id_prefix + path.name
        else:
            yield DocumentError(str(path), "no such file or directory")


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def unsupported(path: Path) -> DocumentError:
    return DocumentError(
        str(path), f"unsupported file type {path.suffix or '(none)'}; supported: {' '.join(sorted(SUPPORTED_SUFFIXES))}"
    )


def load_file(path: Path, tenant: str, max_bytes: int, document_id: str) -> Document:
    """Read one file into a Document, or raise DocumentError saying why not."""
    if not document_id.isprintable():
        raise DocumentError(repr(str(path)), "the file name has control characters; rename the file")
    size = _size(path)
    if size > max_bytes:
        raise DocumentError(
            str(path),
            f"too large: {size / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.1f} MB limit "
            "(raise RAGLINE_MAX_DOCUMENT_MB to allow it)",
        )
    data = _read(path, max_bytes)
    suffix = path.suffix.lower()
    try:
        text, title, pages, converter = _convert(path, data, suffix, max_bytes)
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError(str(path), f"not a readable {suffix or 'text'} file (nested too deeply)") from None
    except Exception as exc:  # a parser's own failure is this file's error, never the batch's
        raise DocumentError(
            str(path), f"not a readable {suffix or 'text'} file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not text.strip():
        raise DocumentError(str(path), "empty: no text to index")
    if len(text) > max_bytes:
        raise DocumentError(str(path), f"its text expands past the {max_bytes / 1e6:.1f} MB document limit")
    # The absolute path: the same file has the same metadata from any working directory.
    metadata: dict[str, Any] = {
        "source": str(path.absolute()),
        "title": title or path.stem,
        "type": suffix.lstrip(".") or "txt",
    }
    if converter:
        metadata["converter"] = converter
    return Document(tenant=tenant, id=document_id, text=text, metadata=metadata, pages=pages)


def _convert(
    path: Path, data: bytes, suffix: str, max_bytes: int
) -> tuple[str, str | None, list[int] | None, str | None]:
    """(text, title, page starts, converter) of one file, by its type."""
    if suffix in PDF_SUFFIXES:
        text, starts = _pdf_text(path, data, max_bytes)
        return text, None, starts, None
    if suffix in OFFICE_SUFFIXES:
        office.check_package(path, data, suffix, max_bytes)
        if suffix == ".docx":
            text, title, converter = office.docx(path, data)
            return _tidy(text), _title(title, text), None, converter
        if suffix == ".pptx":
            markdown, title = office.pptx(path, data)
            text, slides = _slides(_tidy(markdown))
            return text, _title(title, text), slides, None
        return _tidy(office.xlsx(path, data, max_bytes)), None, None, None
    if suffix in HTML_SUFFIXES:
        text, title = _html(path, _decode(path, data))
        return text, title, None, None
    if suffix == ".csv":
        return office.csv_text(path, _decode(path, data), max_bytes), None, None, None
    if suffix in EMAIL_SUFFIXES:
        text, title = _email(path, data, max_bytes)
        return text, title, None, None
    try:  # .txt, .md, .json, or a file named alone whose type is not known: text if it is text
        text = _decode(path, data)
    except DocumentError as exc:
        if suffix in TEXT_SUFFIXES | DATA_SUFFIXES:
            raise
        raise DocumentError(str(path), f"{exc.reason}; {unsupported(path).reason}") from None
    return text, _md_title(text) if suffix in {".md", ".markdown"} else None, None, None


def _title(given: str | None, markdown: str) -> str | None:
    return (given or "").strip() or _md_title(markdown)


def _size(path: Path) -> int:
    try:
        stat = path.stat()
    except OSError as exc:
        raise DocumentError(str(path), f"unreadable: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise DocumentError(str(path), "not a regular file")
    return stat.st_size


def _read(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes``: files that report no size (/proc, pipes) cannot slip past the limit."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise DocumentError(str(path), f"unreadable: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise DocumentError(str(path), f"too large: more than the {max_bytes / 1e6:.1f} MB limit")
    return data


def _decode(path: Path, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(str(path), "binary file: not text (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(str(path), f"not UTF-8 text (invalid byte at offset {exc.start})") from exc


def _md_title(text: str) -> str | None:
    match = _MD_TITLE.search(text[:4096])
    return match.group(1) if match else None


def _html(path: Path, html: str) -> tuple[str, str | None]:
    """HTML -> Markdown (and its <title>), tables rendered with their headers."""
    from markitdown.converters import HtmlConverter

    result = HtmlConverter().convert_string(html)
    text = _tidy(rewrite_markdown_tables(result.markdown or ""))
    return text, _title(result.title, text)


_SLIDE = re.compile(r"^<!-- Slide number: (\d+) -->\n?", re.MULTILINE)


def _slides(markdown: str) -> tuple[str, list[int] | None]:
    """A presentation's slides as pages: MarkItDown's slide markers become page starts."""
    parts = _SLIDE.split(markdown)  # [before, number, slide, number, slide, ...]
    if len(parts) < 3:
        return markdown, None
    text, starts = parts[0].strip(), []
    for slide in parts[2::2]:
        text += "\n\n" if text else ""
        starts.append(len(text))
        text += slide.strip()
    return text, starts


def _email(path: Path, data: bytes, max_bytes: int) -> tuple[str, str | None]:
    """Subject, From, To, Date, then the body: the text part, else the HTML part converted."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = sum(1 for _ in itertools.islice(_parts(message), MAX_EMAIL_PARTS + 1))
    if parts > MAX_EMAIL_PARTS:
        raise DocumentError(str(path), f"an e-mail of more than {MAX_EMAIL_PARTS} MIME parts")
    headers = [f"{name}: {message[name]}" for name in ("Subject", "From", "To", "Date") if message[name]]
    body = ""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
        if part is not None:
            content = part.get_content()
            if part.get_content_subtype() == "html":
                body, _ = _html(path, content)
            else:
                body = content
    except (LookupError, ValueError) as exc:
        raise DocumentError(str(path), f"unreadable e-mail body ({exc})") from exc
    subject = str(message["Subject"] or "").strip()
    return "\n".join(headers) + "\n\n" + body.strip(), subject or None


def _parts(message: Any) -> Iterator[Any]:
    """Every MIME part, depth first, without recursion (a message may nest thousands deep)."""
    stack = [message]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed(payload))


def _tidy(markdown: str) -> str:
    """Collapse the blank lines converters leave behind."""
    return re.sub(r"\n{3,}", "\n\n", markdown).strip()


_GAP = re.compile(r"(?<=\S)\s+(?=\S)")


def _pdf_text(path: Path, data: bytes, max_chars: int) -> tuple[str, list[int]]:
    """The pages' text and the offset where each page starts. Layout mode keeps a
    table's columns apart (a gap of three spaces or more becomes `` | ``). A PDF whose
    text expands past ``max_chars`` (a decompression bomb: a few KB of compressed
    streams, megabytes of text) is refused, not parsed on."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    pages: list[str] = []
    size = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError(str(path), "encrypted PDF: cannot read its text")
        for page in reader.pages:
            pages.append(_pdf_page(page))
            size += len(pages[-1])
            if size > max_chars:
                raise DocumentError(str(path), f"its text expands past the {max_chars / 1e6:.1f} MB document limit")
    except DocumentError:
        raise
    except (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DocumentError(str(path), f"not a readable PDF ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not any(p.strip() for p in pages):
        raise DocumentError(str(path), "PDF has no extractable text (scanned images need OCR)")
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + 2
    return "\n\n".join(pages), starts


def _columns(line: str) -> str:
    """A layout-mode line with its column gaps as `` | `` and other spacing as one space.
    A gap is a column gap when it is at least 3 spaces and either 2 wider than the line's
    usual gap or every gap of the line is that wide: justified text (2 spaces between
    words, 3 after a full stop in TeX) stays prose; a table row (one space inside cells,
    many between them, or one word per cell) keeps its cells apart."""
    gaps = [len(g) for g in _GAP.findall(line)]
    if not gaps:
        return line
    usual = sorted(gaps)[len(gaps) // 2]
    wide = 3 if min(gaps) >= 3 else max(3, usual + 2)
    return _GAP.sub(lambda m: " | " if len(m.group()) >= wide else " ", line)


def _pdf_page(page: Any) -> str:
    try:
        text = page.extract_text(extraction_mode="layout") or ""
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        text = ""
    if not text.strip():  # layout mode fails on some fonts, or finds nothing: plain text is better than none
        text = page.extract_text() or ""
    lines = [_columns(line.strip()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
