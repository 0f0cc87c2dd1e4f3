"""Deterministic, content-derived identifiers: retries and replays never duplicate."""

from __future__ import annotations

import hashlib

_SEP = "\x1f"  # unit separator: cannot appear in a tenant or id by accident of joining


def _digest(*parts: str, length: int = 32) -> str:
    return hashlib.sha256(_SEP.join(parts).encode("utf-8")).hexdigest()[:length]


def chunk_id(tenant: str, document_id: str, chunk_number: int) -> str:
    """The id of a chunk: the same document position always gets the same id."""
    return _digest(tenant, document_id, str(chunk_number))


def content_hash(text: str) -> str:
    """A hash of a chunk's text: equal hashes mean the stored vector is still right."""
    return _digest(text)
