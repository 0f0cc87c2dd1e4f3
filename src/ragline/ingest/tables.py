"""Tables as people read them: each row with its column headers.

A spreadsheet or a document table becomes one line per row, ``Region: North; Revenue:
4.2 million``, when its first row is a header (every cell a name, none a number), so a
row keeps its headers in whatever chunk it lands and a question about a cell is
answered from that cell's row, not from the header row. A table without a header keeps
its cells apart as ``| a | b |``. Converter artefacts go: the empty placeholder header
Markdown writers add to header-less tables, empty rows, empty trailing columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NUMBER = re.compile(r"^[-+(]?[$€£¥]?\s*\d[\d,.\s]*%?\)?$")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def cell_text(value: object) -> str:
    """A cell's value as text: no ``None``/``nan``, whole numbers without ``.0``, one line."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
    return " ".join(str(value).split())


def is_header(row: Sequence[str]) -> bool:
    """A first row that names columns: every cell filled, none a number, no name twice."""
    cells = [c.strip() for c in row]
    return (
        len(cells) >= 2
        and all(cells)
        and not any(_NUMBER.match(c) for c in cells)
        and len({c.lower() for c in cells}) == len(cells)
    )


def render(rows: Iterable[Sequence[str]]) -> list[str]:
    """Lines for a table: ``header: value; ...`` per row under a header row, else ``| a | b |``."""
    table = [list(r) for r in rows if any(c.strip() for c in r)]
    if not table:
        return []
    width = max(max((i + 1 for i, c in enumerate(r) if c.strip()), default=0) for r in table)
    table = [(r + [""] * width)[:width] for r in table]
    if len(table) >= 2 and is_header(table[0]):
        header = [h.strip() for h in table[0]]
        return ["; ".join(f"{h}: {v.strip()}" for h, v in zip(header, row) if v.strip()) for row in table[1:]]
    return ["| " + " | ".join(c.strip() for c in row) + " |" for row in table]


def rewrite_markdown_tables(markdown: str) -> str:
    """Every Markdown table in ``markdown`` rendered by :func:`render`."""
    out: list[str] = []
    block: list[list[str]] = []

    def flush() -> None:
        if block:
            if not any(c.strip() for c in block[0]):  # a writer's empty placeholder header
                block.pop(0)
            out.extend(render(block))
            block.clear()

    for line in markdown.split("\n"):
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1:
            if not _SEPARATOR.match(stripped):
                block.append(_cells(stripped))
            continue
        flush()
        out.append(line)
    flush()
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    inner = line[1:-1]
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", inner)]
