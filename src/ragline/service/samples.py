"""The small sample corpus shipped inside the package, for a first try."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_corpus_dir() -> Path:
    return Path(str(resources.files("ragline.service") / "sample_corpus"))


# The sample corpus has a tenant of its own, so that it never shows up in answers about
# the user's documents (`ragline ask --tenant sample ...`; `ragline serve --sample`
# creates a query key for it).
SAMPLE_TENANT = "sample"


def sample_files() -> list[Path]:
    """The sample corpus' documents (its NOTICE, the texts' licence, is not one)."""
    return sorted(p for p in sample_corpus_dir().iterdir() if p.suffix in {".md", ".txt", ".html"})
