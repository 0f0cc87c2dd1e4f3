"""Cache keys: hashes of everything that determines the cached value."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable

_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Case and spacing folded: MiniLM's tokenizer lower-cases and splits on whitespace,
    so texts equal under this normalization get equal vectors."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def embedding_key(model: str, text: str, tenant: str = "") -> str:
    """Per tenant: a hit is faster than a miss, so a shared entry would be a timing oracle."""
    return "emb:" + _hash(tenant, model, normalize(text))


def answer_key(tenant: str, question: str, generator: str, context: Iterable[tuple[str, str]]) -> str:
    """Tenant, question, generator and the sorted (chunk id, content hash) pairs of the context."""
    pairs = ",".join(f"{cid}:{chash}" for cid, chash in sorted(context))
    return "ans:" + _hash(tenant, normalize(question), generator, pairs)


def answer_index_key(tenant: str, chunk_id: str) -> str:
    return "ansidx:" + _hash(tenant, chunk_id)
