"""The small sample corpus shipped inside the package, for a first try."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def sample_corpus_dir() -> Path:
    return Path(str(resources.files("ragline") / "sample_corpus"))
