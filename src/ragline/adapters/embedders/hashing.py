"""A hashing embedder: deterministic, instant, no model. For fast unit tests.

Words and word pairs are hashed into a fixed number of signed buckets, so texts that
share words have similar vectors; good enough to test retrieval plumbing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    name = "hashing"
    semantic = False
    tokenizer = None

    def __init__(self, dimension: int = 384) -> None:
        self.dimension = dimension
        self.calls = 0
        self.texts_embedded = 0

    async def close(self) -> None:
        return None

    async def embed(self, texts: Sequence[str], tenant: str = "", *, interactive: bool = False) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        return np.stack([self._vector(t) for t in texts]) if texts else np.empty((0, self.dimension), np.float32)

    async def embed_query(self, text: str, tenant: str = "", *, exact: bool = False) -> np.ndarray:
        return (await self.embed([text], tenant))[0]

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        words = [w.lower() for w in _WORD.findall(text)]
        for feature in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % self.dimension
            vector[bucket] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector
