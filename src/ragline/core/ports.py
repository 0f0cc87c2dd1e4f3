"""The ports: the only ways a stage talks to the outside world.

Each is the smallest Protocol the stages need; adapters live one per file under
``embedders/``, ``stores/``, ``generators/``, ``caches/`` and ``buses/``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ragline.core.models import Answer, Chunk, FilterValue, Hit, Prompt, Reading


@runtime_checkable
class Embedder(Protocol):
    """Texts -> L2-normalized float32 vectors, shape (len(texts), dimension).

    ``tenant`` says on whose behalf: a caching embedder keeps tenants apart (a shared
    cache would tell one tenant, by its speed, what another has asked or stored).
    """

    name: str
    dimension: int
    # Whether texts of similar meaning get similar vectors (MiniLM) or only texts sharing
    # words (the hashing embedder): the extractive answerer picks sentences by meaning
    # only with a semantic embedder.
    semantic: bool
    # Its tokenizer (tokenizers.Tokenizer), so chunks are measured in the model's own
    # tokens; None: chunks are measured in words.
    tokenizer: Any

    async def embed(self, texts: Sequence[str], tenant: str = "", *, interactive: bool = False) -> np.ndarray:
        """``interactive``: someone is waiting (sentences of an answer), not a bulk upload."""
        ...

    async def embed_query(self, text: str, tenant: str = "", *, exact: bool = False) -> np.ndarray:
        """One question's vector. Kept apart from ``embed`` (documents) so an adapter can
        serve questions first: a bulk upload must not make every search wait. An adapter
        may answer with a cheaper approximation (MiniLM: an int8 graph); ``exact``: the
        same model ``embed`` runs, for cosines compared with fixed thresholds (answers)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class DocumentRow:
    """A stored document as listed: its id and its metadata (from its first chunk)."""

    id: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class StoredChunk:
    """What the store knows of a chunk without its vector: enough to skip re-embedding."""

    id: str
    document_id: str
    number: int
    content_hash: str


@runtime_checkable
class VectorStore(Protocol):
    """Chunks with vectors, always scoped to one tenant."""

    async def upsert(self, chunks: Sequence[Chunk]) -> None: ...

    async def delete_chunks(self, tenant: str, chunk_ids: Sequence[str]) -> None: ...

    async def delete_document(self, tenant: str, document_id: str) -> int: ...

    async def stored_chunks(self, tenant: str, document_ids: Sequence[str]) -> dict[str, list[StoredChunk]]: ...

    full_text: bool  # whether bm25 / hybrid modes are available

    async def search(
        self,
        tenant: str,
        vector: np.ndarray,
        top_k: int,
        filters: Mapping[str, FilterValue] | None = None,
        *,
        text: str | None = None,
        mode: str = "dense",
        with_sentences: bool = False,
    ) -> list[Hit]:
        """The best ``top_k`` chunks; ``with_sentences``: each hit also carries the
        sentences and vectors stored with its chunk at ingestion (``Hit.sentences``)."""
        ...

    async def document_chunks(self, tenant: str, document_id: str) -> list[Hit]: ...

    async def documents(
        self,
        tenant: str,
        prefix: str = "",
        after: str = "",
        limit: int = 100,
        filters: Mapping[str, FilterValue] | None = None,
    ) -> list[DocumentRow]:
        """The first ``limit`` documents of the tenant whose id starts with ``prefix`` and
        sorts after ``after``, in id order, each with its first chunk's metadata; with
        ``filters``, only those whose (first chunk's) metadata matches them."""
        ...

    async def count(self, tenant: str) -> int: ...

    async def ping(self) -> None:
        """Raise a RaglineError unless the store answers now."""

    async def close(self) -> None: ...


@runtime_checkable
class Generator(Protocol):
    """A grounded prompt -> text, whole or streamed (prompting.py builds the Prompt)."""

    @property
    def name(self) -> str: ...

    async def generate(self, prompt: Prompt, max_tokens: int) -> str: ...

    def stream(self, prompt: Prompt, max_tokens: int) -> AsyncIterator[str]: ...

    def observe_batches(self, observe: Callable[[int], None]) -> None:
        """Report the size of each batch of prompts sent together (no-op without batching)."""
        ...

    async def ping(self) -> None:
        """Raise a RaglineError unless the model can answer now."""

    async def close(self) -> None: ...


@runtime_checkable
class Fallback(Protocol):
    """Answers without an LLM, from the passages themselves (the extractive answerer):
    the default answerer, and the stand-in when the LLM fails or is not grounded."""

    async def read(self, prompt: Prompt) -> Reading:
        """What the passages say about the question: evidence, short answer, confidence
        and the decision whether they answer it (once per prompt; every path uses it)."""
        ...

    async def answer(self, prompt: Prompt) -> str: ...


@runtime_checkable
class AnswerMemo(Protocol):
    """Answers kept by tenant, question, generator and the context they came from;
    evicted when any of their chunks changes (caches/answer_cache.py)."""

    def key(self, tenant: str, question: str, generator: str, hits: Sequence[Hit]) -> str: ...

    async def get(self, key: str, request_id: str) -> Answer | None: ...

    async def put(self, key: str, answer: Answer, hits: Sequence[Hit]) -> None: ...

    async def evict_chunks(self, tenant: str, chunk_ids: Iterable[str]) -> None: ...


@runtime_checkable
class Cache(Protocol):
    """Bytes by key with a TTL."""

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` of each key, in one round trip where the backend allows."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_s: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def ping(self) -> None:
        """Raise a RaglineError unless the cache answers now."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """One consumed message; ``Bus.commit`` acknowledges it. Uncommitted messages are
    delivered again (to another consumer of the group) when their consumer goes away."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Mapping[str, bytes] = field(default_factory=dict)
    partition: int = 0
    offset: int = 0
    handle: Any = field(default=None, compare=False, repr=False)  # the adapter's own reference


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create: partitions bound the consumers that can share it."""

    name: str
    partitions: int = 6
    replication_factor: int = 1
    config: Mapping[str, str] | None = None


@runtime_checkable
class Bus(Protocol):
    """Topics with consumer groups, at-least-once.

    ``commit(d)`` acknowledges ``d`` and every delivery of its partition that this
    consumer was handed before it (Kafka's semantics). ``tail`` reads a topic from its
    current end without a consumer group (request-reply listeners); its position is
    fixed once the awaitable returns, so nothing published after that is missed.
    """

    # Whether publish_and_commit is available (Kafka with transactions): a capability,
    # declared here so workers need not probe for it.
    transactional: bool

    async def publish(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> None: ...

    def consume(self, topics: Sequence[str], group: str) -> AsyncGenerator[Delivery, None]: ...

    async def commit(self, delivery: Delivery) -> None: ...

    async def tail(
        self, topic: str, partition: int | None = None, since: Mapping[int, int] | None = None
    ) -> AsyncGenerator[Delivery, None]:
        """``topic`` (one partition, or all) from its end; with ``since`` (partition ->
        the next offset to read, from an earlier tail), from there, so nothing published
        between two tails is missed; a partition whose log restarted below that offset
        (a broker back without its data) is read from its start."""
        ...

    async def publish_and_commit(self, outputs: Sequence[Any], delivery: Delivery) -> None:
        """In one transaction: publish ``outputs`` (topic, value, key, headers, partition)
        and commit ``delivery``. Only where ``transactional``; ConfigurationError elsewhere."""
        ...

    async def create_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> list[str]:
        """Create the topics that do not exist yet; the names created (none where topics
        need no creating, as in process)."""
        ...

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the broker answers (readiness checks)."""
        ...

    def lag(self) -> Mapping[tuple[str, str, int], int]:
        """Messages not yet consumed, by (group, topic, partition)."""
        ...

    async def close(self) -> None: ...
