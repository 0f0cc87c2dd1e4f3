"""Files -> Documents: .txt, .md, .html and .pdf, one at a time, with clear errors.

Every failure is a ``DocumentError`` naming the file and the reason, so a batch
can report it and go on with the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DocumentError
from ..models import Document

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES

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
            if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                yield Path(dirpath) / name


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
    if suffix in PDF_SUFFIXES:
        text, title = _pdf_text(path, data, max_bytes), None
    elif suffix in HTML_SUFFIXES:
        text, title = _html_text(path, data)
    else:
        text = _decode(path, data)
        title = _md_title(text) if suffix in {".md", ".markdown"} else None
    if not text.strip():
        raise DocumentError(str(path), "empty: no text to index")
    # The absolute path: the same file has the same metadata from any working directory.
    metadata: dict[str, Any] = {
        "source": str(path.absolute()),
        "title": title or path.stem,
        "type": suffix.lstrip(".") or "txt",
    }
    return Document(tenant=tenant, id=document_id, text=text, metadata=metadata)


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


class _HTMLText(HTMLParser):
    _SKIP: ClassVar[set[str]] = {"script", "style", "noscript", "template", "svg", "head"}
    _BLOCK: ClassVar[set[str]] = {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "pre",
        "blockquote",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data.strip()
        elif not self._skipping:
            self.parts.append(data)


def _html_text(path: Path, data: bytes) -> tuple[str, str | None]:
    parser = _HTMLText()
    parser.feed(_decode(path, data))
    parser.close()
    text = re.sub(r"[ \t\r\f\v]+", " ", "".join(parser.parts))
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    return text, parser.title


def _pdf_text(path: Path, data: bytes, max_chars: int) -> str:
    """The pages' text; a PDF whose text expands past ``max_chars`` (a decompression
    bomb: a few KB of compressed streams, megabytes of text) is refused, not parsed on."""
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    pages: list[str] = []
    size = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise DocumentError(str(path), "encrypted PDF: cannot read its text")
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            size += len(pages[-1])
            if size > max_chars:
                raise DocumentError(str(path), f"its text expands past the {max_chars / 1e6:.1f} MB document limit")
        text = "\n\n".join(pages)
    except DocumentError:
        raise
    except (PyPdfError, PdfReadError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise DocumentError(str(path), f"not a readable PDF ({type(exc).__name__}: {str(exc)[:200]})") from exc
    if not text.strip():
        raise DocumentError(str(path), "PDF has no extractable text (scanned images need OCR)")
    return text
