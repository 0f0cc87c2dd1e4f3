"""Files -> Documents, one at a time, with clear errors.

Plain text and Markdown are read as they are. HTML, Word (.docx), PowerPoint (.pptx),
Excel (.xlsx), CSV and JSON go through Microsoft's MarkItDown, which writes Markdown:
headings, lists and tables survive (a table row is ``| cell | cell |``, so cells and
rows stay apart; the hand-written HTML parser this replaced glued cells together).
E-mail (.eml) is parsed by the standard library (headers, then the text part, or the
HTML part through MarkItDown). PDF is read page by page with pypdf in layout mode
(columns of a table stay apart, as `` | ``), and the document carries where each page
starts, so every chunk knows its page and citations show it.

Office files are ZIP archives: one that would expand past ten times the document
limit is refused before it is parsed, as a PDF whose text expands past the limit is.
Every failure is a ``DocumentError`` naming the file and the reason, so a batch can
report it and go on with the rest.
"""

from __future__ import annotations

import email
import email.policy
import io
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import DocumentError
from ..models import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
OFFICE_SUFFIXES = {".docx", ".pptx", ".xlsx"}  # ZIP archives
MARKITDOWN_SUFFIXES = HTML_SUFFIXES | OFFICE_SUFFIXES | {".csv", ".json"}
EMAIL_SUFFIXES = {".eml"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES | MARKITDOWN_SUFFIXES | EMAIL_SUFFIXES
_ZIP_EXPANSION = 10  # an office file may expand to this many times the document limit

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
    size = _size(path)
    if size > max_bytes:
        raise DocumentError(
            str(path),
            f"too large: {size / 1e6:.1f} MB exceeds the {max_bytes / 1e6:.1f} MB limit "
            "(raise RAGLINE_MAX_DOCUMENT_MB to allow it)",
        )
    data = _read(path, max_bytes)
    suffix = path.suffix.lower()
    pages: list[int] | None = None
    if suffix in PDF_SUFFIXES:
        text, pages = _pdf_text(path, data, max_bytes)
        title = None
    elif suffix in MARKITDOWN_SUFFIXES:
        text, title = _markitdown(path, data, suffix, max_bytes)
        if suffix == ".pptx":
            text, pages = _slides(text)
    elif suffix in EMAIL_SUFFIXES:
        text, title = _email(path, data, max_bytes)
    else:  # .txt, .md, or a file named alone whose type is not known: text if it is text
        try:
            text = _decode(path, data)
        except DocumentError as exc:
            if suffix in TEXT_SUFFIXES:
                raise
            raise DocumentError(str(path), f"{exc.reason}; {unsupported(path).reason}") from None
        title = _md_title(text) if suffix in {".md", ".markdown"} else None
    if not text.strip():
        raise DocumentError(str(path), "empty: no text to index")
    # The absolute path: the same file has the same metadata from any working directory.
    metadata: dict[str, Any] = {
        "source": str(path.absolute()),
        "title": title or path.stem,
        "type": suffix.lstrip(".") or "txt",
    }
    return Document(tenant=tenant, id=document_id, text=text, metadata=metadata, pages=pages)


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


_converter: Any = None


def _markitdown(path: Path, data: bytes, suffix: str, max_bytes: int) -> tuple[str, str | None]:
    """HTML, office files, CSV and JSON -> Markdown (and the title, where there is one)."""
    global _converter
    from markitdown import MarkItDown, StreamInfo

    if suffix in OFFICE_SUFFIXES:
        _check_zip(path, data, max_bytes)
    elif suffix in HTML_SUFFIXES | {".csv", ".json"}:
        _decode(path, data)  # UTF-8 text, or a clear error
    if _converter is None:
        _converter = MarkItDown(enable_plugins=False)
    try:
        result = _converter.convert_stream(io.BytesIO(data), stream_info=StreamInfo(extension=suffix, charset="utf-8"))
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise DocumentError(
            str(path), f"not a readable {suffix} file ({type(cause).__name__}: {str(cause)[:200]})"
        ) from exc
    text = _tidy(result.markdown or "")
    return text, (result.title or "").strip() or _md_title(text)


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


def _check_zip(path: Path, data: bytes, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise DocumentError(str(path), f"not a readable {path.suffix} file (not a ZIP archive: {exc})") from exc
    if expanded > _ZIP_EXPANSION * max_bytes:
        raise DocumentError(
            str(path), f"it expands to {expanded / 1e6:.0f} MB, past {_ZIP_EXPANSION}x the document limit"
        )


def _email(path: Path, data: bytes, max_bytes: int) -> tuple[str, str | None]:
    """Subject, From, To, Date, then the body: the text part, else the HTML part converted."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    headers = [f"{name}: {message[name]}" for name in ("Subject", "From", "To", "Date") if message[name]]
    body = ""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
        if part is not None:
            content = part.get_content()
            if part.get_content_subtype() == "html":
                body, _ = _markitdown(path, content.encode("utf-8"), ".html", max_bytes)
            else:
                body = content
    except (LookupError, ValueError) as exc:
        raise DocumentError(str(path), f"unreadable e-mail body ({exc})") from exc
    subject = str(message["Subject"] or "").strip()
    return "\n".join(headers) + "\n\n" + body.strip(), subject or None


def _tidy(markdown: str) -> str:
    """Collapse the blank lines converters leave behind."""
    return re.sub(r"\n{3,}", "\n\n", markdown).strip()


_COLUMN_GAP = re.compile(r"(?<=\S)\s{3,}(?=\S)")


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


def _pdf_page(page: Any) -> str:
    try:
        text = page.extract_text(extraction_mode="layout") or ""
    except (ValueError, KeyError, TypeError, ZeroDivisionError):
        text = page.extract_text() or ""  # layout mode fails on some fonts; plain text is better than none
    lines = []
    for line in text.splitlines():
        line = line.strip()
        lines.append(_COLUMN_GAP.sub(" | ", line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
